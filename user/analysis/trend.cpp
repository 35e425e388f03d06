#include "analysis/trend.h"

#include <cmath>

namespace kleak {
namespace {

struct Fit {
  double slope = 0;
  double r2 = 0;
};

// Ordinary least squares on centred sums: byte counts near 1e10 squared would
// lose the low digits in the textbook sum-of-squares form.
Fit fit(std::span<const TrendPoint> p) {
  Fit f;
  if (p.size() < 2) return f;
  double mt = 0, mv = 0;
  for (const TrendPoint& x : p) {
    mt += x.t_s;
    mv += x.value;
  }
  mt /= static_cast<double>(p.size());
  mv /= static_cast<double>(p.size());
  double sxx = 0, sxy = 0, syy = 0;
  for (const TrendPoint& x : p) {
    double dt = x.t_s - mt, dv = x.value - mv;
    sxx += dt * dt;
    sxy += dt * dv;
    syy += dv * dv;
  }
  if (sxx <= 0) return f;  // every point at the same time: no slope
  f.slope = sxy / sxx;
  f.r2 = syy > 0 ? (sxy * sxy) / (sxx * syy) : 0;
  return f;
}

}  // namespace

Trend compute_trend(std::span<const TrendPoint> points) {
  Trend t;
  t.points = points.size();
  if (points.empty()) return t;
  t.start = points.front().value;
  t.end = points.back().value;
  t.delta = t.end - t.start;
  t.span_s = points.back().t_s - points.front().t_s;
  Fit all = fit(points);
  t.slope_per_s = all.slope;
  t.r2 = all.r2;
  if (points.size() >= 2) {
    size_t up = 0, down = 0;
    for (size_t i = 1; i < points.size(); ++i) {
      if (points[i].value >= points[i - 1].value) ++up;
      if (points[i].value <= points[i - 1].value) ++down;
    }
    double steps = static_cast<double>(points.size() - 1);
    t.nondecreasing_fraction = static_cast<double>(up) / steps;
    t.nonincreasing_fraction = static_cast<double>(down) / steps;
  }
  // The later half; with an odd count it includes the middle point, so
  // three points still give a two-point half.
  t.recent_slope_per_s = fit(points.subspan(points.size() / 2)).slope;
  return t;
}

std::string_view to_string(TrendClass c) {
  switch (c) {
    case TrendClass::growing:
      return "growing";
    case TrendClass::flat:
      return "flat";
    case TrendClass::shrinking:
      return "shrinking";
    case TrendClass::noisy:
      return "noisy";
  }
  return "unknown";
}

TrendClass classify(const Trend& t, const TrendThresholds& th) {
  if (t.points < th.min_points || t.span_s <= 0) return TrendClass::flat;
  double projected = t.slope_per_s * t.span_s;
  if (std::fabs(projected) < th.min_change && std::fabs(t.delta) < th.min_change) return TrendClass::flat;
  if (t.slope_per_s > 0 && t.delta > 0 && t.r2 >= th.min_r2 && t.nondecreasing_fraction >= th.min_steady_fraction) {
    // Levelled off: grew, then stopped (a cache that filled).
    if (t.recent_slope_per_s < th.min_recent_ratio * t.slope_per_s) return TrendClass::flat;
    return TrendClass::growing;
  }
  if (t.slope_per_s < 0 && t.delta < 0 && t.r2 >= th.min_r2 && t.nonincreasing_fraction >= th.min_steady_fraction) {
    if (t.recent_slope_per_s > th.min_recent_ratio * t.slope_per_s) return TrendClass::flat;
    return TrendClass::shrinking;
  }
  return TrendClass::noisy;
}

}  // namespace kleak
