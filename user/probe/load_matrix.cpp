#include "probe/load_matrix.h"

#include <unistd.h>

#include <chrono>

#include <bpf/libbpf.h>
#include <fmt/format.h>

#include "model/abi.h"
#include "probe/bpf_load.h"
#include "model/sampling.h"

namespace kleak {
namespace {

struct Mode {
  const char* name;
  uint32_t sample_every;
  uint32_t stack_cache;
};
// --stack-cache on (the default), off, verify; --low-overhead (where the
// stack cache is not used).
const Mode kModes[] = {
    {"stacks=exact stack-cache=on", 1, KLEAK_SC_ON},
    {"stacks=exact stack-cache=off", 1, KLEAK_SC_OFF},
    {"stacks=exact stack-cache=verify", 1, KLEAK_SC_VERIFY},
    {"stacks=sampled", kLowOverheadSampleEvery, KLEAK_SC_ON},
};

LoaderConfig base_config(const Mode& m) {
  LoaderConfig cfg;
  cfg.self_tgid = static_cast<uint32_t>(getpid());
  // Small maps: the case is the programs, and maps are preallocated.
  cfg.max_allocs = 1024;
  cfg.stack_storage_size = 256;
  cfg.stack_sample_every = m.sample_every;
  cfg.stack_cache = m.stack_cache;
  return cfg;
}

}  // namespace

std::vector<LoadCase> load_cases() {
  std::vector<LoadCase> cases;
  struct Fam {
    const char* name;
    FamilySet set;
  };
  // Each family alone (its programs are verified in every mode either way,
  // but alone is how the command line loads them) and all together.
  const Fam fams[] = {{"slab", FamilySet{true, false, false, false}},
                      {"page", FamilySet{false, true, false, false}},
                      {"percpu", FamilySet{false, false, true, false}},
                      {"vmalloc", FamilySet{false, false, false, true}},
                      {"all", FamilySet{true, true, true, true}}};
  for (const Mode& m : kModes) {
    for (const Fam& f : fams) {
      for (bool follow : {false, true}) {
        LoadCase c;
        c.name = fmt::format("kleak.bpf.c families={} {} follow={} filter=none", f.name, m.name, follow ? "yes" : "no");
        c.kernel = base_config(m);
        c.kernel.families = f.set;
        // kleak --ci -- CMD and pinned sessions follow a process tree.
        if (follow) c.kernel.follow_tgids = {static_cast<uint32_t>(getpid())};
        cases.push_back(std::move(c));
      }
    }
    // The filters that change the programs' constant branches: -p, --cache
    // of a kmalloc cache (a size and a kmalloc type), --cache of a named cache.
    LoadCase pid;
    pid.name = fmt::format("kleak.bpf.c families=slab {} follow=no filter=pid", m.name);
    pid.kernel = base_config(m);
    pid.kernel.target_tgid = 1;
    cases.push_back(std::move(pid));
    LoadCase kmalloc;
    kmalloc.name = fmt::format("kleak.bpf.c families=slab {} follow=no filter=kmalloc-cache", m.name);
    kmalloc.kernel = base_config(m);
    kmalloc.kernel.kmem_cache_off = true;
    kmalloc.kernel.kmalloc_type = 0;
    kmalloc.kernel.min_size_bytes = kmalloc.kernel.max_size_bytes = 4096;
    cases.push_back(std::move(kmalloc));
    LoadCase named;
    named.name = fmt::format("kleak.bpf.c families=slab {} follow=no filter=named-cache", m.name);
    named.kernel = base_config(m);
    named.kernel.kmalloc_off = true;
    named.kernel.cache_name = "dentry";
    cases.push_back(std::move(named));
  }
  for (uint32_t every : {1u, kLowOverheadSampleEvery}) {
    LoadCase u;
    u.user = true;
    u.name = fmt::format("kleak_user.bpf.c stacks={}", every == 1 ? "exact" : "sampled");
    u.uprobe.max_allocs = 1024;
    u.uprobe.stack_storage_size = 256;
    u.uprobe.stack_sample_every = every;
    cases.push_back(std::move(u));
  }
  return cases;
}

KernelGaps probe_kernel_gaps() {
  KernelGaps g;
  // The stack cache walks the stack copy with bpf_loop (v5.17) and finds
  // the task's stack through bpf_get_current_task_btf (v5.11). Both are
  // tracing helpers; a raw tracepoint program is the cheapest probe that
  // has them.
  struct Helper {
    bpf_func_id id;
    const char* name;
    const char* since;
  };
  const Helper helpers[] = {{BPF_FUNC_loop, "bpf_loop", "v5.17"},
                            {BPF_FUNC_get_current_task_btf, "bpf_get_current_task_btf", "v5.11"}};
  for (const Helper& h : helpers) {
    if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_RAW_TRACEPOINT, h.id, nullptr) > 0) continue;
    g.parts |= KLEAK_PART_STACK_CACHE;
    g.why.push_back({part_name(KLEAK_PART_STACK_CACHE),
                     fmt::format("this kernel has no {} helper ({}), which the stack cache needs", h.name, h.since)});
    break;
  }
  if (auto st = user_tracer_supported(); !st) g.user_tracer = st.error().message;
  return g;
}

LoadOutcome run_load_case(const LoadCase& c, const KernelGaps& gaps) {
  LoadOutcome out;
  out.name = c.name;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Degraded> dropped;
  Status st;
  if (c.user) {
    auto l = UserLoader::create(c.uprobe);
    if (l) dropped = (*l)->degraded();
    else st = l.error();
    // A kernel the user-space tracer cannot run on: refused, as it should be.
    if (!l && !gaps.user_tracer.empty()) {
      out.gaps.push_back({"kleak user", gaps.user_tracer, false});
      out.passed = true;
      return out;
    }
  } else {
    st = Loader::load_only(c.kernel, &dropped);
  }
  out.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!st) {
    out.failure = st.error().message;
    return out;
  }
  for (const Degraded& d : dropped) {
    // A tracepoint the kernel lacks, or a part the kernel cannot have: a gap.
    bool gap = !d.refused;
    for (const Degraded& g : gaps.why) gap |= d.part == g.part;
    if (gap) {
      out.gaps.push_back(d);
      continue;
    }
    out.failure += (out.failure.empty() ? "" : "; ") + d.part + " refused: " + d.reason;
  }
  out.passed = out.failure.empty();
  return out;
}

std::string render_load_matrix_text(const std::string& kernel, const std::vector<LoadOutcome>& rows) {
  std::string out = fmt::format("kleak selftest --loads: kernel {}: every BPF object in every mode, loaded, not attached\n",
                                kernel);
  size_t failed = 0, gaps = 0;
  for (const LoadOutcome& r : rows) {
    std::string result = r.passed ? fmt::format("loads ({:.0f} ms)", r.ms) : "FAILED: " + r.failure;
    if (r.passed && !r.gaps.empty()) result += ", without " + degraded_text(r.gaps);
    out += fmt::format("  {:<88} {}\n", r.name, result);
    failed += !r.passed;
    gaps += !r.gaps.empty();
  }
  out += fmt::format("loads {}: {} cases, {} failed, {} with parts this kernel lacks\n", failed ? "FAILED" : "passed",
                     rows.size(), failed, gaps);
  return out;
}

nlohmann::json load_matrix_json(const std::string& kernel, const std::vector<LoadOutcome>& rows) {
  nlohmann::json cases = nlohmann::json::array();
  bool passed = true;
  for (const LoadOutcome& r : rows) {
    nlohmann::json gaps = nlohmann::json::array();
    for (const Degraded& g : r.gaps) gaps.push_back({{"part", g.part}, {"reason", g.reason}});
    cases.push_back({{"case", r.name},
                     {"passed", r.passed},
                     {"ms", r.ms},
                     {"gaps", gaps},
                     {"failure", r.passed ? nlohmann::json(nullptr) : nlohmann::json(r.failure)}});
    passed &= r.passed;
  }
  return {{"schema", "kleak/loads/v1"}, {"kernel", kernel}, {"passed", passed}, {"cases", cases}};
}

}  // namespace kleak
