#include "msghold.h"

namespace kleak::test {

MsgHold::MsgHold(int n) : Child({KLEAK_MSGHOLD_BIN, std::to_string(n)}), n_(n) {}

::testing::AssertionResult MsgHold::ready() { return says("ready " + std::to_string(pid())); }

::testing::AssertionResult MsgHold::send() {
  send_line("send");
  return says("held " + std::to_string(n_));
}

::testing::AssertionResult MsgHold::says(const std::string& want) {
  auto line = read_line();
  if (!line) return ::testing::AssertionFailure() << "kleak-msghold said nothing, waiting for '" << want << "'";
  if (*line != want)
    return ::testing::AssertionFailure() << "kleak-msghold said '" << *line << "', not '" << want << "'";
  return ::testing::AssertionSuccess();
}

}  // namespace kleak::test
