// Nothing optional takes the main job down: a part the kernel refuses is
// dropped with one warning line and listed in every report; the core, and a
// part asked for by name, are errors with the program and the verifier's
// last line. The refusals are real ones: KLEAK_REFUSE makes the verifier
// refuse the part's program (bpf/refuse.bpf.h).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "probe/bpf_load.h"
#include "child.h"
#include "env.h"
#include "probe/loader.h"
#include "msghold.h"
#include "report_json.h"

namespace kleak::test {
namespace {

// Loads kleak's programs: BPF required (env.h).
class Degrade : public BpfTest {};

using nlohmann::json;

const std::string kKleak = KLEAK_BIN;
const std::string kRefusedLine = "invalid read from stack R10 off=8 size=8";

// argv run with KLEAK_REFUSE=parts.
std::vector<std::string> refusing(const std::string& parts, std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"/usr/bin/env", "KLEAK_REFUSE=" + parts});
  return argv;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// The parts a JSON report lists as degraded, less what this kernel cannot
// have (report_json.h).
std::vector<std::string> degraded_parts(const json& j, bool kernel_tracer = true) {
  return dropped_parts(j, kernel_tracer);
}

// The reason a JSON report gives for dropping `part`, or "".
std::string degraded_reason(const json& j, const std::string& part) {
  for (const auto& d : j["degraded"])
    if (d["part"] == part) return d["reason"];
  return "";
}

// The issue's own demonstration: the stack cache refused, one warning, a
// working report that lists it, status 0.
TEST_F(Degrade, RefusedStackCacheIsDroppedOnceAndTracingGoesOn) {
  const int n = 30;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  Child kleak(refusing("stack-cache", {kKleak, "1", "-o", "0", "-p", std::to_string(holder.pid()), "--format", "json",
                                       "-q", "-T", "50"}),
              Child::Options{true, false});
  ASSERT_TRUE(kleak.read_line(std::chrono::seconds(30))) << kleak.read_stderr();
  ASSERT_TRUE(holder.send());
  auto last = kleak.last_line_after(SIGINT);
  ASSERT_TRUE(last) << "no final report with status 0: " << kleak.read_stderr();
  json fin = json::parse(*last);
  ASSERT_EQ(degraded_parts(fin), std::vector<std::string>{"stack-cache"}) << fin["degraded"].dump();
  const std::string reason = degraded_reason(fin, "stack-cache");
  EXPECT_TRUE(has(reason, "the verifier refused kleak_kmalloc: " + kRefusedLine)) << reason;
  EXPECT_TRUE(has(reason, "stack_cache.bpf.h:")) << reason;
  // Dropped, so not used: no hit and no walk counted through it.
  EXPECT_EQ(fin["counters"]["stack_cache"]["hits"], 0);
  EXPECT_EQ(fin["counters"]["stack_cache"]["cached"], 0);
  EXPECT_EQ(count_through(fin, holder.pid(), "load_msg"), static_cast<uint64_t>(n)) << *last;
  auto err = lines_of(kleak.read_stderr());
  ASSERT_EQ(err.size(), 1u) << kleak.read_stderr();
  EXPECT_TRUE(has(err[0], "kleak: warning: stack-cache dropped: the verifier refused kleak_kmalloc: " + kRefusedLine))
      << err[0];
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// The same refusal with --stack-cache on or verify named: an error.
TEST_F(Degrade, NamedStackCacheRefusedIsAnError) {
  for (const char* mode : {"on", "verify"}) {
    auto r = run(refusing("stack-cache", {kKleak, "-d", "1", "-q", "--stack-cache", mode}), {true, false});
    EXPECT_EQ(r.status, 1) << mode << ": " << r.err;
    auto err = lines_of(r.err);
    ASSERT_EQ(err.size(), 1u) << r.err;
    EXPECT_TRUE(has(err[0], "stack-cache was asked for by name, but this kernel refuses it: the verifier refused "
                            "kleak_kmalloc: " +
                                kRefusedLine))
        << err[0];
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  // Off by name: nothing to refuse.
  auto off = run(refusing("stack-cache", {kKleak, "-d", "1", "-q", "--stack-cache", "off", "--format", "json"}));
  ASSERT_EQ(off.status, 0) << off.err;
  EXPECT_TRUE(off.err.empty()) << off.err;
  EXPECT_TRUE(degraded_parts(json::parse(off.out)).empty());
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// The core refused: status 1 (4 with --ci), naming the program, the mode and
// the verifier's last lines, and nothing left loaded.
TEST_F(Degrade, CoreRefusedIsAnErrorNamingProgramAndVerifierLines) {
  auto r = run(refusing("core", {kKleak, "-d", "1", "-q"}));
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "kleak: error: the verifier refused kleak_kmalloc (kleak.bpf.c: exact stacks, stack cache "
                         "on, families slab): " +
                             kRefusedLine))
      << r.err;
  // the instruction refused, at whatever index the compiler put it
  EXPECT_TRUE(std::regex_search(r.err, std::regex(R"(\n  \d+: \(79\) r0 = \*\(u64 \*\)\(r10 \+8\)\n)"))) << r.err;
  EXPECT_TRUE(has(r.err, "run with -vv")) << r.err;
  EXPECT_FALSE(has(r.err, "dropped")) << "a part was dropped on the way: " << r.err;
  auto ci = run(refusing("core", {kKleak, "--ci", "-q", "--", "/bin/true"}));
  EXPECT_EQ(ci.status, 4) << ci.err;
  EXPECT_TRUE(has(ci.err, "the verifier refused kleak_kmalloc")) << ci.err;
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// A family refused: the others are traced; named by itself it is an error.
TEST_F(Degrade, RefusedFamilyIsDroppedTheOthersTraced) {
  auto r = run(refusing("percpu", {kKleak, "-d", "1", "-q", "--family", "all", "--format", "json"}), {true, false});
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  std::vector<std::string> parts = degraded_parts(j);
  EXPECT_NE(std::find(parts.begin(), parts.end(), "percpu"), parts.end()) << j["degraded"].dump();
  const auto& attached = j["attached"];
  EXPECT_EQ(std::find(attached.begin(), attached.end(), "percpu/percpu_alloc_percpu"), attached.end());
  EXPECT_NE(std::find(attached.begin(), attached.end(), "kmem/mm_page_alloc"), attached.end()) << attached.dump();
  EXPECT_NE(std::find(attached.begin(), attached.end(), "kmem/kmalloc"), attached.end());
  const auto& fams = j["families"];
  EXPECT_EQ(std::find(fams.begin(), fams.end(), "percpu"), fams.end()) << fams.dump();
  EXPECT_NE(std::find(fams.begin(), fams.end(), "page"), fams.end()) << fams.dump();
  auto named = run(refusing("percpu", {kKleak, "-d", "1", "-q", "--family", "slab,percpu"}));
  EXPECT_EQ(named.status, 1) << named.err;
  EXPECT_TRUE(has(named.err, "percpu was asked for by name, but this kernel refuses it: the verifier refused "
                             "kleak_pc_alloc: " +
                                 kRefusedLine))
      << named.err;
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// kmem_cache, peek and the exit follower are parts too.
TEST_F(Degrade, OtherOptionalPartsAreDropped) {
  struct Case {
    const char* part;
    const char* program;
    std::vector<std::string> extra;
  };
  const Case cases[] = {{"kmem_cache", "kleak_kc_alloc", {"-d", "1"}},
                        {"peek", "kleak_peek_run", {"-d", "1"}},
                        {"exit-follower", "kleak_exit", {"--ci", "--settle", "0", "--fail-on-bytes", "1000000000", "--", "/bin/true"}}};
  for (const Case& c : cases) {
    std::vector<std::string> argv = {kKleak, "-q", "--format", "json"};
    argv.insert(argv.end(), c.extra.begin(), c.extra.end());
    auto r = run(refusing(c.part, argv), {true, false});
    ASSERT_EQ(r.status, 0) << c.part << ": " << r.err;
    json j = json::parse(lines_of(r.out).back());
    ASSERT_EQ(degraded_parts(j), std::vector<std::string>{c.part}) << j["degraded"].dump();
    EXPECT_TRUE(has(degraded_reason(j, c.part), std::string("the verifier refused ") + c.program + ": "))
        << j["degraded"].dump();
    EXPECT_TRUE(has(r.err, std::string("warning: ") + c.part + " dropped")) << r.err;
  }
  // --peek names peek: refused, it is an error.
  auto peek = run(refusing("peek", {kKleak, "-d", "1", "-q", "--peek", "64"}));
  EXPECT_EQ(peek.status, 1) << peek.err;
  EXPECT_TRUE(has(peek.err, "peek was asked for by name")) << peek.err;
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// The bulk-free follower (fentry/fexit): attached where the kernel loads
// fentry programs (asked here with a program of the test's own), else a
// gap of the kernel, listed in every report and said at -v. Refused by the
// verifier, it is dropped as any optional part is.
TEST_F(Degrade, BulkFreeFollowerIsAttachedOrSaidToBeMissing) {
  auto r = run({kKleak, "-d", "1", "-q", "--format", "json"});
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  const json& a = j["attached"];
  const bool attached = std::find(a.begin(), a.end(), "fentry/kmem_cache_free_bulk") != a.end();
  EXPECT_EQ(attached, kernel_loads_fentry()) << a.dump() << " " << j["degraded"].dump();
  EXPECT_TRUE(degraded_parts(j).empty()) << j["degraded"].dump();  // the gap is checked in there
  EXPECT_TRUE(j["counters"].contains("frees_bulk")) << j["counters"].dump();
  EXPECT_TRUE(r.err.empty()) << "a gap of the kernel is said at -v, not warned: " << r.err;
  if (kernel_loads_fentry()) {
    auto refused = run(refusing("bulk-free-follower", {kKleak, "-d", "1", "-q", "--format", "json"}), {true, false});
    ASSERT_EQ(refused.status, 0) << refused.err;
    json k = json::parse(refused.out);
    EXPECT_EQ(degraded_parts(k), std::vector<std::string>{"bulk-free-follower"}) << k["degraded"].dump();
    EXPECT_TRUE(has(degraded_reason(k, "bulk-free-follower"), "the verifier refused kleak_free_bulk: " + kRefusedLine))
        << k["degraded"].dump();
    EXPECT_TRUE(has(refused.err, "warning: bulk-free-follower dropped")) << refused.err;
  } else {
    auto verbose = run({kKleak, "-d", "0.5", "-q", "-v", "--format", "json"}, {true, false});
    ASSERT_EQ(verbose.status, 0) << verbose.err;
    EXPECT_TRUE(has(verbose.err, "bulk-free-follower: this kernel refuses fentry programs")) << verbose.err;
    std::cout << "[ info     ] this kernel refuses fentry programs: a verifier refusal of the follower cannot be "
                 "shown here (scripts/vmtest's kernels attach it)\n";
  }
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// Direct pointer loads are used where this kernel's verifier takes them
// (v6.16+, asked of the kernel): refused, kleak copies with a helper.
TEST_F(Degrade, RefusedDirectPointerLoadsFallBackToTheHelper) {
  // A command of its own: an idle machine may allocate nothing in a second.
  auto r = run(refusing("direct-ptr-args", {kKleak, "--ci", "-q", "--format", "json", "--settle", "0",
                                            "--fail-on-bytes", "1000000000", "--", "/bin/ls", "/proc"}));
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(lines_of(r.out).back());
  if (direct_void_ptr_args_allowed()) {
    ASSERT_EQ(degraded_parts(j), std::vector<std::string>{"direct-ptr-args"}) << j["degraded"].dump();
  } else {
    EXPECT_TRUE(degraded_parts(j).empty()) << "not used on this kernel, so nothing to refuse: " << j["degraded"].dump();
  }
  EXPECT_GT(j["counters"]["allocs_recorded"].get<uint64_t>(), 0u);
}

// Every format says what was dropped.
TEST_F(Degrade, TextAndPrometheusListTheDroppedParts) {
  auto text = run(refusing("stack-cache,vmalloc", {kKleak, "-d", "1", "-q", "--family", "all"}));
  ASSERT_EQ(text.status, 0) << text.err;
  auto l = lines_of(text.out);
  ASSERT_GE(l.size(), 2u);
  EXPECT_TRUE(l[1].starts_with("  degraded: ")) << l[1];
  EXPECT_TRUE(has(l[1], "stack-cache (the verifier refused kleak_kmalloc: " + kRefusedLine)) << l[1];
  EXPECT_TRUE(has(l[1], "; vmalloc (the verifier refused kleak_va_alloc: ")) << l[1];
  auto prom = run(refusing("stack-cache", {kKleak, "-d", "1", "-q", "--format", "prometheus"}));
  ASSERT_EQ(prom.status, 0) << prom.err;
  const std::string gaps = std::to_string(kernel_gap_parts());
  EXPECT_TRUE(has(prom.out, "\nkleak_degraded_parts " + std::to_string(1 + kernel_gap_parts()) + "\n")) << prom.out;
  EXPECT_TRUE(has(prom.out, "\nkleak_degraded{part=\"stack-cache\"} 1\n")) << prom.out;
  auto whole = run({kKleak, "-d", "1", "-q", "--format", "prometheus"});
  ASSERT_EQ(whole.status, 0) << whole.err;
  EXPECT_TRUE(has(whole.out, "\nkleak_degraded_parts " + gaps + "\n")) << whole.out;
  if (kernel_gap_parts() == 0) {
    EXPECT_FALSE(has(whole.out, "kleak_degraded{")) << whole.out;
  }
}

// kleak selftest lists what was dropped; a refused family is a failure
// there (the kernel has its attach points), a refused stack cache is not.
TEST_F(Degrade, SelftestListsDroppedParts) {
  auto sc = run(refusing("stack-cache", {kKleak, "selftest", "--format", "json"}));
  ASSERT_EQ(sc.status, 0) << sc.out << sc.err;
  json j = json::parse(sc.out);
  EXPECT_EQ(j["passed"], true);
  EXPECT_EQ(degraded_parts(j), std::vector<std::string>{"stack-cache"});
  auto pc = run(refusing("percpu", {kKleak, "selftest", "--format", "json"}));
  EXPECT_EQ(pc.status, 1) << pc.out << pc.err;
  json p = json::parse(pc.out);
  EXPECT_EQ(p["passed"], false);
  for (const auto& row : p["results"]) {
    if (row["family"] != "percpu") continue;
    EXPECT_EQ(row["result"], "missed");
    EXPECT_TRUE(has(row["detail"], "dropped: the verifier refused kleak_pc_alloc")) << row.dump();
  }
  // The load matrix names each case the refusal breaks.
  auto loads = run(refusing("stack-cache", {kKleak, "selftest", "--loads"}));
  EXPECT_EQ(loads.status, 1) << loads.out;
  EXPECT_TRUE(has(loads.out, "kleak.bpf.c families=slab stacks=exact stack-cache=on follow=no filter=none")) << loads.out;
  EXPECT_TRUE(has(loads.out, "FAILED: stack-cache refused: the verifier refused kleak_kmalloc: " + kRefusedLine))
      << loads.out;
  auto fine = run({kKleak, "selftest", "--loads", "--format", "json"});
  EXPECT_EQ(fine.status, 0) << fine.out;
  EXPECT_EQ(json::parse(fine.out)["passed"], true);
}

// kleak user: the exec follower is optional, the uprobes are the core.
TEST_F(Degrade, UserTracerDropsTheExecFollowerOnly) {
  auto r = run(refusing("exec-follower", {kKleak, "user", "--format", "json", "-q", "-c", KLEAK_ULEAK_BIN}),
               {true, false});
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(degraded_parts(j, false), std::vector<std::string>{"exec-follower"});
  EXPECT_FALSE(j["stacks"].empty());
  EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
  auto core = run(refusing("core", {kKleak, "user", "-q", "-c", "/bin/true"}));
  EXPECT_EQ(core.status, 1) << core.err;
  EXPECT_TRUE(has(core.err, "the verifier refused kleak_u_enter (kleak_user.bpf.c: exact stacks): " + kRefusedLine))
      << core.err;
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// A pinned session keeps what `kleak start` dropped for every `kleak report`.
TEST_F(Degrade, PinnedSessionReportsWhatStartDropped) {
  auto s = run(refusing("stack-cache", {kKleak, "start", "--mount-bpffs", "-q"}), {true, false});
  ASSERT_EQ(s.status, 0) << s.err;
  EXPECT_TRUE(has(s.err, "stack-cache dropped")) << s.err;
  auto r = run({kKleak, "report", "--format", "json"});
  auto stop = run({kKleak, "stop", "--force", "-q"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(degraded_parts(json::parse(r.out)), std::vector<std::string>{"stack-cache"}) << r.out;
  EXPECT_EQ(stop.status, 0) << stop.err;
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(5)));
}

}  // namespace
}  // namespace kleak::test
