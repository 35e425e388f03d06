#include "analysis/growth.h"

#include <algorithm>
#include <iomanip>
#include <istream>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace kleak {

std::string_view growth_label(const Growth& g) {
  TrendThresholds th;
  if (g.points < th.min_points) return "new";
  return to_string(g.verdict);
}

void GrowthTracker::observe(double t_s, const Aggregate& agg) {
  ++generation_;
  for (const StackTotal& total : agg.totals) {
    auto it = series_.find(total.key);
    if (it == series_.end()) {
      if (series_.size() >= max_stacks_) {
        // Make room: forget stacks that are gone (freed since last time).
        for (auto s = series_.begin(); s != series_.end();)
          s = s->second.last_seen + 1 < generation_ ? series_.erase(s) : std::next(s);
      }
      if (series_.size() >= max_stacks_) {
        ++dropped_;
        continue;
      }
      it = series_.emplace(total.key, Series{}).first;
    }
    Series& s = it->second;
    s.points.push_back(Point{static_cast<float>(t_s), static_cast<float>(total.bytes), static_cast<float>(total.count)});
    if (s.points.size() > max_points_) s.points.pop_front();
    s.last_seen = generation_;
  }
  // A stack not in this report has nothing outstanding: record the drop to 0
  // once, so a stack that is freed reads as shrinking, not as frozen.
  for (auto& [key, s] : series_) {
    if (s.last_seen + 1 != generation_) continue;
    s.points.push_back(Point{static_cast<float>(t_s), 0, 0});
    if (s.points.size() > max_points_) s.points.pop_front();
  }
}

// "KEY SEEN N t bytes count ...": KEY in hex, SEEN 1 when the stack was in
// the last observation, then N points.
void GrowthTracker::save(std::ostream& out) const {
  out << std::setprecision(9);  // a float's round trip
  for (const auto& [key, s] : series_) {
    if (s.points.empty() || s.points.back().count == 0) continue;  // gone: nothing to keep
    out << std::hex << key << std::dec << ' ' << (s.last_seen == generation_ ? 1 : 0) << ' ' << s.points.size();
    for (const Point& p : s.points) out << ' ' << p.t_s << ' ' << p.bytes << ' ' << p.count;
    out << '\n';
  }
}

bool GrowthTracker::load(std::istream& in) {
  series_.clear();
  generation_ = 1;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    uint64_t key = 0;
    int seen = 0;
    size_t n = 0;
    if (!(ls >> std::hex >> key >> std::dec >> seen >> n) || n == 0 || n > max_points_ ||
        series_.size() >= max_stacks_) {
      series_.clear();
      return false;
    }
    Series s;
    s.last_seen = seen ? generation_ : 0;
    for (size_t i = 0; i < n; ++i) {
      Point p{};
      if (!(ls >> p.t_s >> p.bytes >> p.count)) {
        series_.clear();
        return false;
      }
      s.points.push_back(p);
    }
    series_[key] = std::move(s);
  }
  return true;
}

void rank_groups(Aggregate& agg, SortKey key, const GrowthTracker& tracker) {
  if (key == SortKey::bytes) return;  // the Aggregator's own order
  std::unordered_map<uint64_t, Growth> growth;
  for (const StackGroup& g : agg.groups) growth.emplace(group_key(g), tracker.growth(group_key(g)));
  auto value = [&](const StackGroup& g) {
    const Growth& gr = growth.at(group_key(g));
    switch (key) {
      case SortKey::count: return static_cast<double>(g.count);
      case SortKey::growth: return gr.bytes.slope_per_s;
      default: return gr.score;
    }
  };
  std::stable_sort(agg.groups.begin(), agg.groups.end(), [&](const StackGroup& a, const StackGroup& b) {
    // By score, steady growth in unreclaimable memory comes first: a
    // reclaimable cache (buffer heads, dentries) grows with any file I/O and
    // gives memory back under pressure, so it is rarely the leak.
    double va = value(a), vb = value(b);
    if (key == SortKey::score) {
      auto tier = [](const StackGroup& g, double v) { return v <= 0 ? 2 : (g.flags & KLEAK_ALLOC_RECLAIMABLE) ? 1 : 0; };
      int ta = tier(a, va), tb = tier(b, vb);
      if (ta != tb) return ta < tb;
    }
    if (va != vb) return va > vb;
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    return a.count > b.count;
  });
}

Growth GrowthTracker::growth(uint64_t key) const {
  Growth g;
  auto it = series_.find(key);
  if (it == series_.end()) return g;
  const auto& pts = it->second.points;
  std::vector<TrendPoint> bytes, count;
  bytes.reserve(pts.size());
  count.reserve(pts.size());
  for (const Point& p : pts) {
    bytes.push_back({p.t_s, p.bytes});
    count.push_back({p.t_s, p.count});
  }
  g.points = pts.size();
  g.bytes = compute_trend(bytes);
  g.count = compute_trend(count);
  TrendThresholds th;
  th.min_change = kMinChangeBytes;
  g.verdict = classify(g.bytes, th);
  if (g.verdict == TrendClass::growing)
    g.score = g.bytes.slope_per_s * g.bytes.r2 * g.bytes.nondecreasing_fraction;
  return g;
}

}  // namespace kleak
