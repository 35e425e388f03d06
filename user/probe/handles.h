// What a report needs from a running tracer: its maps' and programs' file
// descriptors and what it attached. A live Loader provides them, and so does
// a pinned session (pin.h) opened from bpffs by a later process, so one
// report path serves `kleak trace` and `kleak report`.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/degraded.h"
#include "model/family.h"
#include "probe/snapshot.h"

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
  // Parts of kleak the kernel refused or lacks, dropped (degraded.h).
  virtual const std::vector<Degraded>& degraded() const {
    static const std::vector<Degraded> none;
    return none;
  }

  // Allocator families (family.h): what was asked for, and which beyond slab
  // are attached. A pinned session traces slab only.
  virtual FamilySet families() const { return FamilySet{}; }
  virtual std::vector<uint32_t> traced_families() const { return {}; }
  // Loaded programs (name, fd), for their recursion misses; none: not read.
  virtual std::vector<std::pair<std::string, int>> programs() const { return {}; }

  // Every map a snapshot reads, and the programs.
  MapFds fds() const {
    MapFds m;
    m.live = live_fd();
    m.counters = counters_fd();
    m.missed = missed_fd();
    for (uint32_t fam : traced_families()) m.family_live[fam] = map_fd(family_map_name(fam));
    m.progs = programs();
    return m;
  }
  // The live maps of every family traced, kleak_live first when slab is.
  std::vector<int> live_fds() const {
    std::vector<int> fds;
    if (families().slab) fds.push_back(live_fd());
    for (uint32_t fam : traced_families()) fds.push_back(map_fd(family_map_name(fam)));
    return fds;
  }
  static const char* family_map_name(uint32_t family) {
    switch (family) {
      case KLEAK_FAMILY_PAGE: return "kleak_pages";
      case KLEAK_FAMILY_PERCPU: return "kleak_percpu";
      case KLEAK_FAMILY_VMALLOC: return "kleak_vmalloc";
      default: return "kleak_live";
    }
  }
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
