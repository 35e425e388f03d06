// A part of kleak the kernel refused or lacks, and why: the verifier
// rejected its program, an attach failed, or a tracepoint is missing. The
// loader drops such a part instead of failing (user/probe/bpf_load.h) and every
// report lists it (text, JSON "degraded", Prometheus kleak_degraded). Pure
// data, no libbpf: reports and pinned-session metadata carry it.
#pragma once

#include <string>
#include <vector>

namespace kleak {

struct Degraded {
  std::string part;    // part_name() of an enum kleak_part: "stack-cache", "percpu", ...
  std::string reason;  // one line: "the verifier refused kleak_kmalloc: R2 pointer ^= pointer prohibited (...)"
  // true: the kernel refused it (the verifier, an attach); false: the
  // kernel has no such thing (a tracepoint). Not in the reports' JSON.
  bool refused = true;
  bool operator==(const Degraded&) const = default;
};

// "stack-cache (the verifier refused ...); percpu (...)": the text reports' line.
std::string degraded_text(const std::vector<Degraded>& d);

}  // namespace kleak
