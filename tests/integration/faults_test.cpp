// Faults injected into the real kleak binary, one test each: full maps,
// signals mid-report, unwritable or hostile --output paths, bad BTF files,
// missing capabilities, unmounted tracefs. Each asserts the documented exit
// status and, for errors, the exact one line on stderr (docs/usage.md "Exit
// status"); docs/reliability.md lists them with what was observed.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "child.h"
#include "env.h"
#include "msghold.h"
#include "report_json.h"

namespace kleak::test {
namespace {

// Loads kleak's programs: BPF required (env.h).
class Faults : public BpfTest {};

using nlohmann::json;

const std::string kKleak = KLEAK_BIN;

std::vector<json> json_lines(const std::string& out) {
  std::vector<json> v;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) v.push_back(json::parse(line));
  return v;
}

// A fresh directory under the test temp dir, removed with the object.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(::testing::TempDir() + "/kleak-faults-" + name + "-" + std::to_string(getpid())) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Allocation traffic while a test's kleak runs, so a tiny map fills even on
// an idle machine (the clean CI host allocates ~20 objects in 0.5 s): one
// SysV message held every 2 ms (one stack, plus a new queue every 4), and
// /proc/stat reads (a handful of other stacks).
class Traffic {
 public:
  Traffic() : drip_({KLEAK_MSGHOLD_BIN, "100000"}), churn_({KLEAK_CHURN_BIN, "proc", "1000000"}) {
    EXPECT_TRUE(drip_.read_line());   // ready PID
    EXPECT_TRUE(churn_.read_line());  // ready PID
    drip_.send_line("drip 2");
    churn_.send_line("go");
  }

 private:
  Child drip_;   // stdin closed at destruction: stops, removes its queues
  Child churn_;  // killed at destruction
};

// A tiny live map: kleak keeps reporting, every report counts the lost
// allocations and says it is incomplete, and the text report says what to do.
TEST_F(Faults, LiveMapFullKeepsReportingAndMarksIncomplete) {
  Traffic traffic;
  auto r = run({kKleak, "0.5", "3", "-q", "-o", "0", "--max-allocs", "8", "--format", "json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  auto reports = json_lines(r.out);
  ASSERT_EQ(reports.size(), 3u) << r.out;
  uint64_t lost_before = 0;
  for (const json& j : reports) {
    EXPECT_EQ(j["live"]["capacity"], 8);
    EXPECT_LE(j["live"]["allocations"].get<uint64_t>(), 8u);
    uint64_t lost = j["counters"]["live_map_full"].get<uint64_t>();
    EXPECT_GT(lost, 0u) << "more than 8 messages are held in 0.5 s";
    EXPECT_GE(lost, lost_before);
    lost_before = lost;
    EXPECT_EQ(j["complete"], false);
  }
  EXPECT_EQ(reports.back()["final"], true);

  auto text = run({kKleak, "-q", "-d", "0.5", "-o", "0", "--max-allocs", "8"});
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("allocations were not tracked: raise --max-allocs"), std::string::npos) << text.out;
}

// In CI mode the same loss is the "incomplete" verdict, status 3. The byte
// threshold keeps the few recorded allocations from being judged a leak.
TEST_F(Faults, LiveMapFullMakesCiIncomplete) {
  auto r = run({kKleak, "--ci", "-q", "--settle", "1", "--max-allocs", "4", "--fail-on-bytes", "1000000000",
                "--format", "json", "--", "/bin/sh", "-c", "cat /proc/stat /proc/meminfo >/dev/null"});
  EXPECT_EQ(r.status, 3) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["ci"]["verdict"], "incomplete");
  EXPECT_EQ(j["ci"]["exit_status"], 3);
  EXPECT_GT(j["counters"]["live_map_full"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["complete"], false);
  EXPECT_EQ(j["ci"]["summary"].get<std::string>().rfind("incomplete: allocations were lost", 0), 0u)
      << j["ci"]["summary"];
}

// A stack store with room for two stacks: new stacks are counted as ENOMEM,
// their allocations are still reported (by call site), and the text report
// says what to raise.
TEST_F(Faults, StackStoreFullIsCountedAndShown) {
  Traffic traffic;
  auto r = run({kKleak, "-q", "-d", "1", "-o", "0", "-T", "1000", "--stack-storage-size", "2", "--format", "json"});
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["live"]["stack_capacity"], 2);
  const uint64_t enomem = j["counters"]["stack_errors"]["ENOMEM"].get<uint64_t>();
  EXPECT_GT(enomem, 0u);
  size_t without_stack = 0, with_stack = 0;
  for (const auto& s : j["stacks"]) {
    if (s["stack_error"] == "ENOMEM") {
      ++without_stack;
      EXPECT_TRUE(s["frames"].empty()) << s.dump();
      EXPECT_TRUE(s["call_site"]["addr"].is_string()) << "reported by call site: " << s.dump();
    } else {
      ++with_stack;
    }
  }
  EXPECT_GT(without_stack, 0u);
  EXPECT_LE(with_stack, 2u);
  // Stack loss is not allocation loss: the report is still complete.
  EXPECT_EQ(j["complete"], true);

  auto text = run({kKleak, "-q", "-d", "0.5", "-o", "0", "--stack-storage-size", "2"});
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("stack store filled up"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("raise --stack-storage-size"), std::string::npos) << text.out;
}

std::string wchan(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/wchan");
  std::string s;
  std::getline(in, s);
  return s;
}

// SIGKILL while kleak is inside a report: its stdout is a 4 KiB pipe nobody
// reads, so it blocks in the write of a report of some 200 allocation lines.
// Nothing may stay loaded: links and programs are fd-based.
TEST_F(Faults, SigkillMidReportLeavesNoProgram) {
  const int n = 200;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  ASSERT_TRUE(holder.send());

  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  ASSERT_GE(fcntl(out[1], F_SETPIPE_SZ, 4096), 4096);
  const std::string pid = std::to_string(holder.pid());
  pid_t k = fork();
  ASSERT_GE(k, 0);
  if (k == 0) {
    dup2(out[1], 1);
    execl(kKleak.c_str(), kKleak.c_str(), "0.5", "-q", "-o", "0", "-a", "-p", pid.c_str(), nullptr);
    _exit(127);
  }
  close(out[1]);
  // Blocked in the report's write once the pipe is full.
  std::string where;
  int queued = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    where = wchan(k);
    ioctl(out[0], FIONREAD, &queued);
    if (where.ends_with("pipe_write") && queued > 0) break;  // anon_pipe_write since v6.16
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(where.ends_with("pipe_write")) << "kleak never blocked in a report: " << where;
  EXPECT_GT(queued, 0);
  // The default mode's 7 programs, and the bulk-free follower's where the
  // kernel has its functions.
  const auto progs = loaded_kleak_programs();
  const auto followers = std::count_if(progs.begin(), progs.end(), [](const std::string& p) {
    return p == "kleak_free_bulk" || p == "kleak_rcu_sheaf" || p == "kleak_mod_load" || p == "kleak_mod_free";
  });
  EXPECT_EQ(progs.size() - static_cast<size_t>(followers), 7u) << "still attached while blocked";
  kill(k, SIGKILL);
  int st = 0;
  ASSERT_EQ(waitpid(k, &st, 0), k);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  close(out[0]);
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(5)));
}

// Root with every capability but the two that bypass file permissions: a
// directory it may not write is EACCES, as for any user; a read-only tmpfs
// is EROFS. One line each, status 1, nothing loaded.
TEST_F(Faults, UnwritableOutputAsRootIsOneLine) {
  TempDir dir("unwritable");
  const std::string ro_dir = dir.path() + "/ro", file = ro_dir + "/report";
  std::filesystem::create_directories(ro_dir);
  std::filesystem::permissions(ro_dir, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  auto denied = run({"/usr/bin/setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", kKleak, "-q", "-d",
                     "1", "--output", file});
  EXPECT_EQ(denied.status, 1);
  EXPECT_EQ(denied.err, "kleak: error: cannot write " + file + ": Permission denied (-EACCES)\n");
  EXPECT_EQ(denied.out, "");

  const std::string mnt = dir.path() + "/mnt";
  std::filesystem::create_directories(mnt);
  auto rofs = run({"/usr/bin/unshare", "-m", "--", "/bin/sh", "-c",
                   "mount -t tmpfs -o ro tmpfs \"$1\" && exec \"$2\" -q -d 1 --output \"$1/report\"", "sh", mnt,
                   kKleak});
  EXPECT_EQ(rofs.status, 1);
  EXPECT_EQ(rofs.err, "kleak: error: cannot write " + mnt + "/report: Read-only file system (-EROFS)\n");
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// Files that would leak a report to someone else: a symlink planted at the
// path is refused (its target untouched), an existing world-readable file
// is made private, one owned by another user is refused (untouched).
TEST_F(Faults, OutputNeverReachesOtherReaders) {
  TempDir dir("private");
  namespace fs = std::filesystem;
  const std::string target = dir.path() + "/target", link = dir.path() + "/link";
  std::ofstream(target) << "untouched\n";
  fs::create_symlink(target, link);
  auto sym = run({kKleak, "-q", "-d", "1", "--output", link});
  EXPECT_EQ(sym.status, 1);
  EXPECT_EQ(sym.err, "kleak: error: cannot write " + link + ": a symbolic link (refused: not followed)\n");
  std::string line;
  std::getline(std::ifstream(target), line);
  EXPECT_EQ(line, "untouched");

  const std::string open = dir.path() + "/existing.json";
  std::ofstream(open) << "an old report\n";
  fs::permissions(open, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                            fs::perms::others_read);
  auto ok = run({kKleak, "-q", "-d", "0.5", "--format", "json", "--output", open});
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(fs::status(open).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  std::getline(std::ifstream(open), line);
  EXPECT_EQ(json::parse(line)["final"], true) << "truncated and rewritten";

  const std::string theirs = dir.path() + "/theirs";
  std::ofstream(theirs) << "someone else's\n";
  ASSERT_EQ(chown(theirs.c_str(), 65534, 65534), 0);
  auto other = run({kKleak, "-q", "-d", "0.5", "--output", theirs});
  EXPECT_EQ(other.status, 1);
  EXPECT_EQ(other.err, "kleak: error: cannot write " + theirs + ": owned by uid 65534, not by this user (refused)\n");
  std::getline(std::ifstream(theirs), line);
  EXPECT_EQ(line, "someone else's");
}

// --output in CI mode: the report goes to the file, not to stdout.
TEST_F(Faults, CiWritesItsReportToOutput) {
  TempDir dir("ci-output");
  const std::string file = dir.path() + "/ci.json";
  auto r = run({kKleak, "--ci", "-q", "--settle", "1", "--fail-on-bytes", "1000000000", "--format", "json",
                "--output", file, "--", "/bin/true"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "");
  std::string line;
  std::getline(std::ifstream(file), line);
  EXPECT_EQ(json::parse(line)["ci"]["verdict"], "pass");
  EXPECT_EQ(std::filesystem::status(file).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  auto full = run({kKleak, "--ci", "-q", "--settle", "0", "--fail-on-bytes", "1000000000", "--output", "/dev/full",
                   "--", "/bin/true"});
  EXPECT_EQ(full.status, 3);
  EXPECT_EQ(full.err, "kleak: error: write report to /dev/full: No space left on device (-ENOSPC)\n");
}

// --btf pointing at something that is not kernel BTF: one line naming the
// file and what is wrong with it, status 1 (runtime failure), nothing loaded.
TEST_F(Faults, BadBtfFileIsOneLine) {
  TempDir dir("btf");
  const std::string text = dir.path() + "/text", truncated = dir.path() + "/truncated";
  std::ofstream(text) << "not BTF at all\n";
  {
    std::ifstream vmlinux("/sys/kernel/btf/vmlinux", std::ios::binary);
    std::vector<char> head(100000);
    vmlinux.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(truncated, std::ios::binary).write(head.data(), vmlinux.gcount());
  }
  const std::string elf = KLEAK_MSGHOLD_BIN;  // an ELF file without a .BTF section
  const std::pair<std::string, std::string> cases[] = {
      {"/nonexistent/vmlinux", "--btf /nonexistent/vmlinux: No such file or directory (-ENOENT)"},
      {dir.path(), "--btf " + dir.path() + ": not a regular file"},
      {text, "--btf " + text + ": not BTF (neither raw BTF nor an ELF file)"},
      {elf, "--btf " + elf + ": an ELF file without a .BTF section"},
      {truncated, "--btf " + truncated + ": corrupt BTF: Invalid argument (-EINVAL)"},
  };
  for (const auto& [path, why] : cases) {
    auto r = run({kKleak, "-q", "-d", "1", "--btf", path});
    EXPECT_EQ(r.status, 1) << path;
    EXPECT_EQ(r.err, "kleak: error: " + why + "\n");
  }
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// Without the capabilities: the one line names what is missing. With
// CAP_BPF and CAP_PERFMON alone (no CAP_SYS_ADMIN) kleak traces.
TEST_F(Faults, MissingCapabilitiesAreNamed) {
  const std::string prefix = "kleak: error: need root, or CAP_BPF and CAP_PERFMON: missing ";
  auto nobody = run({kKleak, "-q", "-d", "1"}, Child::Options{false, true});
  EXPECT_EQ(nobody.status, 1);
  EXPECT_EQ(nobody.err, prefix + "CAP_BPF, CAP_PERFMON (try: sudo kleak ...)\n");
  auto bpf_only = run({"/usr/bin/setpriv", "--bounding-set=-all,+bpf", "--", kKleak, "-q", "-d", "1"});
  EXPECT_EQ(bpf_only.status, 1);
  EXPECT_EQ(bpf_only.err, prefix + "CAP_PERFMON (try: sudo kleak ...)\n");
  auto perfmon_only = run({"/usr/bin/setpriv", "--bounding-set=-all,+perfmon", "--", kKleak, "-q", "-d", "1"});
  EXPECT_EQ(perfmon_only.status, 1);
  EXPECT_EQ(perfmon_only.err, prefix + "CAP_BPF (try: sudo kleak ...)\n");
  auto ci = run({"/usr/bin/setpriv", "--bounding-set=-all,+bpf", "--", kKleak, "--ci", "-q", "--", "/bin/true"});
  EXPECT_EQ(ci.status, 4);
  EXPECT_EQ(ci.err, prefix + "CAP_PERFMON (try: sudo kleak ...)\n");

  auto enough = run({"/usr/bin/setpriv", "--bounding-set=-all,+bpf,+perfmon", "--", kKleak, "-q", "-d", "0.5",
                     "--format", "json"});
  ASSERT_EQ(enough.status, 0) << enough.err;
  json j = json::parse(enough.out);
  EXPECT_EQ(tracepoints_attached(j), 4u) << j["attached"].dump();
  EXPECT_GT(j["counters"]["allocs_seen"].get<uint64_t>(), 0u);
}

// tracefs, debugfs and bpffs unmounted (in a private mount namespace):
// kleak attaches through BTF and needs none of them.
TEST_F(Faults, NoTracefsNoBpffsStillTraces) {
  auto r = run({"/usr/bin/unshare", "-m", "--", "/bin/sh", "-c",
                "for m in $(awk '$3==\"tracefs\"||$3==\"debugfs\"||$3==\"bpf\"{print $2}' /proc/self/mounts); do "
                "umount -l \"$m\" 2>/dev/null; done; "
                "if awk '$3==\"tracefs\"||$3==\"debugfs\"||$3==\"bpf\"{f=1} END{exit !f}' /proc/self/mounts; then "
                "echo still mounted >&2; exit 99; fi; exec \"$1\" -q -d 0.5 --format json",
                "sh", kKleak});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  json j = json::parse(r.out);
  EXPECT_EQ(tracepoints_attached(j), 4u) << j["attached"].dump();
  EXPECT_GT(j["counters"]["allocs_seen"].get<uint64_t>(), 0u);
}

// Frees in interrupts while a free program runs on that CPU: the kernel
// skips the nested run (recursion_misses) and the free programs' backups
// do those frees (bpf/kleak.bpf.c, KLEAK_FREE_PROGRAMS). Every skipped run
// of a free program is one its backup did: none is left to make a phantom.
// (A backup interrupted itself may redo a free its program did: harmless,
// and why rescues can exceed the skipped runs.)
TEST_F(Faults, FreesTheKernelSkipsAreDoneByTheBackups) {
  Child load({KLEAK_SOFTIRQ_BIN, "8"});
  auto r = run({kKleak, "-d", "10", "-q", "--family", "slab,page", "--format", "json"});
  ASSERT_EQ(load.read_line(std::chrono::seconds(30)), "done");
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  if (!j["counters"]["recursion_misses"].is_number()) {
    EXPECT_FALSE(kernel_has_member("bpf_prog_info", "recursion_misses")) << "the kernel reports them, kleak did not";
    return;  // before v5.12 nothing says which runs were skipped
  }
  const json& misses = j["counters"]["recursion_misses_by_program"];
  auto skipped = [&](std::initializer_list<const char*> progs) {
    uint64_t n = 0;
    for (const char* p : progs)
      if (misses.contains(p)) n += misses[p].get<uint64_t>();
    return n;
  };
  const uint64_t slab = skipped({"kleak_kfree", "kleak_kc_free"}), page = skipped({"kleak_pg_free"});
  std::cout << "skipped runs of the free programs: slab " << slab << ", page " << page << "; by program "
            << misses.dump() << "\n";
  EXPECT_GE(j["counters"]["frees_rescued"].get<uint64_t>(), slab) << misses.dump();
  EXPECT_GE(j["family_counters"]["page"]["frees_rescued"].get<uint64_t>(), page) << misses.dump();
  EXPECT_EQ(j["counters"]["frees_seen"].get<uint64_t>() > 100000, true) << "the load made few frees";
}

}  // namespace
}  // namespace kleak::test
