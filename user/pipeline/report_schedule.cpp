#include "pipeline/report_schedule.h"

#include <algorithm>

namespace kleak {

ReportSchedule::ReportSchedule(uint64_t start_ns, double interval_s, uint64_t count, double duration_s)
    : step_(interval_s > 0 ? static_cast<uint64_t>(interval_s * 1e9) : 0),
      deadline_(duration_s > 0 ? start_ns + static_cast<uint64_t>(duration_s * 1e9) : 0),
      count_(count) {
  next_ = step_ ? start_ns + step_ : 0;
}

uint64_t ReportSchedule::wake(uint64_t other) const {
  uint64_t w = 0;
  for (uint64_t t : {next_, deadline_, other})
    if (t) w = w ? std::min(w, t) : t;
  return w;
}

void ReportSchedule::reported(uint64_t now_ns) {
  ++reports_;
  while (next_ && next_ <= now_ns) next_ += step_;
}

}  // namespace kleak
