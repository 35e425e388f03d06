// Pinned mode end to end: `kleak start` exits and leaves the tracer in the
// kernel, reports come from new processes, `kleak stop` leaves nothing.
// Every test stops the session in TearDown: a session left pinned would keep
// kleak_* programs loaded and fail every later test that checks for none.
#include <bpf/bpf.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <algorithm>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "bpf_objects.h"
#include "child.h"
#include "env.h"
#include "msghold.h"
#include "model/pin_meta.h"

namespace kleak::test {
namespace {

using nlohmann::json;

const std::string kKleak = KLEAK_BIN;
const std::string kDir = "/sys/fs/bpf/kleak";

// Ids of the kleak_* programs, links (by their program's name) and maps
// loaded now. Tests compare against the ids seen before they ran, so a
// kleak another user runs on this machine does not count.
struct KleakIds {
  std::set<uint32_t> progs, links, maps;
  bool subset_of(const KleakIds& o) const {
    auto in = [](const std::set<uint32_t>& a, const std::set<uint32_t>& b) {
      return std::includes(b.begin(), b.end(), a.begin(), a.end());
    };
    return in(progs, o.progs) && in(links, o.links) && in(maps, o.maps);
  }
};

KleakIds kleak_ids() {
  KleakIds ids;
  for_each_bpf_object<bpf_prog_info>(bpf_prog_get_next_id, bpf_prog_get_fd_by_id,
                                     [&ids](uint32_t id, const bpf_prog_info& info) {
                                       if (kleak_named(info.name)) ids.progs.insert(id);
                                     });
  for_each_bpf_object<bpf_link_info>(bpf_link_get_next_id, bpf_link_get_fd_by_id,
                                     [&ids](uint32_t id, const bpf_link_info& info) {
                                       if (ids.progs.count(info.prog_id)) ids.links.insert(id);
                                     });
  for_each_bpf_object<bpf_map_info>(bpf_map_get_next_id, bpf_map_get_fd_by_id,
                                    [&ids](uint32_t id, const bpf_map_info& info) {
                                      if (kleak_named(info.name)) ids.maps.insert(id);
                                    });
  return ids;
}

// Polls until no kleak program, link or map is loaded that was not there
// `before` (teardown after the last reference goes is deferred by RCU), or
// the timeout passes.
bool nothing_left_within(const KleakIds& before, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!kleak_ids().subset_of(before)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// Entries of /sys/fs/bpf that kleak made: the session or a half-built one.
std::vector<std::string> kleak_pins() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/fs/bpf", ec))
    if (e.path().filename().string().rfind("kleak", 0) == 0) names.push_back(e.path().filename());
  return names;
}

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// The held messages of `tgid` in a JSON report: {count, bytes} at stacks
// through load_msg and do_msgsnd (bytes from stacks only `tgid` holds).
std::pair<uint64_t, uint64_t> held_messages(const json& report, pid_t tgid) {
  uint64_t count = 0, bytes = 0;
  for (const auto& s : report["stacks"]) {
    bool load = false, snd = false;
    for (const auto& f : s["frames"]) {
      if (!f["symbol"].is_string()) continue;
      load |= f["symbol"] == "load_msg";
      snd |= f["symbol"] == "do_msgsnd";
    }
    if (!load || !snd) continue;
    for (const auto& t : s["tasks"])
      if (t["tgid"] == tgid) count += t["count"].get<uint64_t>();
    if (s["tasks"].size() == 1 && s["tasks"][0]["tgid"] == tgid) bytes += s["bytes"].get<uint64_t>();
  }
  return {count, bytes};
}

class Pinned : public BpfTest {
 protected:
  void SetUp() override {
    BpfTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    before_ = kleak_ids();
  }
  void TearDown() override {
    if (!bpf_unavailable_reason().empty()) return;
    auto r = run({kKleak, "stop", "--force", "-q"});
    EXPECT_TRUE(r.status == 0 || r.status == 3) << r.err;
    EXPECT_TRUE(nothing_left_within(before_, std::chrono::seconds(5)));
    EXPECT_TRUE(kleak_pins().empty());
  }
  bool nothing_left() const { return nothing_left_within(before_, std::chrono::seconds(5)); }
  KleakIds before_;
  static RunResult start(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {kKleak, "start", "--mount-bpffs", "-q"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv);
  }
};

TEST_F(Pinned, StartThenReportsFromNewProcessesThenStopLeavesNothing) {
  const int n = 25;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  // -p: other processes on this machine may send messages too.
  auto s = start({"--size", "4096", "-p", std::to_string(holder.pid())});
  ASSERT_EQ(s.status, 0) << s.err;
  EXPECT_TRUE(s.err.empty()) << s.err;
  struct stat st {};
  ASSERT_EQ(stat(kDir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  KleakIds now = kleak_ids();
  EXPECT_FALSE(now.subset_of(before_));
  size_t links = 0, followers = 0;
  for (uint32_t id : now.links) links += before_.links.count(id) == 0;
  for (const char* f : {"kleak_free_bulk", "kleak_rcu_sheaf", "kleak_mod_load", "kleak_mod_free"})
    followers += std::filesystem::exists(kDir + "/links/" + f);
  // kmalloc, kfree, kmem_cache_alloc, kmem_cache_free, the two frees'
  // backups, and the bulk-free follower's programs where the kernel allows them.
  EXPECT_EQ(links, 6u + followers);

  ASSERT_TRUE(holder.send());
  for (int i = 0; i < 2; ++i) {  // any number of times
    auto r = run({kKleak, "report", "--format", "json", "-o", "0", "-T", "50"});
    ASSERT_EQ(r.status, 0) << r.err;
    json rep = json::parse(r.out);
    EXPECT_EQ(rep["final"], false);
    EXPECT_EQ(rep["filters"]["min_size_bytes"], 4096);
    EXPECT_EQ(rep["filters"]["pid"], holder.pid());
    EXPECT_GT(rep["elapsed_s"].get<double>(), 0.0);
    auto [count, bytes] = held_messages(rep, holder.pid());
    EXPECT_EQ(count, static_cast<uint64_t>(n)) << r.out;
    EXPECT_EQ(bytes, static_cast<uint64_t>(n) * 4096);
  }
  // Text too, with the stack symbolized by the reporting process.
  auto text = run({kKleak, "report", "-o", "0"});
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("load_msg+0x"), std::string::npos) << text.out;

  holder.send_line("release");
  ASSERT_EQ(holder.read_line(), "released " + std::to_string(n));
  auto stop = run({kKleak, "stop", "--format", "json", "-o", "0", "-T", "50"});
  ASSERT_EQ(stop.status, 0) << stop.err;
  json fin = json::parse(stop.out);
  EXPECT_EQ(fin["final"], true);
  EXPECT_EQ(held_messages(fin, holder.pid()).first, 0u) << "released messages still reported";
  EXPECT_EQ(lines(stop.err), 1) << stop.err;  // "session stopped"
  EXPECT_FALSE(std::filesystem::exists(kDir));
  EXPECT_TRUE(nothing_left());
}

// Each `kleak report` adds a point to the session's growth history
// (/run/kleak/pinned-growth), so reports from separate processes carry a
// rate: a message every 50 ms is 20 x 4096 B/s. `kleak stop` removes it.
TEST_F(Pinned, ReportsFromNewProcessesKeepAGrowthHistory) {
  const std::string history = "/run/kleak/pinned-growth";
  MsgHold leak(10000);
  ASSERT_TRUE(leak.ready());
  auto s = start({"--size", "4096", "-p", std::to_string(leak.pid())});
  ASSERT_EQ(s.status, 0) << s.err;
  leak.send_line("drip 50");
  json last;
  const int reports = 6;
  for (int i = 0; i < reports; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    auto r = run({kKleak, "report", "--format", "json", "-o", "0", "-T", "5"});
    ASSERT_EQ(r.status, 0) << r.err;
    last = json::parse(r.out);
    EXPECT_TRUE(std::filesystem::exists(history)) << "report " << i;
  }
  leak.send_line("stop");
  ASSERT_TRUE(leak.read_line());
  ASSERT_FALSE(last["stacks"].empty()) << last.dump().substr(0, 2000);
  const json& top = last["stacks"][0];
  ASSERT_TRUE(top.contains("growth")) << top.dump();
  EXPECT_EQ(top["growth"]["points"], reports) << top["growth"];
  EXPECT_EQ(top["growth"]["verdict"], "growing") << top["growth"];
  const double true_rate = 20 * 4096.0, rate = top["growth"]["bytes_per_s"].get<double>();
  std::printf("pinned: leak measured %.0f B/s over %d reports, true %.0f B/s\n", rate, reports, true_rate);
  EXPECT_NEAR(rate, true_rate, 0.15 * true_rate) << top["growth"];
  auto stop = run({kKleak, "stop", "-q"});
  ASSERT_EQ(stop.status, 0) << stop.err;
  EXPECT_FALSE(std::filesystem::exists(history));
}

// --reclaim on a pinned session's report: the proof runs from the new
// process, and its tally is in the report.
TEST_F(Pinned, ReportReclaimStatesWhatItFreed) {
  // Cold, so the walk below makes new dentries and inodes.
  ASSERT_EQ(run({"/bin/sh", "-c", "sync; echo 2 > /proc/sys/vm/drop_caches"}).status, 0);
  auto s = start();
  ASSERT_EQ(s.status, 0) << s.err;
  // Dentries and inodes kleak sees made: a cold walk of /usr/share/doc.
  ASSERT_EQ(run({"/bin/sh", "-c", "find /usr/share/doc -name 'c*' > /dev/null"}).status, 0);
  auto r = run({kKleak, "report", "--reclaim", "--format", "json", "-o", "0", "-T", "5"});
  ASSERT_EQ(r.status, 0) << r.err;
  json rep = json::parse(r.out);
  ASSERT_TRUE(rep.contains("reclaim")) << rep.dump().substr(0, 2000);
  EXPECT_EQ(rep["reclaim"]["ran"], true) << rep["reclaim"];
  EXPECT_GT(rep["reclaim"]["cache_owned_count"].get<uint64_t>(), 0u) << rep["reclaim"];
  auto text = run({kKleak, "report", "--reclaim", "-o", "0", "-T", "1"});
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("  reclaim: freed "), std::string::npos) << text.out;
}

TEST_F(Pinned, RefusesASecondStartAndReportsWithoutASession) {
  for (const char* cmd : {"report", "stop"}) {
    auto r = run({kKleak, cmd});
    EXPECT_EQ(r.status, 3) << cmd << ": " << r.err;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("no kleak session is pinned"), std::string::npos) << r.err;
  }
  ASSERT_EQ(start().status, 0);
  auto again = start();
  EXPECT_EQ(again.status, 3);
  EXPECT_EQ(lines(again.err), 1) << again.err;
  EXPECT_NE(again.err.find("already pinned"), std::string::npos) << again.err;
  auto bad = run({kKleak, "report", "--format", "yaml"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_EQ(lines(bad.err), 1) << bad.err;
}

// A session whose metadata names another kleak build is refused, and
// stop --force still removes it.
TEST_F(Pinned, RefusesASessionOfAnotherBuild) {
  ASSERT_EQ(start().status, 0);
  int fd = bpf_obj_get((kDir + "/meta").c_str());
  ASSERT_GE(fd, 0);
  std::vector<char> value(4 + kPinMetaMaxBytes);
  uint32_t zero = 0;
  ASSERT_EQ(bpf_map_lookup_elem(fd, &zero, value.data()), 0);
  uint32_t len;
  std::memcpy(&len, value.data(), 4);
  auto meta = parse_pin_meta(std::string_view(value.data() + 4, len));
  ASSERT_TRUE(meta) << meta.error().message;
  meta->version = "0.0.1 (other)";
  std::string text = pin_meta_to_json(*meta);
  len = static_cast<uint32_t>(text.size());
  std::memcpy(value.data(), &len, 4);
  std::memcpy(value.data() + 4, text.data(), text.size());
  ASSERT_EQ(bpf_map_update_elem(fd, &zero, value.data(), BPF_ANY), 0);
  close(fd);
  for (const char* cmd : {"report", "stop"}) {
    auto r = run({kKleak, cmd});
    EXPECT_EQ(r.status, 4) << cmd << ": " << r.err;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("started by kleak 0.0.1 (other)"), std::string::npos) << r.err;
  }
  EXPECT_TRUE(std::filesystem::exists(kDir));
  auto forced = run({kKleak, "stop", "--force"});
  EXPECT_EQ(forced.status, 0) << forced.err;
  EXPECT_TRUE(forced.out.empty()) << "--force reads nothing, so it reports nothing";
  EXPECT_FALSE(std::filesystem::exists(kDir));
}

// Without bpffs: one line naming the mount command. With --mount-bpffs,
// start mounts it. Both in a private mount namespace, so the host's bpffs
// is untouched (and the namespace's pins die with it).
TEST_F(Pinned, BpffsNotMountedIsOneLineAndMountBpffsMountsIt) {
  auto r = run({"/usr/bin/unshare", "-m", "sh", "-c", "umount /sys/fs/bpf 2>/dev/null; exec " + kKleak + " report"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("mount -t bpf bpf /sys/fs/bpf"), std::string::npos) << r.err;
  auto m = run({"/usr/bin/unshare", "-m", "sh", "-c",
                "umount /sys/fs/bpf 2>/dev/null; " + kKleak + " start -q && " + kKleak + " start --mount-bpffs -q && " +
                    kKleak + " report -q >/dev/null && " + kKleak + " stop -q; echo $?"});
  // The first start refuses (status 1), so the chain stops there...
  EXPECT_EQ(m.out, "1\n") << m.err;
  auto ok = run({"/usr/bin/unshare", "-m", "sh", "-c",
                 "umount /sys/fs/bpf 2>/dev/null; " + kKleak + " start --mount-bpffs -q && " + kKleak +
                     " report -q >/dev/null && " + kKleak + " stop -q && echo done"});
  // ... and with --mount-bpffs the whole cycle runs.
  EXPECT_EQ(ok.out, "done\n") << ok.err;
  EXPECT_TRUE(ok.err.empty()) << ok.err;
}

// SIGKILL at any point of `kleak start` leaves either nothing, a complete
// session, or a half-built directory that the next stop removes.
TEST_F(Pinned, KilledStartLeavesNothingAfterStop) {
  ASSERT_EQ(start().status, 0);  // make sure bpffs is mounted before timing kills
  ASSERT_EQ(run({kKleak, "stop", "-q"}).status, 0);
  int complete = 0, half = 0, runs = 0;
  // Kills k, counts what it got to, and checks that stop clears whatever it left.
  auto kill_then_stop = [&](Child& k, const std::string& when) {
    k.kill(SIGKILL);
    auto status = k.wait();
    ASSERT_TRUE(status) << when;
    complete += *status == 0;
    for (const auto& name : kleak_pins()) half += name.rfind("kleak-new-", 0) == 0;
    auto stop = run({kKleak, "stop", "-q"});
    EXPECT_TRUE(stop.status == 0 || stop.status == 3) << when << ": " << stop.err;
    EXPECT_TRUE(kleak_pins().empty()) << when;
    EXPECT_TRUE(nothing_left()) << when;
  };
  for (int delay_ms = 0; delay_ms <= 200; delay_ms += 10, ++runs) {
    Child k({kKleak, "start", "-q"});
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ASSERT_NO_FATAL_FAILURE(kill_then_stop(k, std::to_string(delay_ms) + " ms"));
  }
  // And killed the moment its half-built directory shows up.
  for (int i = 0; i < 5; ++i, ++runs) {
    Child k({kKleak, "start", "-q"});
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    bool seen = false;  // the half-built directory, or (too late) the session
    while (!seen && std::chrono::steady_clock::now() < deadline) {
      for (const auto& name : kleak_pins()) seen |= name.rfind("kleak-new-", 0) == 0 || name == "kleak";
      if (!seen) std::this_thread::yield();
    }
    ASSERT_NO_FATAL_FAILURE(kill_then_stop(k, "at the half-built directory, run " + std::to_string(i)));
  }
  std::cout << "[ info     ] of " << runs << " starts killed, " << complete << " had finished, " << half
            << " left a half-built directory\n";
}

}  // namespace
}  // namespace kleak::test
