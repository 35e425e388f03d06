// The formatters on a report built by hand: exact output where the input is
// known, and each format read back the way its consumer reads it.
#include "report/output.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>

#include <fmt/format.h>

#include "report/folded.h"
#include "report/pprof.h"
#include "report/prometheus.h"
#include "util/http_server.h"
#include "options/options.h"
#include "profile.pb.h"
#include "report/report.h"
#include "util/sys.h"

namespace kleak {
namespace {

namespace fs = std::filesystem;

Frame frame(uint64_t addr, std::string symbol, uint64_t offset = 0x10, std::string module = "") {
  return Frame{addr, std::move(symbol), offset, std::move(module)};
}

// Three stacks: the held messages, the same functions reached at other
// offsets (one symbolic stack, so one series), and one without a stack.
struct Fixture {
  TraceOptions opts;
  Report r;
  Fixture() {
    opts.min_age_ms = 5000;
    r.opts = &opts;
    r.ctx.seq = 3;
    r.ctx.kernel = "6.18.0-test";
    r.ctx.live_capacity = 1000;
    r.time_unix_ns = 1700000000000000000ull;
    r.elapsed_s = 12.5;
    r.counters.v[KLEAK_CNT_ALLOC_SEEN] = 50;
    r.counters.v[KLEAK_CNT_ALLOC_RECORDED] = 40;
    r.counters.v[KLEAK_CNT_LIVE_FULL] = 7;
    r.live_count = 9;
    r.total_bytes = 3 * 4096 + 4096 + 64;
    r.total_count = 5;
    r.stacks_total = 3;
    StackReport a;
    a.rank = 1;
    a.frames = {frame(0xffffffff81001010, "__kmalloc_noprof"), frame(0xffffffff81002010, "load_msg"),
                frame(0xffffffff81003010, "do_msgsnd"), frame(0xffffffff81004010, "entry_SYSCALL_64")};
    a.call_site = a.frames[1];
    a.bytes = 3 * 4096;
    a.count = 3;
    a.has_growth = true;
    a.growth.points = 3;
    a.growth.bytes.slope_per_s = 409.5;
    a.growth.count.slope_per_s = 0.25;
    StackReport b = a;
    b.rank = 2;
    for (Frame& f : b.frames) f.offset += 4, f.addr += 4;
    b.call_site = b.frames[1];
    b.bytes = 4096;
    b.count = 1;
    b.has_growth = false;
    StackReport c;
    c.rank = 3;
    c.stack_error = "ENOMEM";
    c.call_site = frame(0xffffffffc0001000, "leaky_\"init\"", 0x8, "leaky");
    c.bytes = 64;
    c.count = 1;
    for (StackReport* s : {&a, &b, &c}) {
      s->stack_key = stack_key(s->stack_error.empty() ? s->frames : std::vector<Frame>{s->call_site});
      s->stack_hash = stack_hash(s->stack_key);
      r.stacks.push_back(*s);
    }
  }
};

TEST(StackHash, IsFnv1a64OfTheSymbolicKey) {
  // FNV-1a's published test vectors.
  EXPECT_EQ(stack_hash_hex(stack_hash("")), "cbf29ce484222325");
  EXPECT_EQ(stack_hash_hex(stack_hash("a")), "af63dc4c8601ec8c");
  EXPECT_EQ(stack_hash_hex(stack_hash("foobar")), "85944171f73967e8");
  Fixture f;
  EXPECT_EQ(f.r.stacks[0].stack_hash, f.r.stacks[1].stack_hash) << "offsets and addresses do not count";
  nlohmann::json j = to_json(f.r);
  EXPECT_EQ(j["stacks"][0]["stack_hash"],
            stack_hash_hex(stack_hash("__kmalloc_noprof;load_msg;do_msgsnd;entry_SYSCALL_64")));
}

TEST(Format, JsonAndJsonlAreOneCompactDocumentPerLine) {
  Fixture f;
  for (OutputFormat fmt : {OutputFormat::json, OutputFormat::jsonl}) {
    auto out = render_report(f.r, FormatOptions{fmt, false});
    ASSERT_TRUE(out);
    EXPECT_EQ(std::count(out->begin(), out->end(), '\n'), 1);
    EXPECT_EQ(nlohmann::json::parse(*out), to_json(f.r));
  }
}

TEST(Format, FoldedIsRootFirstWithBytesOrCounts) {
  Fixture f;
  EXPECT_EQ(render_folded(f.r, FoldedValue::bytes),
            "entry_SYSCALL_64;do_msgsnd;load_msg;__kmalloc_noprof 12288\n"
            "entry_SYSCALL_64;do_msgsnd;load_msg;__kmalloc_noprof 4096\n"
            "[no stack: ENOMEM];leaky_\"init\" [leaky] 64\n");
  EXPECT_EQ(render_folded(f.r, FoldedValue::count),
            "entry_SYSCALL_64;do_msgsnd;load_msg;__kmalloc_noprof 3\n"
            "entry_SYSCALL_64;do_msgsnd;load_msg;__kmalloc_noprof 1\n"
            "[no stack: ENOMEM];leaky_\"init\" [leaky] 1\n");
  auto via = render_report(f.r, FormatOptions{OutputFormat::folded, true});
  ASSERT_TRUE(via);
  EXPECT_EQ(*via, render_folded(f.r, FoldedValue::count));
}

TEST(Format, FoldedSumsToTheReportWhenEveryStackIsShown) {
  Fixture f;
  uint64_t sum = 0;
  std::istringstream in(render_folded(f.r, FoldedValue::bytes));
  std::string line;
  while (std::getline(in, line)) sum += std::stoull(line.substr(line.rfind(' ') + 1));
  EXPECT_EQ(sum, f.r.total_bytes);
}

TEST(Format, FoldedFramesNeverBreakTheLineFormat) {
  Fixture f;
  f.r.stacks.resize(1);
  f.r.stacks[0].frames[1].symbol = "odd;name\nx";
  f.r.stacks[0].frames[2].symbol = "";
  f.r.stacks[0].frames[2].addr = 0;
  EXPECT_EQ(render_folded(f.r, FoldedValue::bytes), "entry_SYSCALL_64;?;odd_name_x;__kmalloc_noprof 12288\n");
}

TEST(Format, PrometheusMergesOneSymbolicStackAndEscapesLabels) {
  Fixture f;
  std::string text = render_prometheus(f.r);
  const std::string a = stack_hash_hex(f.r.stacks[0].stack_hash), c = stack_hash_hex(f.r.stacks[2].stack_hash);
  EXPECT_NE(text.find("kleak_stack_outstanding_bytes{stack=\"" + a + "\",function=\"load_msg\"} 16384\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("kleak_stack_outstanding_allocations{stack=\"" + a + "\",function=\"load_msg\"} 4\n"),
            std::string::npos);
  EXPECT_NE(text.find("kleak_stack_outstanding_bytes{stack=\"" + c + "\",function=\"leaky_\\\"init\\\"\"} 64\n"),
            std::string::npos)
      << text;
  // Growth only where two reports fit a line.
  EXPECT_NE(text.find("kleak_stack_growth_bytes_per_second{stack=\"" + a + "\",function=\"load_msg\"} 409.5\n"),
            std::string::npos);
  EXPECT_EQ(text.find("kleak_stack_growth_bytes_per_second{stack=\"" + c), std::string::npos);
  EXPECT_NE(text.find("kleak_lost_total{reason=\"live_map_full\"} 7\n"), std::string::npos);
  EXPECT_NE(text.find("kleak_report_complete 0\n"), std::string::npos);
  EXPECT_NE(text.find("kleak_outstanding_bytes 16448\n"), std::string::npos);
  EXPECT_NE(text.find("kleak_min_age_seconds 5\n"), std::string::npos);
  EXPECT_NE(text.find("kleak_info{version=\""), std::string::npos);
  // Every line a comment or "name{labels} value": no timestamps.
  std::istringstream in(text);
  std::string line;
  const std::regex sample("[a-z_]+(\\{([a-z_]+=\"([^\"\\\\]|\\\\.)*\",?)+\\})? -?[0-9.e+]+");
  while (std::getline(in, line))
    if (line[0] != '#') {
      EXPECT_TRUE(std::regex_match(line, sample)) << line;
    }
}

TEST(Format, PrometheusLabelValueEscapes) { EXPECT_EQ(prometheus_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd"); }

std::string gunzip(const std::string& in) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  std::string out(1 << 20, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

TEST(Format, PprofIsAGzippedProfileWithKernelFunctions) {
  Fixture f;
  auto gz = render_pprof(f.r);
  ASSERT_TRUE(gz);
  ASSERT_GE(gz->size(), 2u);
  EXPECT_EQ(static_cast<uint8_t>((*gz)[0]), 0x1f);  // gzip magic
  EXPECT_EQ(static_cast<uint8_t>((*gz)[1]), 0x8b);
  perftools::profiles::Profile p;
  ASSERT_TRUE(p.ParseFromString(gunzip(*gz)));
  auto str = [&](int64_t i) { return p.string_table(static_cast<int>(i)); };
  EXPECT_EQ(str(0), "");
  ASSERT_EQ(p.sample_type_size(), 2);
  EXPECT_EQ(str(p.sample_type(0).type()), "inuse_objects");
  EXPECT_EQ(str(p.sample_type(0).unit()), "count");
  EXPECT_EQ(str(p.sample_type(1).type()), "inuse_space");
  EXPECT_EQ(str(p.sample_type(1).unit()), "bytes");
  EXPECT_EQ(str(p.default_sample_type()), "inuse_space");
  ASSERT_EQ(p.mapping_size(), 1);
  EXPECT_EQ(str(p.mapping(0).filename()), "[kernel.kallsyms]");
  EXPECT_TRUE(p.mapping(0).has_functions());
  EXPECT_EQ(p.time_nanos(), 1700000000000000000ll);
  EXPECT_EQ(p.duration_nanos(), 12500000000ll);
  // One function per name: the second stack reuses the first one's.
  EXPECT_EQ(p.function_size(), 5);
  ASSERT_EQ(p.sample_size(), 3);
  auto names = [&](const perftools::profiles::Sample& s) {
    std::vector<std::string> out;
    for (uint64_t id : s.location_id()) {
      const auto& loc = p.location(static_cast<int>(id - 1));
      EXPECT_EQ(loc.id(), id);
      EXPECT_EQ(loc.mapping_id(), 1u);
      const auto& fn = p.function(static_cast<int>(loc.line(0).function_id() - 1));
      out.push_back(str(fn.name()));
    }
    return out;
  };
  EXPECT_EQ(names(p.sample(0)),
            (std::vector<std::string>{"__kmalloc_noprof", "load_msg", "do_msgsnd", "entry_SYSCALL_64"}));
  EXPECT_EQ(p.sample(0).value(0), 3);
  EXPECT_EQ(p.sample(0).value(1), 12288);
  EXPECT_EQ(p.sample(1).location_id(0), p.sample(0).location_id(0));
  EXPECT_EQ(names(p.sample(2)), (std::vector<std::string>{"leaky_\"init\" [leaky]"}));
  EXPECT_EQ(str(p.sample(0).label(0).key()), "stack_hash");
  EXPECT_EQ(str(p.sample(0).label(0).str()), stack_hash_hex(f.r.stacks[0].stack_hash));
}

// A frame with a line and two inlined functions, in every format.
TEST(Format, SourceLinesAndInlinedFunctionsInEveryFormat) {
  Fixture f;
  Frame& top = f.r.stacks[0].frames[1];  // load_msg
  top.source = "ipc/msgutil.c:53";
  top.inlined = {{"kmalloc_noprof", "include/linux/slab.h:905"}, {"alloc_msg", "ipc/msgutil.c:49"}};
  f.r.stacks[0].frames[2].source = "/abs/path/ipc/msg.c:861";  // absolute: its base name in text
  const std::string text = render_text(f.r);
  EXPECT_NE(text.find("    kmalloc_noprof include/linux/slab.h:905 (inlined)\n"
                      "    alloc_msg ipc/msgutil.c:49 (inlined)\n"
                      "    load_msg+0x10 ipc/msgutil.c:53\n"
                      "    do_msgsnd+0x10 msg.c:861\n"),
            std::string::npos)
      << text;
  nlohmann::json j = to_json(f.r);
  const nlohmann::json& fr = j["stacks"][0]["frames"][1];
  EXPECT_EQ(fr["source"], "ipc/msgutil.c:53");
  ASSERT_EQ(fr["inlined"].size(), 2u);
  EXPECT_EQ(fr["inlined"][0]["symbol"], "kmalloc_noprof");
  EXPECT_EQ(fr["inlined"][1]["source"], "ipc/msgutil.c:49");
  EXPECT_FALSE(j["stacks"][0]["frames"][0].contains("inlined"));
  const std::string folded = render_folded(f.r, FoldedValue::bytes);
  EXPECT_EQ(folded.substr(0, folded.find('\n')),
            "entry_SYSCALL_64;do_msgsnd msg.c:861;load_msg ipc/msgutil.c:53;alloc_msg_[i] ipc/msgutil.c:49;"
            "kmalloc_noprof_[i] include/linux/slab.h:905;__kmalloc_noprof 12288");
  auto gz = render_pprof(f.r);
  ASSERT_TRUE(gz);
  perftools::profiles::Profile p;
  ASSERT_TRUE(p.ParseFromString(gunzip(*gz)));
  auto str = [&](int64_t i) { return p.string_table(static_cast<int>(i)); };
  const auto& loc = p.location(static_cast<int>(p.sample(0).location_id(1) - 1));
  ASSERT_EQ(loc.line_size(), 3);  // innermost first, the function they are in last
  std::vector<std::string> got;
  for (const auto& l : loc.line()) {
    const auto& fn = p.function(static_cast<int>(l.function_id() - 1));
    got.push_back(fmt::format("{} {}:{}", str(fn.name()), str(fn.filename()), l.line()));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"kmalloc_noprof include/linux/slab.h:905", "alloc_msg ipc/msgutil.c:49",
                                           "load_msg ipc/msgutil.c:53"}));
  // The second stack's load_msg has no lines: a location of its own.
  EXPECT_NE(p.sample(1).location_id(1), p.sample(0).location_id(1));
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = fs::temp_directory_path() / "kleak-unit-XXXXXX";
    path = mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(Output, ReplacingSwapsWholeFilesWithTheModeAsked) {
  TempDir dir;
  fs::path file = dir.path / "kleak.prom";
  auto out = open_output(file.string(), OutputFormat::prometheus);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_FALSE(fs::exists(file)) << "nothing before the first report";
  ASSERT_TRUE(out->write("first\n"));
  ASSERT_TRUE(out->write("second\n"));
  EXPECT_EQ(slurp(file), "second\n");
  struct stat st {};
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()), 1) << "no temp file left";
  // A symlink planted later is replaced, not followed.
  fs::path target = dir.path / "target";
  std::ofstream(target) << "keep\n";
  fs::remove(file);
  fs::create_symlink(target, file);
  ASSERT_TRUE(out->write("third\n"));
  EXPECT_EQ(slurp(target), "keep\n");
  EXPECT_FALSE(fs::is_symlink(file));
  EXPECT_EQ(slurp(file), "third\n");
}

TEST(Output, ReplacingRefusesASymlinkAndAMissingDirectoryAtOnce) {
  TempDir dir;
  fs::path link = dir.path / "link.prom";
  fs::create_symlink(dir.path / "elsewhere", link);
  auto refused = open_output(link.string(), OutputFormat::prometheus);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("symlink"), std::string::npos) << refused.error().message;
  auto missing = open_output((dir.path / "no/such/dir.pb.gz").string(), OutputFormat::pprof);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("no/such/dir.pb.gz"), std::string::npos);
  // Stream formats append to a 0600 file created at once.
  fs::path json = dir.path / "r.jsonl";
  ASSERT_TRUE(open_output(json.string(), OutputFormat::jsonl));
  EXPECT_TRUE(fs::exists(json));
}

TEST(Http, ParsesRequestLines) {
  auto r = parse_http_request("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->method, "GET");
  EXPECT_EQ(r->target, "/metrics?x=1");
  EXPECT_FALSE(parse_http_request("GET /metrics\r\n\r\n"));
  EXPECT_FALSE(parse_http_request("GET  HTTP/1.1\r\n\r\n"));
  EXPECT_FALSE(parse_http_request("GET metrics HTTP/1.1\r\n\r\n"));
  EXPECT_FALSE(parse_http_request(""));
}

TEST(Http, ResponsesCarryTheirLengthAndCloseHeadHasNoBody) {
  HttpResponse r{200, "text/plain", "abc"};
  EXPECT_EQ(http_response_bytes(r, false),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
  EXPECT_EQ(http_response_bytes(r, true),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\n");
}

TEST(ListenAddress, LoopbackIsTheRule) {
  auto v4 = parse_listen_address("127.0.0.1:9745");
  ASSERT_TRUE(v4);
  EXPECT_TRUE(v4->loopback);
  EXPECT_EQ(v4->port, 9745);
  EXPECT_TRUE(parse_listen_address("127.8.9.10:1")->loopback);
  EXPECT_TRUE(parse_listen_address("localhost:80")->loopback);
  auto v6 = parse_listen_address("[::1]:9745");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->ipv6);
  EXPECT_TRUE(v6->loopback);
  EXPECT_FALSE(parse_listen_address("0.0.0.0:9745")->loopback);
  EXPECT_FALSE(parse_listen_address("[::]:9745")->loopback);
  EXPECT_FALSE(parse_listen_address("10.0.0.1:9745")->loopback);
  for (const char* bad :
       {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:x", "[::1]9745", "host:80", "::1:80"})
    EXPECT_FALSE(parse_listen_address(bad)) << bad;
}

}  // namespace
}  // namespace kleak

namespace kleak {
namespace {

ParsedCommandLine parse_args(std::vector<std::string> args, CommandKind kind, std::string* err_text = nullptr) {
  args.insert(args.begin(), "kleak");
  std::ostringstream out, err;
  ParsedCommandLine cl = parse_command_line(args, out, err, kind);
  if (err_text) *err_text = err.str();
  return cl;
}

TEST(FormatOptions, FlameGraphsAndProfilesShowEveryStackUnlessTopIsGiven) {
  auto folded = parse_args({"--format", "folded", "-d", "1"}, CommandKind::trace);
  ASSERT_TRUE(folded.trace);
  EXPECT_EQ(folded.trace->top, UINT32_MAX);
  auto pprof = parse_args({"--format", "pprof", "-T", "5", "-d", "1"}, CommandKind::trace);
  ASSERT_TRUE(pprof.trace);
  EXPECT_EQ(pprof.trace->top, 5u);
  auto prom = parse_args({"--format", "prometheus", "-d", "1"}, CommandKind::trace);
  ASSERT_TRUE(prom.trace);
  EXPECT_EQ(prom.trace->top, 10u) << "bounded label sets";
  std::string err;
  EXPECT_EQ(parse_args({"--folded-count"}, CommandKind::trace, &err).exit_code, kExitUsage);
  EXPECT_NE(err.find("--folded-count needs --format folded"), std::string::npos) << err;
  EXPECT_EQ(parse_args({"--format", "xml"}, CommandKind::trace).exit_code, kExitUsage);
  EXPECT_EQ(parse_args({"--ci", "-d", "1", "--format", "pprof"}, CommandKind::trace).exit_code, kExitUsage);
  EXPECT_TRUE(parse_args({"--ci", "-d", "1", "--format", "jsonl"}, CommandKind::trace).trace);
}

TEST(FormatOptions, ServeListensOnLoopbackUnlessToldOtherwise) {
  auto def = parse_args({}, CommandKind::serve);
  ASSERT_TRUE(def.trace);
  EXPECT_TRUE(def.trace->serve.enabled);
  EXPECT_EQ(def.trace->serve.listen, "127.0.0.1:9745");
  EXPECT_EQ(def.trace->format, OutputFormat::prometheus);
  EXPECT_EQ(def.trace->interval_s, 0);
  std::string err;
  EXPECT_EQ(parse_args({"--listen", "0.0.0.0:9745"}, CommandKind::serve, &err).exit_code, kExitUsage);
  EXPECT_NE(err.find("kleak serve: --listen 0.0.0.0:9745 is not a loopback address"), std::string::npos) << err;
  EXPECT_TRUE(parse_args({"--listen", "0.0.0.0:9745", "--listen-any"}, CommandKind::serve).trace);
  EXPECT_EQ(parse_args({"--peek", "64"}, CommandKind::serve).exit_code, kExitUsage);
  EXPECT_EQ(parse_args({"5"}, CommandKind::serve).exit_code, kExitUsage) << "no interval";
  EXPECT_EQ(parse_args({"--format", "json"}, CommandKind::serve).exit_code, kExitUsage);
}

}  // namespace
}  // namespace kleak
