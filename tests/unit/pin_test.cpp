// The pinned session's metadata (parse, round trip, compatibility) and the
// command lines of kleak start/report/stop.
#include <sstream>

#include <gtest/gtest.h>

#include "model/pin_meta.h"
#include "options/pin_options.h"

namespace kleak {
namespace {

PinMeta sample() {
  PinMeta m;
  m.version = "0.1.0 (abc1234)";
  m.abi = "0123456789abcdef";
  m.boot_id = "5f0c1f6e-0000-4000-8000-000000000001";
  m.kernel = "6.18.44";
  m.start_mono_ns = 123456789012345;
  m.start_unix_ns = 1764100000000000000;
  m.start_pid = 4242;
  m.args = {"--size", "4096"};
  m.min_size_bytes = m.max_size_bytes = 4096;
  m.pid = 0;
  m.cache = "msg_msg-4k";
  m.max_allocs = 262144;
  m.stack_storage_size = 16384;
  m.attached = {"kmem/kmalloc", "kmem/kfree"};
  m.missing = {"kmem/kmem_cache_alloc"};
  m.meminfo = {{"Slab", 1 << 20}, {"SUnreclaim", 1 << 19}};
  return m;
}

TEST(PinMeta, RoundTrips) {
  PinMeta m = sample();
  auto back = parse_pin_meta(pin_meta_to_json(m));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->version, m.version);
  EXPECT_EQ(back->abi, m.abi);
  EXPECT_EQ(back->boot_id, m.boot_id);
  EXPECT_EQ(back->start_mono_ns, m.start_mono_ns);
  EXPECT_EQ(back->start_unix_ns, m.start_unix_ns);
  EXPECT_EQ(back->args, m.args);
  EXPECT_EQ(back->min_size_bytes, 4096u);
  EXPECT_EQ(back->max_size_bytes, 4096u);
  EXPECT_EQ(back->cache, "msg_msg-4k");
  EXPECT_EQ(back->attached, m.attached);
  EXPECT_EQ(back->missing, m.missing);
  EXPECT_EQ(back->meminfo, m.meminfo);
  PinMeta unbounded = sample();
  unbounded.min_size_bytes = 0;
  unbounded.max_size_bytes = ~0ull;  // the default: larger than a double holds exactly
  auto u = parse_pin_meta(pin_meta_to_json(unbounded));
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->max_size_bytes, ~0ull);
}

TEST(PinMeta, RejectsMalformedText) {
  const std::string good = pin_meta_to_json(sample());
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    auto at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return t.replace(at, from.size(), to);
  };
  struct Case {
    std::string text;
    std::string why;
  } cases[] = {
      {"", "not a JSON object"},
      {"[1,2]", "not a JSON object"},
      {"{\"schema\":\"kleak/pin/v1\"", "not a JSON object"},
      {with("kleak/pin/v1", "kleak/pin/v2"), "schema kleak/pin/v2"},
      {with("\"abi\":\"0123456789abcdef\"", "\"abi\":7"), "abi is not a string"},
      {with("\"start_pid\":4242", "\"start_pid\":-1"), "start_pid is not an unsigned integer"},
      {with("\"start_pid\":4242", "\"start_pid\":4294967296"), "start_pid is not an unsigned integer"},
      {with("\"start_pid\":4242", "\"start_pid\":1.5"), "start_pid is not an unsigned integer"},
      {with("\"start_pid\":4242,", ""), "no field start_pid"},
      {with("\"args\":[\"--size\",\"4096\"]", "\"args\":[1]"), "args holds a non-string"},
      {with("\"attached\":[\"kmem/kmalloc\",\"kmem/kfree\"]", "\"attached\":\"kmem\""), "attached is not a list"},
      {with("\"Slab\":1048576", "\"Slab\":\"big\""), "meminfo holds a non-count"},
      {with("\"min_size_bytes\":4096", "\"min_size_bytes\":8192"), "min_size_bytes > max_size_bytes"},
      {with("\"max_allocs\":262144", "\"max_allocs\":0"), "a map size is 0"},
      {std::string(kPinMetaMaxBytes + 1, ' '), "larger than 16 KiB"},
  };
  for (const auto& c : cases) {
    auto r = parse_pin_meta(c.text);
    ASSERT_FALSE(r) << c.text;
    EXPECT_NE(r.error().message.find(c.why), std::string::npos) << r.error().message << " / " << c.why;
  }
}

TEST(PinMeta, CompatibilityNamesWhatDiffers) {
  PinMeta m = sample();
  EXPECT_TRUE(pin_incompatibility(m, m.version, m.abi, m.boot_id));
  EXPECT_NE(pin_incompatibility(m, m.version, m.abi, "other-boot").error().message.find("another boot"), std::string::npos);
  EXPECT_NE(pin_incompatibility(m, "0.2.0 (fff)", m.abi, m.boot_id).error().message.find("started by kleak 0.1.0 (abc1234)"),
            std::string::npos);
  EXPECT_NE(pin_incompatibility(m, m.version, "ffff", m.boot_id).error().message.find("another layout"), std::string::npos);
}

ParsedPinCommandLine parse(PinCommand c, std::vector<std::string> words, std::string* err_text = nullptr) {
  words.insert(words.begin(), "kleak");
  std::ostringstream out, err;
  auto r = parse_pin_command_line(c, words, out, err);
  if (err_text) *err_text = err.str();
  return r;
}

TEST(PinOptions, StartTakesTraceFiltersAndLimits) {
  auto r = parse(PinCommand::start, {"--size", "4096", "-p", "12", "--max-allocs", "1000", "--mount-bpffs"});
  ASSERT_TRUE(r.pin);
  EXPECT_EQ(r.pin->trace.min_size_bytes, 4096u);
  EXPECT_EQ(r.pin->trace.max_size_bytes, 4096u);
  EXPECT_EQ(r.pin->trace.pid, 12u);
  EXPECT_EQ(r.pin->trace.max_allocs, 1000u);
  EXPECT_TRUE(r.pin->mount_bpffs);
  EXPECT_EQ(r.pin->args, (std::vector<std::string>{"--size", "4096", "-p", "12", "--max-allocs", "1000",
                                                   "--mount-bpffs"}));
  std::string err;
  // Report options belong to report: one line, status 2.
  auto bad = parse(PinCommand::start, {"--format", "json"}, &err);
  EXPECT_FALSE(bad.pin);
  EXPECT_EQ(bad.exit_code, kExitUsage);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(err.rfind("kleak start: ", 0), 0u) << err;
  EXPECT_FALSE(parse(PinCommand::start, {"--size", "4096", "--cache", "dentry"}).pin);
}

TEST(PinOptions, ReportAndStopTakeReportOptions) {
  auto r = parse(PinCommand::report, {"--format", "json", "-T", "3", "--min-age", "100", "-a"});
  ASSERT_TRUE(r.pin);
  EXPECT_EQ(r.pin->trace.format, OutputFormat::json);
  EXPECT_EQ(r.pin->trace.top, 3u);
  EXPECT_EQ(r.pin->trace.min_age_ms, 100u);
  EXPECT_TRUE(r.pin->trace.show_allocs);
  EXPECT_EQ(r.pin->trace.sort, SortKey::bytes) << "one report has no growth history";
  EXPECT_FALSE(parse(PinCommand::report, {"--size", "4096"}).pin) << "filters are fixed at start";
  EXPECT_FALSE(parse(PinCommand::report, {"--mount-bpffs"}).pin);
  EXPECT_TRUE(parse(PinCommand::stop, {}).pin->report);
  EXPECT_FALSE(parse(PinCommand::stop, {"--no-report"}).pin->report);
  EXPECT_FALSE(parse(PinCommand::stop, {"-q"}).pin->report);
  EXPECT_FALSE(parse(PinCommand::stop, {"--force"}).pin->report);
  EXPECT_EQ(parse(PinCommand::stop, {"--help"}).exit_code, kExitOk);
}

}  // namespace
}  // namespace kleak
