#include "loader_fixture.h"

#include <unistd.h>

#include "env.h"

namespace kleak::test {

const Ksyms& kernel_symbols() {
  static Ksyms k = [] {
    auto r = Ksyms::load();
    return r ? std::move(*r) : Ksyms{};
  }();
  return k;
}

void LoaderFixture::SetUp() {
  BpfTest::SetUp();
  if (IsSkipped() || HasFatalFailure()) return;
  install_libbpf_logger();
  ASSERT_GT(kernel_symbols().size(), 1000u) << "/proc/kallsyms unreadable";
}

std::unique_ptr<Loader> LoaderFixture::attach(LoaderConfig cfg) {
  cfg.self_tgid = static_cast<uint32_t>(getpid());
  auto l = Loader::create(cfg);
  EXPECT_TRUE(l.ok()) << (l.ok() ? "" : l.error().message);
  return l.ok() ? std::move(*l) : nullptr;
}

Snapshot LoaderFixture::snapshot(Loader& l) {
  auto s = take_snapshot(l.fds());
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return s.ok() ? std::move(*s) : Snapshot{};
}

void LoaderFixture::expect_line(Child& c, const std::string& want) {
  auto line = c.read_line();
  ASSERT_TRUE(line) << "child said nothing, waiting for '" << want << "'";
  ASSERT_EQ(*line, want);
}

}  // namespace kleak::test
