// Every --format on a real trace of kleak-msghold's System V messages, read
// back by the tools that ingest it: JSON parsers, a folded-stack parser,
// `go tool pprof`, `promtool`, and a real Prometheus server scraping
// `kleak serve`.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "child.h"
#include "env.h"
#include "msghold.h"
#include "report/report.h"

namespace kleak::test {
namespace {

// Loads kleak's programs: BPF required (env.h).
class Formats : public BpfTest {};
// Loads kleak's programs: BPF required (env.h).
class Serve : public BpfTest {};

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kKleak = KLEAK_BIN;
constexpr int kHeld = 40;
constexpr uint64_t kHeldBytes = kHeld * 4096ull;

// The path of `tool` on PATH (Child execs without a PATH search); empty
// when there is none.
std::string tool_path(const std::string& tool) {
  auto r = run({"/bin/sh", "-c", "command -v " + tool});
  if (r.status != 0 || r.out.empty() || r.out[0] != '/') return "";
  return r.out.substr(0, r.out.find('\n'));
}

// Empty when `tool` is on PATH, else why not.
std::string tool_missing(const std::string& tool) {
  return tool_path(tool).empty() ? tool + " not installed (scripts/install-deps.sh installs it)" : std::string();
}

// In a TEST body: skips (by hand) or fails (CI=true) without `tool`.
#define KLEAK_REQUIRE_TOOL(tool) KLEAK_REQUIRE(tool_missing(tool))

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Where System V messages of 4 KiB live: msg_msg-4k with kmalloc buckets
// (v6.11+), kmalloc-cg-4k before.
std::string message_cache() {
  return slurp("/proc/slabinfo").find("\nmsg_msg-4k ") != std::string::npos ? "msg_msg-4k" : "kmalloc-cg-4k";
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = "/tmp/kleak-formats-XXXXXX";
    path = mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

bool wait_for(const std::function<bool()>& ok, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ok()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// kleak-msghold sends kHeld messages while `kleak 1 -o 0 -q --format FORMAT
// --output FILE -p HOLDER EXTRA...` traces; then SIGINT. Returns the file as
// the final report left it ("" on failure, reported to gtest).
std::string trace_held(const std::string& format, const std::vector<std::string>& extra, const fs::path& file) {
  MsgHold holder(kHeld);
  if (auto ready = holder.ready(); !ready) {
    ADD_FAILURE() << ready.message();
    return "";
  }
  std::vector<std::string> argv = {
      kKleak, "1", "-o", "0", "-q", "--format", format, "--output", file.string(), "-p", std::to_string(holder.pid())};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Child kleak(argv);
  // The first report is there: kleak is attached. (Stream formats create
  // the file at start, snapshot formats with the first report.)
  if (!wait_for([&] { return fs::exists(file) && (format != "jsonl" || fs::file_size(file) > 0); },
                std::chrono::seconds(30))) {
    ADD_FAILURE() << "no first report in " << file;
    return "";
  }
  EXPECT_TRUE(holder.send());
  kleak.kill(SIGINT);
  EXPECT_EQ(kleak.wait(), 0);
  return slurp(file);
}

TEST_F(Formats, JsonlRoundTripsWithAStableStackHash) {
  TempDir dir;
  // --cache: only the 4 KiB messages (load_msg makes other, small
  // allocations on some runs, e.g. 64 bytes, at a stack of its own).
  std::string out = trace_held("jsonl", {"--cache", message_cache()}, dir.path / "r.jsonl");
  std::istringstream lines(out);
  std::string line, last;
  int n = 0;
  while (std::getline(lines, line)) {
    json j = json::parse(line);  // every line one whole document
    EXPECT_EQ(json::parse(j.dump()), j) << "round trip";
    last = line;
    ++n;
  }
  ASSERT_GE(n, 2) << "periodic reports, then the final one";
  json fin = json::parse(last);
  EXPECT_EQ(fin["final"], true);
  bool found = false;
  for (const auto& s : fin["stacks"]) {
    const std::string hash = s["stack_hash"];
    EXPECT_TRUE(std::regex_match(hash, std::regex("[0-9a-f]{16}"))) << hash;
    EXPECT_EQ(hash, stack_hash_hex(stack_hash(s["stack_key"].get<std::string>())));
    if (s["stack_key"].get<std::string>().find("load_msg") != std::string::npos) {
      found = true;
      EXPECT_EQ(s["bytes"], kHeldBytes);
      // No address or offset in the key: another boot gives the same hash.
      EXPECT_EQ(s["stack_key"].get<std::string>().find("0x"), std::string::npos);
    }
  }
  EXPECT_TRUE(found) << fin["stacks"].dump();
}

// flamegraph.pl's reading of a line: everything before the last space is
// the stack, root first; the rest the value.
std::vector<std::pair<std::vector<std::string>, uint64_t>> parse_folded(const std::string& text) {
  std::vector<std::pair<std::vector<std::string>, uint64_t>> out;
  std::istringstream in(text);
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (!std::regex_match(line, m, std::regex("(.+) ([0-9]+)"))) {
      ADD_FAILURE() << "not a folded line: " << line;
      continue;
    }
    std::vector<std::string> frames;
    std::istringstream fr(m[1].str());
    std::string f;
    while (std::getline(fr, f, ';')) frames.push_back(f);
    out.emplace_back(frames, std::stoull(m[2].str()));
  }
  return out;
}

TEST_F(Formats, FoldedLinesSumToTheHeldBytesAndCount) {
  TempDir dir;
  for (bool count : {false, true}) {
    std::vector<std::string> extra = {"--cache", message_cache()};
    if (count) extra.push_back("--folded-count");
    auto lines = parse_folded(trace_held("folded", extra, dir.path / (count ? "count.folded" : "bytes.folded")));
    ASSERT_FALSE(lines.empty());
    uint64_t sum = 0, at_load_msg = 0;
    for (const auto& [frames, v] : lines) {
      sum += v;
      // Root first: the syscall entry leads, the allocator ends the line.
      if (std::find(frames.begin(), frames.end(), "load_msg") != frames.end()) {
        at_load_msg += v;
        EXPECT_NE(frames.front().find("entry_SYSCALL"), std::string::npos) << frames.front();
        EXPECT_NE(frames.back().find("kmalloc"), std::string::npos) << frames.back();
      }
    }
    // Only the holder's 4 KiB messages pass --cache and -p.
    EXPECT_EQ(at_load_msg, count ? kHeld : kHeldBytes);
    EXPECT_EQ(sum, count ? kHeld : kHeldBytes);
  }
}

TEST_F(Formats, PprofListsLoadMsgInGoToolPprof) {
  KLEAK_REQUIRE_TOOL("go");
  TempDir dir;
  fs::path file = dir.path / "kleak.pb.gz";
  trace_held("pprof", {"--cache", message_cache()}, file);
  ASSERT_TRUE(fs::exists(file));
  for (const auto& [index, want] : {std::pair<std::string, uint64_t>{"inuse_space", kHeldBytes},
                                    std::pair<std::string, uint64_t>{"inuse_objects", kHeld}}) {
    auto r = run({tool_path("go"), "tool", "pprof", "-top", "-unit=B", "-sample_index=" + index, file.string()});
    ASSERT_EQ(r.status, 0) << r.err;
    // "  flat  flat%  sum%  cum  cum%  name": load_msg allocates nothing
    // itself, its callee does; its cumulative value is the held amount.
    std::smatch m;
    // -unit=B: whole numbers, suffixed B (pprof suffixes counts too).
    ASSERT_TRUE(std::regex_search(r.out, m, std::regex("\\s([0-9]+)B\\s+[0-9.]+%\\s+load_msg\\n"))) << r.out;
    EXPECT_EQ(std::stoull(m[1].str()), want) << r.out;
    EXPECT_NE(r.out.find("File: [kernel.kallsyms]"), std::string::npos) << r.out;
  }
}

// The value of the one sample of `metric` whose labels contain `label`.
std::optional<double> prom_value(const std::string& text, const std::string& metric, const std::string& label) {
  std::istringstream in(text);
  std::string line;
  std::optional<double> v;
  while (std::getline(in, line)) {
    if (line.rfind(metric + "{", 0) != 0 || line.find(label) == std::string::npos) continue;
    if (v) return std::nullopt;  // not one
    v = std::stod(line.substr(line.rfind(' ') + 1));
  }
  return v;
}

TEST_F(Formats, PrometheusTextfilePassesPromtool) {
  KLEAK_REQUIRE_TOOL("promtool");
  TempDir dir;
  fs::path file = dir.path / "kleak.prom";
  std::string text = trace_held("prometheus", {"--cache", message_cache()}, file);
  struct stat st {};
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u) << "node_exporter must read it";
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()), 1) << "temp files left";
  auto check = run({"/bin/sh", "-c", tool_path("promtool") + " check metrics < '" + file.string() + "'"});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
  EXPECT_EQ(text.find("kleak_stack_outstanding_bytes"), text.find("# HELP kleak_stack_outstanding_bytes") + 7);
  EXPECT_EQ(prom_value(text, "kleak_stack_outstanding_bytes", "function=\"load_msg\""), kHeldBytes) << text;
  EXPECT_EQ(prom_value(text, "kleak_stack_outstanding_allocations", "function=\"load_msg\""), kHeld) << text;
  EXPECT_EQ(prom_value(text, "kleak_lost_total", "reason=\"live_map_full\""), 0) << text;
  EXPECT_EQ(text.find(" 0x"), std::string::npos) << "no addresses";
}

uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  bind(fd, reinterpret_cast<sockaddr*>(&a), len);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// GET http://127.0.0.1:PORT/PATH: {status, body}; status 0 when unreachable.
std::pair<int, std::string> http_get(uint16_t port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return {0, ""};
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  (void)!send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  int status = 0;
  if (resp.rfind("HTTP/1.", 0) == 0) status = std::atoi(resp.c_str() + 9);
  auto body = resp.find("\r\n\r\n");
  return {status, body == std::string::npos ? "" : resp.substr(body + 4)};
}

// kleak serve on a kernel-picked port, for the holder's messages alone.
std::vector<std::string> serve_held_args(const MsgHold& holder) {
  return {kKleak, "serve", "--listen", "127.0.0.1:0", "-o", "0", "-p", std::to_string(holder.pid()), "--cache",
          message_cache()};
}

// The port kleak serve's banner names (it listens on port 0): warnings
// (about --cache) may come first. 0 when no banner came; `seen` gets the
// lines read.
uint16_t served_port(Child& kleak, std::string* seen) {
  for (int i = 0; i < 5; ++i) {
    auto line = kleak.read_err_line();
    if (!line) break;
    *seen += *line + "\n";
    std::smatch m;
    if (std::regex_search(*line, m, std::regex("http://127\\.0\\.0\\.1:([0-9]+)/metrics")))
      return static_cast<uint16_t>(std::stoi(m[1].str()));
  }
  return 0;
}

// serve --reclaim proves by reclaim between scrapes, every --reclaim-every
// seconds, and serves what the last one freed: a cold walk's dentries and
// inodes, made after kleak attached.
TEST_F(Serve, ReclaimEveryServesWhatTheLastReclaimFreed) {
  ASSERT_EQ(run({"/bin/sh", "-c", "sync; echo 2 > /proc/sys/vm/drop_caches"}).status, 0);
  Child kleak({kKleak, "serve", "--listen", "127.0.0.1:0", "--reclaim", "--reclaim-every", "3", "-o", "0"},
              Child::Options{true, false});
  std::string seen;
  const uint16_t kleak_port = served_port(kleak, &seen);
  ASSERT_NE(kleak_port, 0) << "no banner from kleak serve: " << seen;
  ASSERT_EQ(run({"/bin/sh", "-c", "find /usr/share/doc /usr/include -name 'c*' > /dev/null"}).status, 0);
  auto freed = [&]() -> std::optional<double> {
    auto [status, body] = http_get(kleak_port, "/metrics");
    std::smatch m;
    if (status != 200 || !std::regex_search(body, m, std::regex("\nkleak_reclaim_freed_allocations ([0-9]+)\n")))
      return std::nullopt;
    return std::stod(m[1].str());
  };
  std::optional<double> n;
  EXPECT_TRUE(wait_for([&] { return (n = freed()).has_value(); }, std::chrono::seconds(40)))
      << "no reclaim served";
  EXPECT_GT(n.value_or(0), 0) << "the reclaim freed nothing of a cold walk";
  kleak.kill(SIGINT);
  EXPECT_EQ(kleak.wait(std::chrono::seconds(15)), 0) << kleak.read_stderr(std::chrono::seconds(1));
}

TEST(ServeOffline, ReclaimEveryNeedsReclaim) {
  auto r = run({kKleak, "serve", "--reclaim-every", "5"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--reclaim"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(ServeOffline, RefusesNonLoopbackWithoutListenAny) {
  auto r = run({kKleak, "serve", "--listen", "0.0.0.0:9745"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--listen-any"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// A real Prometheus scrapes `kleak serve` every second; PromQL returns the
// bytes the holder keeps; Ctrl-C leaves no program behind.
TEST_F(Serve, PrometheusScrapesTheHeldBytes) {
  KLEAK_REQUIRE_TOOL("prometheus");
  TempDir dir;
  MsgHold holder(kHeld);
  ASSERT_TRUE(holder.ready());
  Child kleak(serve_held_args(holder), Child::Options{true, false});
  std::string seen;
  const uint16_t kleak_port = served_port(kleak, &seen);
  ASSERT_NE(kleak_port, 0) << "no banner from kleak serve: " << seen;

  const uint16_t prom_port = free_port();
  std::ofstream(dir.path / "prometheus.yml")
      << "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
      << "scrape_configs:\n  - job_name: kleak\n    static_configs: [{targets: ['127.0.0.1:" << kleak_port << "']}]\n";
  Child prom({tool_path("prometheus"), "--config.file=" + (dir.path / "prometheus.yml").string(),
              "--storage.tsdb.path=" + (dir.path / "data").string(),
              "--web.listen-address=127.0.0.1:" + std::to_string(prom_port), "--log.level=warn"},
             Child::Options{true, false});
  ASSERT_TRUE(wait_for([&] { return http_get(prom_port, "/-/ready").first == 200; }, std::chrono::seconds(30)))
      << "prometheus did not become ready: " << prom.read_stderr(std::chrono::seconds(1));

  ASSERT_TRUE(holder.send());
  // URL-encoded: kleak_stack_outstanding_bytes{function="load_msg"}
  const std::string query = "/api/v1/query?query=kleak_stack_outstanding_bytes%7Bfunction%3D%22load_msg%22%7D";
  json last;
  bool held = wait_for(
      [&] {
        auto [status, body] = http_get(prom_port, query);
        if (status != 200) return false;
        last = json::parse(body);
        const json& res = last["data"]["result"];
        return res.size() == 1 && res[0]["value"][1] == std::to_string(kHeldBytes);
      },
      std::chrono::seconds(30));
  EXPECT_TRUE(held) << last.dump();
  if (held) {
    const json& metric = last["data"]["result"][0]["metric"];
    EXPECT_TRUE(std::regex_match(metric["stack"].get<std::string>(), std::regex("[0-9a-f]{16}"))) << metric;
    EXPECT_EQ(metric["job"], "kleak");
  }
  // Growth rate and loss counters are served too.
  auto [status, body] = http_get(kleak_port, "/metrics");
  EXPECT_EQ(status, 200);
  EXPECT_TRUE(prom_value(body, "kleak_stack_growth_bytes_per_second", "function=\"load_msg\"")) << body;
  EXPECT_TRUE(prom_value(body, "kleak_lost_total", "reason=\"live_map_full\"")) << body;
  EXPECT_EQ(http_get(kleak_port, "/nothing").first, 404);

  prom.kill(SIGTERM);
  prom.wait(std::chrono::seconds(10));
  kleak.kill(SIGINT);
  EXPECT_EQ(kleak.wait(std::chrono::seconds(10)), 0) << kleak.read_stderr(std::chrono::seconds(1));
  EXPECT_TRUE(wait_for([] { return loaded_kleak_programs().empty(); }, std::chrono::seconds(3)));
}

// A profile store's scrape: the real `go tool pprof` fetches the live set
// from `kleak serve` over loopback and finds the held messages at
// load_msg, to the byte and to the object.
TEST_F(Serve, GoToolPprofFetchesTheLiveSetOverHttp) {
  KLEAK_REQUIRE_TOOL("go");
  TempDir dir;
  MsgHold holder(kHeld);
  ASSERT_TRUE(holder.ready());
  Child kleak(serve_held_args(holder), Child::Options{true, false});
  std::string seen;
  const uint16_t port = served_port(kleak, &seen);
  ASSERT_NE(port, 0) << "no banner from kleak serve: " << seen;
  ASSERT_TRUE(holder.send());
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/debug/pprof/kleak";
  for (const auto& [index, want] : {std::pair<std::string, uint64_t>{"inuse_space", kHeldBytes},
                                    std::pair<std::string, uint64_t>{"inuse_objects", kHeld}}) {
    // pprof keeps a copy of what it fetched under PPROF_TMPDIR.
    const std::string cmd = "PPROF_TMPDIR='" + dir.path.string() + "' " + tool_path("go") +
                            " tool pprof -top -unit=B -sample_index=" + index + " " + url;
    std::smatch m;
    std::string out;
    // The holder's messages are all held once its reply came; a scrape
    // before that may see fewer: the next one sees them all.
    bool held = wait_for(
        [&] {
          auto r = run({"/bin/sh", "-c", cmd});
          out = r.out + r.err;
          return r.status == 0 &&
                 std::regex_search(r.out, m, std::regex("\\s([0-9]+)B\\s+[0-9.]+%\\s+load_msg\\n")) &&
                 std::stoull(m[1].str()) == want;
        },
        std::chrono::seconds(20));
    EXPECT_TRUE(held) << out;
    EXPECT_NE(out.find("File: [kernel.kallsyms]"), std::string::npos) << out;
  }
  auto [status, body] = http_get(port, "/");
  EXPECT_EQ(status, 200);
  EXPECT_NE(body.find("/debug/pprof/kleak"), std::string::npos) << body;
  kleak.kill(SIGINT);
  EXPECT_EQ(kleak.wait(std::chrono::seconds(10)), 0) << kleak.read_stderr(std::chrono::seconds(1));
}

}  // namespace
}  // namespace kleak::test
