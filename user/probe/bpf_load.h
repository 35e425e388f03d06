// What loading a BPF object takes beyond libbpf: libbpf's log bridged to
// kleak's logger, each program's verifier log kept, and the tiered load.
//
// The tiered load: a kernel may refuse an optional part of an object (the
// stack cache, direct pointer loads, one allocator family, the exit
// follower, peek) while the core would load. Such a refusal drops that part,
// says so in one warning line (the part and the verifier's last line) and
// goes on; it becomes an error only for the core, or for a part the user
// asked for by name. Which part caused a refusal is found by trying: the
// parts that may have caused it, cheapest to lose first, each dropped alone;
// a drop that moves the load past the refusal is kept, one that does not is
// undone. No guessing from log text beyond the refused program's name.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/degraded.h"
#include "util/result.h"

struct bpf_object;
struct bpf_program;

namespace kleak {

// Routes libbpf's log through kleak's logger: warnings always, info/debug
// with -vv. Call once before opening.
void install_libbpf_logger();

// While one is alive, libbpf's warnings go to the debug log instead: the
// tiered load reports refusals itself, in one line each.
class QuietLibbpf {
 public:
  QuietLibbpf();
  ~QuietLibbpf();
  QuietLibbpf(const QuietLibbpf&) = delete;
  QuietLibbpf& operator=(const QuietLibbpf&) = delete;
};

// The --family-style name of a part (one enum kleak_part bit):
// "stack-cache", "direct-ptr-args", "kmem_cache", "page", "percpu",
// "vmalloc", "exit-follower", "peek", "exec-follower", "core".
const char* part_name(uint32_t part);
// "stack-cache,percpu" -> their bits; an unknown name is an error.
Result<uint32_t> parse_parts(std::string_view list);
// The parts named by the environment variable KLEAK_REFUSE, which makes the
// BPF side of each refused by the verifier (bpf/refuse.bpf.h): how the tests
// make a part fail on a kernel that would accept it. 0 when unset.
Result<uint32_t> parts_to_refuse();

// The verifier's last meaningful line of a load log (the error, not the
// "processed N insns" summary), with the source line the log names nearest
// above it: "R2 pointer ^= pointer prohibited (stack_cache.bpf.h:579)".
// "no verifier log" when there is none.
std::string verifier_last_line(std::string_view log);
// The last `n` meaningful lines, oldest first, for an error's detail.
std::vector<std::string> verifier_tail(std::string_view log, size_t n);

// A program the kernel refused to load, and its verifier log.
struct Refusal {
  std::string program;
  std::string log;
  std::string line;  // verifier_last_line(log)
};

// Gives every program of `obj` that will be loaded a log buffer of its own,
// so that after a failed load the refused program (the one whose buffer
// holds a log: libbpf loads the others without a log) and its log are
// known. The buffers are one allocation the kernel writes into only on a
// refusal, so the pages of the unused ones are never touched. Keep it alive
// across bpf_object__load().
class VerifierLogs {
 public:
  explicit VerifierLogs(bpf_object* obj);
  // After a failed load; nullopt when no program was refused (the failure
  // was elsewhere: a map, BTF, memory).
  std::optional<Refusal> refusal() const;

 private:
  static constexpr size_t kLogBytes = 4u << 20;  // per program
  std::vector<bpf_program*> progs_;
  std::unique_ptr<char[]> arena_;
};

// One load of `obj` by `load` (a skeleton's load, which returns 0 or
// -errno), its verifier logs kept and libbpf quiet: nothing when it
// loaded, the refusal when the verifier refused a program, else the error.
Result<std::optional<Refusal>> load_watched(bpf_object* obj, const std::function<int()>& load);

// One tiered load (see the top of this file).
struct TierPlan {
  // What is loaded, for errors: "kleak.bpf.c (exact stacks, stack cache on)".
  std::string what;
  // Parts asked for by name: refused, they are an error instead of a drop.
  uint32_t required = 0;
  // Opens, configures without the parts in `dropped`, and loads. Returns
  // nothing when loaded, the refusal when the verifier refused a program,
  // an error for any other failure.
  std::function<Result<std::optional<Refusal>>(uint32_t dropped)> attempt;
  // The parts that may have made the verifier refuse `program`, to drop in
  // this order (never KLEAK_PART_CORE).
  std::function<std::vector<uint32_t>(const std::string& program)> causes;
};

struct TierResult {
  uint32_t dropped = 0;
  std::vector<Degraded> degraded;
};

// Loads per `plan`; on success the last attempt's object is the loaded one.
Result<TierResult> load_in_tiers(const TierPlan& plan);

}  // namespace kleak
