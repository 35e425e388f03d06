#include "util/spawn.h"

#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace kleak {
namespace {

std::string comm_of(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

// Between fork and exec the held child is already named after the command
// (the kernel's exec allocations are made under that name, not kleak's).
TEST(HeldCommand, IsNamedAfterTheCommandBeforeItExecs) {
  HeldCommand held(HeldCommand::Trace::none);
  ASSERT_TRUE(held.fork_held({"/bin/true"}));
  std::string comm;
  for (int i = 0; i < 200 && (comm = comm_of(held.pid())) != "true"; ++i) usleep(5000);
  EXPECT_EQ(comm, "true");
  ASSERT_TRUE(held.start());
  held.kill_and_reap();
}

TEST(HeldCommand, BareNameKeepsItsName) {
  HeldCommand held(HeldCommand::Trace::none);
  ASSERT_TRUE(held.fork_held({"sleep", "5"}));
  std::string comm;
  for (int i = 0; i < 200 && (comm = comm_of(held.pid())) != "sleep"; ++i) usleep(5000);
  EXPECT_EQ(comm, "sleep");
  held.kill_and_reap();
}

}  // namespace
}  // namespace kleak
