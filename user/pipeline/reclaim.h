// Proving by reclaim (analysis/reclaim.h) against a live tracer: asking the
// kernel to give back what its caches and timers hold, and the per-CPU
// churn that makes deferred and bulk frees show. Used by kleak --ci before
// its verdict and by kleak --reclaim before its final report.
#pragma once

#include <signal.h>

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/reclaim.h"
#include "model/records.h"
#include "probe/handles.h"

namespace kleak {

// Runs a short process on every online CPU and waits for them (see
// reclaim.cpp for the deferred releases this brings about).
void run_on_every_cpu();

// Every live record of the tracer's maps; their number.
std::vector<LiveAlloc> live_records(const BpfHandles& handles);
uint64_t count_live(const std::vector<int>& live_fds);

// Waits until `deadline_ns` for SIGINT or SIGTERM (returned), passing over
// others in `signals` (SIGCHLD of the churn's children); 0 at the deadline.
int wait_for_stop_until(const sigset_t& signals, uint64_t deadline_ns);

// Drops the dentry and inode caches (drop_caches 2), ends loopback TCP
// connections in TIME_WAIT, churns until what is left of the live set is
// still (at most settle_s), and tallies what went into `t`. Returns why it
// was cut short (a stop signal), or empty. Does nothing when the live set
// is empty; says in t.skipped why it could not run.
std::string prove_by_reclaim(const BpfHandles& handles, const sigset_t& signals, double settle_s, ReclaimTally& t);

}  // namespace kleak
