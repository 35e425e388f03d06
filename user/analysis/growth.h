// Growth verdicts for `kleak trace`: each stack's outstanding bytes and count,
// report after report, fitted with trend.h, so a report says which stack keeps
// growing (a leak), which filled up and stopped (a cache) and which churns.
#pragma once

#include <cstdint>
#include <deque>
#include <iosfwd>
#include <string_view>
#include <unordered_map>

#include "analysis/aggregate.h"
#include "analysis/trend.h"

namespace kleak {

// How stacks are ranked. score (the default) puts steadily growing stacks
// first, by rate; stacks with no growth verdict yet follow by bytes.
enum class SortKey { score, bytes, count, growth };


struct Growth {
  size_t points = 0;  // reports this stack was seen in (in the window)
  Trend bytes;        // outstanding bytes over time
  Trend count;        // outstanding allocations over time
  TrendClass verdict = TrendClass::flat;
  // Ranks leaks first: the growth rate in bytes/s, weighted by how well a
  // line explains it and how steadily it grew; 0 unless growing.
  double score = 0;
};

std::string_view growth_label(const Growth& g);  // "growing", ..., "new" (too few points)

class GrowthTracker;

// Orders agg.groups by `key` (see SortKey); ties by bytes, then count.
void rank_groups(Aggregate& agg, SortKey key, const GrowthTracker& tracker);

class GrowthTracker {
 public:
  // At most max_stacks stacks and max_points reports per stack are kept:
  // memory is bounded however long kleak runs (a sliding window).
  explicit GrowthTracker(size_t max_stacks = 4096, size_t max_points = 120)
      : max_stacks_(max_stacks), max_points_(max_points) {}

  // Adds one report: every stack's totals at t_s. Stacks that vanished get
  // a zero point (their allocations were freed).
  void observe(double t_s, const Aggregate& agg);
  Growth growth(uint64_t key) const;
  size_t stacks() const { return series_.size(); }
  uint64_t dropped_stacks() const { return dropped_; }

  // The history as text, one line per stack still outstanding at the last
  // observe(), and back: what `kleak report` keeps between runs for a
  // pinned session. load() replaces the history; false (and an empty
  // history) when `in` is not what save() wrote.
  void save(std::ostream& out) const;
  bool load(std::istream& in);

  // Below this change, in bytes, a stack is flat: a few pages.
  static constexpr double kMinChangeBytes = 16 * 1024;

 private:
  // float: 12 bytes a point, so the window's bound (4096 stacks x 120
  // points) is 5.9 MB instead of 11.8; a float's 24-bit mantissa keeps
  // bytes to 1e-7 relative and times to 0.06 s after 11 days.
  struct Point {
    float t_s;
    float bytes;
    float count;
  };
  struct Series {
    std::deque<Point> points;
    uint64_t last_seen = 0;  // observe() generation
  };
  size_t max_stacks_;
  size_t max_points_;
  uint64_t generation_ = 0;
  uint64_t dropped_ = 0;
  std::unordered_map<uint64_t, Series> series_;
};

}  // namespace kleak
