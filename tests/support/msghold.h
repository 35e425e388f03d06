// kleak-msghold (tests/progs/msghold.c) driven from a test: it holds N System
// V messages, so the kernel keeps N known kmalloc buffers (load_msg ->
// alloc_msg under do_msgsnd, 4096 bytes each) until it exits.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "child.h"

namespace kleak::test {

class MsgHold : public Child {
 public:
  // Starts it for n messages; it sends none until send().
  explicit MsgHold(int n);

  // It said "ready PID".
  ::testing::AssertionResult ready();
  // Has it send and hold its n messages: it said "held N".
  ::testing::AssertionResult send();

 private:
  ::testing::AssertionResult says(const std::string& want);
  int n_;
};

}  // namespace kleak::test
