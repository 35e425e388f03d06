// When a tracing run loop wakes: the next interval report (skipping
// intervals a slow report overran), the --duration deadline, and the last
// of --count reports. Shared by `kleak trace` and `kleak user`.
#pragma once

#include <cstdint>

namespace kleak {

class ReportSchedule {
 public:
  // Times are CLOCK_MONOTONIC ns. interval_s 0: no interval reports;
  // count 0: no limit; duration_s 0: no deadline.
  ReportSchedule(uint64_t start_ns, double interval_s, uint64_t count, double duration_s);
  // The earliest of the next report, the deadline and `other` (0: none),
  // for wait_until; 0 when there is nothing to wait for.
  uint64_t wake(uint64_t other = 0) const;
  bool deadline_passed(uint64_t now_ns) const { return deadline_ && now_ns >= deadline_; }
  bool report_due(uint64_t now_ns) const { return next_ && now_ns >= next_; }
  // The due report is the last of --count: make it the final one.
  bool next_is_last() const { return count_ > 0 && reports_ + 1 >= count_; }
  // After a due report: moves the next one past now, skipping intervals a
  // slow report overran instead of firing them back to back.
  void reported(uint64_t now_ns);

 private:
  uint64_t step_ = 0, next_ = 0, deadline_ = 0;
  uint64_t count_ = 0, reports_ = 0;
};

}  // namespace kleak
