// What a report needs from a running tracer: its maps' and programs' file
// descriptors and what it attached. A live Loader provides them, and so does
// a pinned session (pin.h) opened from bpffs by a later process, so one
// report path serves `kleak trace` and `kleak report`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot.h"

namespace kleak {

class BpfHandles {
 public:
  virtual ~BpfHandles() = default;

  // The fd of the map or program named as in bpf/kleak.bpf.c ("kleak_live"),
  // -1 when there is none. Owned by the handles: do not close it.
  virtual int map_fd(const std::string& name) const = 0;
  virtual int prog_fd(const std::string& name) const = 0;
  virtual uint32_t live_capacity() const = 0;
  virtual uint32_t stack_capacity() const = 0;
  // 1: every allocation's stack is captured; N: one in N per call site.
  virtual uint32_t stack_sample_every() const = 0;
  // Tracepoints attached, e.g. "kmem/kmalloc"; those this kernel lacks.
  virtual const std::vector<std::string>& attached() const = 0;
  virtual const std::vector<std::string>& missing() const = 0;

  MapFds fds() const { return MapFds{live_fd(), counters_fd(), missed_fd()}; }
  int live_fd() const { return map_fd("kleak_live"); }
  int stacks_fd() const { return map_fd("kleak_stacks"); }
  int counters_fd() const { return map_fd("kleak_counters"); }
  int tasks_fd() const { return map_fd("kleak_tasks"); }
  int missed_fd() const { return map_fd("kleak_missed"); }
  int sites_fd() const { return map_fd("kleak_sites"); }
  int peek_prog_fd() const { return prog_fd("kleak_peek_run"); }
  int peek_map_fd() const { return map_fd("kleak_peek"); }
};

}  // namespace kleak
