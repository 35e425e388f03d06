#include "model/records.h"

namespace kleak {

bool is_free_program(std::string_view name) {
  for (std::string_view p : {"kleak_kfree", "kleak_kc_free", "kleak_pg_free", "kleak_pc_free", "kleak_va_free"})
    if (name == p) return true;
  return false;
}

uint64_t RecursionMisses::free_runs_skipped() const {
  uint64_t n = 0;
  for (const auto& [name, misses] : by_program)
    if (is_free_program(name)) n += misses;
  return n;
}

uint64_t Counters::stack_errors() const {
  return v[KLEAK_CNT_STACK_EFAULT] + v[KLEAK_CNT_STACK_ENOMEM] +
         v[KLEAK_CNT_STACK_OTHER];
}

uint64_t Counters::frees_unmatched() const {
  uint64_t seen = v[KLEAK_CNT_FREE_SEEN], done = v[KLEAK_CNT_FREE_MATCHED] + v[KLEAK_CNT_FREE_ERROR];
  return seen > done ? seen - done : 0;
}

bool counters_complete(const Counters& c) {
  return c[KLEAK_CNT_LIVE_FULL] == 0 && c[KLEAK_CNT_LIVE_ERROR] == 0 && c[KLEAK_CNT_TASKS_FULL] == 0 &&
         c[KLEAK_CNT_FREE_ERROR] == 0;
}

Counters& Counters::operator+=(const Counters& o) {
  for (size_t i = 0; i < v.size(); ++i) v[i] += o.v[i];
  return *this;
}

bool snapshot_complete(const SnapshotInfo& s) {
  if (!counters_complete(s.counters)) return false;
  for (const Counters& f : s.family_counters)
    if (f[KLEAK_CNT_LIVE_FULL] || f[KLEAK_CNT_LIVE_ERROR] || f[KLEAK_CNT_FREE_ERROR]) return false;
  return true;
}

const char* peek_status_name(uint32_t status) {
  switch (status) {
    case KLEAK_PEEK_OK: return "ok";
    case KLEAK_PEEK_GONE: return "gone";
    case KLEAK_PEEK_FAULT: return "fault";
    case KLEAK_PEEK_FREED: return "freed";
    default: return "unknown";
  }
}

}  // namespace kleak
