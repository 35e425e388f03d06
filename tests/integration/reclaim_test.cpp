// The stack store's sweeper on a real BPF hash map, and through kleak: a
// stack a live allocation references is never reclaimed; dead ones go after
// two sweeps.
#include <bpf/bpf.h>
#include <unistd.h>

#include <csignal>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "child.h"
#include "env.h"
#include "msghold.h"
#include "probe/stack_reclaim.h"

namespace kleak::test {
namespace {

// Loads kleak's programs: BPF required (env.h).
class StackReclaim : public BpfTest {};

using nlohmann::json;

TEST_F(StackReclaim, DeletesOnlyStacksUnreferencedAtTwoSweeps) {
  int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "kleak_t_stacks", 8, 8, 16, nullptr);
  ASSERT_GE(fd, 0) << "bpf_map_create: " << errno;
  for (uint64_t k = 1; k <= 5; ++k) ASSERT_EQ(bpf_map_update_elem(fd, &k, &k, BPF_ANY), 0);
  auto present = [fd](uint64_t k) {
    uint64_t v;
    return bpf_map_lookup_elem(fd, &k, &v) == 0;
  };
  StackReclaimer r;
  auto s1 = r.sweep(fd, -1, {1, 2});
  ASSERT_TRUE(s1.ok());
  EXPECT_EQ(s1->stored, 5u);
  EXPECT_EQ(s1->reclaimed, 0u);  // 3, 4, 5 are only candidates yet
  // 6 is new since the last sweep: unreferenced, but not reclaimed at once.
  uint64_t six = 6;
  ASSERT_EQ(bpf_map_update_elem(fd, &six, &six, BPF_ANY), 0);
  auto s2 = r.sweep(fd, -1, {1, 4});
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s2->reclaimed, 2u);  // 3 and 5; 4 is referenced again
  EXPECT_TRUE(present(1) && present(2) && present(4) && present(6));
  EXPECT_FALSE(present(3) || present(5));
  auto s3 = r.sweep(fd, -1, {1});
  ASSERT_TRUE(s3.ok());
  EXPECT_EQ(s3->reclaimed, 2u);  // 2 and 6 were unreferenced at sweeps 2 and 3; 4 at 3 only
  EXPECT_TRUE(present(1) && present(4));
  EXPECT_FALSE(present(2) || present(6));
  EXPECT_EQ(r.reclaimed_total(), 4u);
  close(fd);
}

// A small stack store on a busy machine: dead stacks are reclaimed while the
// held messages' stack, referenced all along, still resolves at the end.
TEST_F(StackReclaim, KleakKeepsTheStoreFromFillingWithDeadStacks) {
  const int n = 50;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  Child work({KLEAK_CHURN_BIN, "proc", "40000"});
  ASSERT_TRUE(work.read_line());
  Child kleak({KLEAK_BIN, "1", "-o", "0", "--format", "json", "-q", "-T", "100", "--sort", "bytes",
               "--stack-storage-size", "512"});
  ASSERT_TRUE(kleak.read_line(std::chrono::seconds(30)));
  ASSERT_TRUE(holder.send());
  work.send_line("go");
  ASSERT_TRUE(work.read_line(std::chrono::seconds(120)));  // "done OPS"
  std::this_thread::sleep_for(std::chrono::seconds(4));  // more sweeps
  auto last = kleak.last_line_after(SIGINT);
  ASSERT_TRUE(last);
  json fin = json::parse(*last);
  EXPECT_GT(fin["live"]["stacks_reclaimed"].get<uint64_t>(), 0u) << fin["live"].dump();
  EXPECT_LE(fin["live"]["stacks_stored"].get<uint64_t>(), 512u);
  uint64_t held = 0;
  for (const auto& s : fin["stacks"]) {
    if (!s["stack_error"].is_null()) continue;
    bool msg = false;
    for (const auto& f : s["frames"]) msg = msg || f["symbol"] == "load_msg";
    if (!msg) continue;
    for (const auto& t : s["tasks"])
      if (t["tgid"] == holder.pid()) held += t["count"].get<uint64_t>();
  }
  EXPECT_EQ(held, static_cast<uint64_t>(n)) << "the held messages' stack was reclaimed or lost";
}

}  // namespace
}  // namespace kleak::test
