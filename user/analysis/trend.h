// Trend maths over a time series of (t_seconds, value) points: how much a
// value moved, how fast, and how steadily. Generic on purpose: `kleak triage`
// feeds it /proc samples, and per-stack leak verdicts in `kleak trace` can feed
// it outstanding bytes per stack.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace kleak {

struct TrendPoint {
  double t_s = 0;
  double value = 0;
};

struct Trend {
  size_t points = 0;
  double span_s = 0;  // last t - first t
  double start = 0;
  double end = 0;
  double delta = 0;        // end - start
  double slope_per_s = 0;  // least-squares fit over every point (units per second)
  // Share of the variance the line explains, 0..1. 0 when the values are all
  // equal (a flat line explains nothing; the slope is 0 anyway).
  double r2 = 0;
  // Share of consecutive steps that did not decrease / did not increase.
  // Both are 1 for a constant series, and for fewer than two points.
  double nondecreasing_fraction = 1;
  double nonincreasing_fraction = 1;
  // Least-squares slope over the later half of the points: a cache that
  // filled and then stopped has a positive slope overall but ~0 here.
  double recent_slope_per_s = 0;
};

// Points must be in time order. Fewer than two points, or all at the same
// time, give slope 0.
Trend compute_trend(std::span<const TrendPoint> points);

enum class TrendClass { growing, flat, shrinking, noisy };

std::string_view to_string(TrendClass c);

// When a trend counts as growing or shrinking. The defaults are for samples a
// few seconds apart over about a minute.
struct TrendThresholds {
  // Smallest change worth a verdict, in the series' units: below it (both as
  // |delta| and as |slope| x span) the series is flat. The caller picks it;
  // for bytes, a few pages.
  double min_change = 0;
  // The line must explain this much of the variance: a leak grows steadily,
  // churn and noise do not.
  double min_r2 = 0.6;
  // This share of the steps must go the trend's way. 0.7 tolerates the odd
  // step back (a leak beside some churn) but not a sawtooth.
  double min_steady_fraction = 0.7;
  // The later half must still move at this share of the overall slope, or
  // the series levelled off (a cache that filled, then stayed): flat.
  double min_recent_ratio = 0.25;
  // Fewer points than this cannot tell a trend from two lucky samples: flat.
  size_t min_points = 3;
};

// growing / shrinking: large enough change, good fit, steady steps, still
// moving in the later half. flat: too few points, too small a change, or
// levelled off. noisy: a large change that is not a steady trend (churn).
TrendClass classify(const Trend& t, const TrendThresholds& th);

}  // namespace kleak
