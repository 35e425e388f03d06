#include "options/options.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <ostream>

#include <CLI/CLI.hpp>

#include "util/cli.h"
#include "version.h"

namespace kleak {
namespace {

constexpr const char* kDescription =
    "kleak: find kernel memory leaks on a running kernel.\n"
    "Traces kmalloc/kmem_cache allocations and frees with BPF and reports the\n"
    "allocations still outstanding, grouped by kernel stack and ranked by bytes.";

constexpr const char* kExamples = R"(
Examples:
  kleak                      report every 10 s until Ctrl-C (final report on exit)
  kleak 5 3                  three reports, 5 s apart
  kleak -d 60 --format json  one JSON report after 60 s (fleet one-shot)
  kleak --size 4096 -d 300   only 4096-byte allocations (slabtop shows kmalloc-4k growing)
  kleak --cache kmalloc-cg-4k   only that slabtop row's allocations (or --cache dentry, ...)
  kleak --family slab,page   also pages taken straight from the page allocator (alloc_pages)
  kleak --family all         slab, page, percpu and vmalloc
  kleak selftest             is every allocator family recorded and paired on this kernel?
  kleak -p 1234 -o 1000      allocations made by process 1234, older than 1 s
  kleak -a -T 3 5            also list addresses, sizes and ages of the top 3 stacks
  kleak --low-overhead -d 600   sampled stacks, several times cheaper (production)
  kleak triage               first: which memory grows? (samples /proc for a minute, no BPF)
  kleak start; kleak report; kleak stop   slow leaks: keep tracing after kleak exits (pinned in bpffs)

  kleak --ci -- ./workload.sh             CI: trace the workload's process tree, fail if it leaked
  kleak --ci --baseline old.json --junit leaks.xml -- make check

Exit status: 0 ok, 1 runtime failure (privileges, BTF, attach), 2 usage error.
With --ci: 0 no leak, 1 leak found, 2 usage, 3 incomplete (allocations lost,
or interrupted), 4 cannot trace here (privileges, BTF, tracepoints).
Needs root (or CAP_BPF+CAP_PERFMON) and a kernel with BTF; tracefs is not needed.)";

constexpr const char* kServeDescription =
    "kleak serve: trace like kleak trace, and answer Prometheus scrapes of /metrics.\n"
    "Each scrape takes a snapshot: the top stacks' outstanding bytes and allocations,\n"
    "their growth rate, and kleak's own loss counters. Ctrl-C or SIGTERM stops it.";

constexpr const char* kServeExamples = R"(
Examples:
  kleak serve                                 serve http://127.0.0.1:9745/metrics
  kleak serve --listen 127.0.0.1:9100 -T 20   the top 20 stacks, on port 9100
  kleak serve --listen 0.0.0.0:9745 --listen-any   every interface (the stack names are visible to anyone)

Prometheus: scrape_configs: [{job_name: kleak, static_configs: [{targets: ['127.0.0.1:9745']}]}]
Exit status: 0 stopped, 1 runtime failure (privileges, BTF, attach, address in use), 2 usage error.)";

}  // namespace

Status validate(const TraceOptions& o) {
  if (!o.ci.command.empty() && !o.ci.enabled) return make_error("a command after -- needs --ci", 0);
  if (o.ci.enabled && o.ci.command.empty() && o.duration_s <= 0) return make_error("--ci needs a command after -- or --duration", 0);
  if (o.ci.enabled && (o.interval_s > 0 || o.count > 0)) return make_error("--ci takes no interval or count", 0);
  if (o.ci.settle_s < 0) return make_error("--settle must not be negative", 0);
  if (o.ci.enabled && o.ci.command.empty() == false && o.pid != 0) return make_error("--pid and a command exclude each other", 0);
  if (o.interval_s < 0) return make_error("interval must be positive", 0);
  if (o.count > 0 && o.interval_s <= 0) return make_error("a report count needs an interval", 0);
  if (o.duration_s < 0) return make_error("--duration must be positive", 0);
  if (o.top == 0) return make_error("--top must be at least 1", 0);
  if (o.peek_bytes > 4096) return make_error("--peek reads at most 4096 bytes", 0);
  if (o.hide_addresses && (o.show_allocs || o.peek_bytes > 0 || o.peek_addr != 0))
    return make_error("--hide-addresses excludes -a, --peek and --peek-addr (they show addresses and kernel memory)", 0);
  if (o.peek_samples == 0 || o.peek_samples > 64) return make_error("--peek-samples must be 1 to 64", 0);
  if (o.min_size_bytes > o.max_size_bytes) return make_error("--min-size is larger than --max-size", 0);
  if (o.max_allocs == 0) return make_error("--max-allocs must be at least 1", 0);
  if (!o.cache.empty() && !o.families.only_slab()) return make_error("--cache names a slab cache: it works with --family slab only", 0);
  if (o.stack_storage_size == 0) return make_error("--stack-storage-size must be at least 1", 0);
  if (o.stack_sample_every == 0 || o.stack_sample_every > 1000000) return make_error("--stack-sample must be 1 to 1000000", 0);
  if (o.folded_count && o.format != OutputFormat::folded) return make_error("--folded-count needs --format folded", 0);
  if (o.ci.enabled && is_snapshot_format(o.format)) return make_error("--ci reports as text or json (--report-json for a file)", 0);
  if (o.serve.enabled) {
    if (o.ci.enabled) return make_error("serve excludes --ci", 0);
    if (o.interval_s > 0 || o.count > 0) return make_error("serve takes no interval or count: Prometheus decides when to look", 0);
    if (o.show_allocs || o.peek_bytes > 0 || o.peek_addr != 0)
      return make_error("serve shows no addresses or contents: -a, --peek and --peek-addr are for kleak trace", 0);
    auto addr = parse_listen_address(o.serve.listen);
    if (!addr) return make_error("--listen wants ADDR:PORT, e.g. 127.0.0.1:9745 or [::1]:9745", 0);
    if (!addr->loopback && !o.serve.listen_any)
      return make_error("--listen " + o.serve.listen +
                            " is not a loopback address: /metrics names kernel functions; add --listen-any to serve it "
                            "anyway",
                        0);
  }
  return {};
}

FormatOptions format_options(const TraceOptions& opts) { return FormatOptions{opts.format, opts.folded_count}; }

void add_selection_options(CLI::App& app, TraceOptions& o, OptionStrings& s) {
  const HelpGroup group(app, "Selection");
  app.add_option("-p,--pid", o.pid, "Only allocations made while process PID runs");
  app.add_option("-z,--min-size", o.min_size_bytes, "Only allocations of at least BYTES (bytes_alloc)");
  app.add_option("-Z,--max-size", o.max_size_bytes, "Only allocations of at most BYTES (bytes_alloc)");
  app.add_option("--size", s.exact_size, "Only allocations of exactly BYTES, e.g. 4096 for kmalloc-4k")
      ->excludes(app.get_option("--min-size"))
      ->excludes(app.get_option("--max-size"));
  app.add_option(
         "--cache", o.cache,
         "Only allocations from slab cache NAME, as slabtop/slabinfo show it (kmalloc-4k, kmalloc-cg-4k, dentry)")
      ->excludes(app.get_option("--size"))
      ->excludes(app.get_option("--min-size"))
      ->excludes(app.get_option("--max-size"));
  app.add_option("--family", s.families,
                 "Allocator families to trace, comma-separated: slab (kmalloc, kmem_cache; the default), page "
                 "(alloc_pages), percpu (alloc_percpu), vmalloc (vmap areas), or all");
}

void add_age_option(CLI::App& app, TraceOptions& o, const std::string& names) {
  const HelpGroup group(app, "Selection");
  app.add_option(names, o.min_age_ms,
                 "Report only allocations older than MS milliseconds (default 10000: longer than "
                 "kfree_rcu batching and lazy RCU, so deferred frees are not reported)");
}

void add_output_options(CLI::App& app, TraceOptions& o, OptionStrings& s, const std::string& what) {
  app.add_option("--format", s.format,
                 "Report format: text, json or jsonl (one JSON document per line), folded (flame graphs), "
                 "pprof (gzipped profile.proto) or prometheus (node_exporter textfile)")
      ->check(CLI::IsMember({"text", "json", "jsonl", "folded", "pprof", "prometheus"}));
  app.add_flag("--folded-count", o.folded_count, "With --format folded: count " + what + " instead of bytes");
  app.add_option("--output", o.output_path,
                 "Write reports to FILE (created 0600, a symlink at FILE is refused) instead of stdout; "
                 "folded, pprof and prometheus replace FILE atomically with each report");
}

void add_reclaim_option(CLI::App& app, TraceOptions& o, const std::string& when) {
  app.add_flag("--reclaim", o.reclaim,
               when +
                   ", ask the kernel to reclaim its dentry and inode caches (drop_caches 2) and end loopback "
                   "TIME_WAIT sockets; what that frees is counted as cache-owned, not reported (costs the machine "
                   "those caches; --ci does it by default)");
}

void add_report_options(CLI::App& app, TraceOptions& o, OptionStrings& s, bool with_format) {
  const HelpGroup group(app, "Reporting");
  app.add_option("-T,--top", o.top, "Show the top N stacks (default 10)");
  app.add_option("--peek", o.peek_bytes,
                 "Show the first BYTES (at most 4096) of a few outstanding allocations per stack: hexdump, "
                 "strings, how many look alike. Root only; the output holds kernel data");
  app.add_option("--peek-addr", s.peek_addr,
                 "Read ADDR[,LEN] (hex address from -a output; LEN default 256, at most 4096) in every report, "
                 "if it is a live tracked allocation. Root only");
  app.add_option("--peek-samples", o.peek_samples, "Allocations read per stack with --peek (default 3, at most 64)");
  app.add_option("--peek-strings", o.peek_min_string, "Shortest printable string --peek lists (default 4)");
  app.add_option("--sort", s.sort,
                 "Rank stacks by score (default: steady growth first, then bytes), bytes, count or growth (bytes/s)")
      ->check(CLI::IsMember({"score", "bytes", "count", "growth"}));
  app.add_flag("-a,--show-allocs", o.show_allocs, "List each outstanding allocation: address, size, age, task");
  if (with_format) add_output_options(app, o, s, "allocations");
  app.add_flag("-q,--quiet", o.quiet, "No banner on stderr");
  app.add_flag("--hide-addresses", o.hide_addresses,
               "No raw kernel addresses in reports, only symbol+offset: safe to share (excludes -a and --peek)");
  app.add_option("--vmlinux", o.vmlinux_path,
                 "The running kernel's vmlinux with DWARF, for source lines of kernel frames (default: "
                 "/usr/lib/debug/boot/vmlinux-$(uname -r) and the usual places, if there; modules: their .ko "
                 "under /usr/lib/debug/lib/modules or /lib/modules)");
}

void add_map_size_options(CLI::App& app, TraceOptions& o, OptionStrings& s, const std::string& what) {
  app.add_option("--max-allocs", o.max_allocs,
                 "Live-" + what + " map size (default 262144); a full map is counted, never silent");
  app.add_option("--stack-storage-size", o.stack_storage_size,
                 "Distinct stacks kept (default 8192; unused ones are reclaimed)");
  app.add_flag("--low-overhead", s.low_overhead,
               "Capture the stack of one " + what + " in 64 per call site (and of each call site's first): "
               "several times cheaper; per-call-site bytes stay exact, per-stack bytes are estimated");
  app.add_option("--stack-sample", o.stack_sample_every,
                 "Capture the stack of one " + what + " in N (1 = every one, the default; --low-overhead is 64)")
      ->excludes("--low-overhead");
}

void add_limit_options(CLI::App& app, TraceOptions& o, OptionStrings& s) {
  const HelpGroup group(app, "Limits");
  add_map_size_options(app, o, s, "allocation");
  app.add_option("--stack-cache", s.stack_cache,
                 "Reuse a stack already walked when the stack words the walk reads are unchanged: on (default), "
                 "off, or verify (also walk every reused stack and count mismatches)")
      ->type_name("MODE")
      ->check(CLI::IsMember({"on", "off", "verify"}));
  app.add_option("--btf", o.btf_path, "Kernel BTF file, for kernels without /sys/kernel/btf/vmlinux");
}

void add_ci_verdict_options(CLI::App& app, CiOptions& ci) {
  app.add_option("--fail-on-bytes", ci.fail_on_bytes, "Leak when at least BYTES are outstanding (default: any)");
  app.add_option("--fail-on-count", ci.fail_on_count, "Leak when at least N allocations are outstanding");
  app.add_option("--baseline", ci.baseline_path, "Earlier JSON report: its stacks are not reported again");
  app.add_option("--ignore", ci.ignore, "Ignore stacks with a function matching PATTERN (fnmatch; repeatable)");
  app.add_option("--report-json", ci.report_json_path, "Also write the JSON report to FILE");
  app.add_option("--junit", ci.junit_path, "Write a JUnit XML verdict to FILE");
  app.add_option("--ktap", ci.ktap_path, "Write a KTAP verdict to FILE");
}

void add_verbose_option(CLI::App& app, TraceOptions& o) {
  const HelpGroup group(app, "Limits");
  app.add_flag("--selftest", o.selftest,
               "First check that every family pairs allocations and frees on this kernel (kleak selftest); "
               "stop with status 1 (4 with --ci) if one that should work does not");
  app.add_flag("-v,--verbose", o.verbosity, "More logging: -v info, -vv libbpf debug and verifier log");
}

Status apply_option_strings(TraceOptions& o, const OptionStrings& s, bool top_given) {
  if (s.low_overhead) o.stack_sample_every = kLowOverheadSampleEvery;
  o.stack_cache = s.stack_cache == "off" ? KLEAK_SC_OFF : s.stack_cache == "verify" ? KLEAK_SC_VERIFY : KLEAK_SC_ON;
  o.stack_cache_named = !s.stack_cache.empty();
  if (auto st = parse_families(s.families, o.families); !st) return st;
  o.families_named = named_families(s.families);
  if (s.exact_size) o.min_size_bytes = o.max_size_bytes = *s.exact_size;
  o.format = s.format == "json"         ? OutputFormat::json
             : s.format == "jsonl"      ? OutputFormat::jsonl
             : s.format == "folded"     ? OutputFormat::folded
             : s.format == "pprof"      ? OutputFormat::pprof
             : s.format == "prometheus" ? OutputFormat::prometheus
                                        : OutputFormat::text;
  // Flame graphs and profiles show every stack unless -T says otherwise.
  if ((o.format == OutputFormat::folded || o.format == OutputFormat::pprof) && !top_given)
    o.top = std::numeric_limits<uint32_t>::max();
  if (!s.peek_addr.empty()) {
    std::string addr = s.peek_addr, len;
    if (auto comma = s.peek_addr.find(','); comma != std::string::npos) {
      addr = s.peek_addr.substr(0, comma);
      len = s.peek_addr.substr(comma + 1);
    }
    if (addr.rfind("0x", 0) == 0 || addr.rfind("0X", 0) == 0) addr = addr.substr(2);
    auto parse = [](const std::string& v, int base, uint64_t& out) {
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out, base);
      return !v.empty() && ec == std::errc() && p == v.data() + v.size();
    };
    uint64_t l = o.peek_addr_len;
    if (!parse(addr, 16, o.peek_addr) || o.peek_addr == 0 || (!len.empty() && !parse(len, 10, l)) || l == 0 ||
        l > 4096)
      return make_error("--peek-addr wants ADDR[,LEN]: a hex address and 1 to 4096 bytes, e.g. 0xffff888012345000,256",
                        0);
    o.peek_addr_len = static_cast<uint32_t>(l);
  }
  o.sort = s.sort == "bytes"    ? SortKey::bytes
           : s.sort == "count"  ? SortKey::count
           : s.sort == "growth" ? SortKey::growth
                                : SortKey::score;
  return {};
}

namespace {

void add_serve_options(CLI::App& app, TraceOptions& o) {
  const HelpGroup group(app, "Serving");
  app.add_option("--listen", o.serve.listen, "Answer scrapes of /metrics on ADDR:PORT (default 127.0.0.1:9745)");
  app.add_flag("--listen-any", o.serve.listen_any,
               "Allow a --listen address that is not loopback (anyone who reaches it sees kernel stack names)");
  app.add_option("--reclaim-every", o.serve.reclaim_every_s,
                 "With --reclaim: seconds between reclaims (default 600; the first that long after the start)")
      ->check(CLI::PositiveNumber);
}

void add_ci_mode_options(CLI::App& app, TraceOptions& o) {
  const HelpGroup group(app, "CI mode (kleak --ci [options] [-- COMMAND ARGS...])");
  app.add_flag(
      "--ci", o.ci.enabled,
      "Judge instead of report: trace COMMAND's process tree (or --duration), wait --settle, exit 1 on a leak");
  app.add_option("--settle", o.ci.settle_s,
                 "Seconds to wait after COMMAND for deferred frees (default 10; ends early when nothing is left)");
  add_ci_verdict_options(app, o.ci);
  app.add_flag("--include-reclaimable", o.ci.include_reclaimable,
               "Also judge reclaimable caches (dentries, inodes: freed under memory pressure)");
  app.add_flag("--include-unverified", o.ci.include_unverified,
               "Also judge stacks whose cache or call site had frees bypass kleak (bulk frees): may be phantoms");
  app.add_flag("--no-known-caches", o.ci.no_known_caches,
               "Also judge bounded kernel caches kleak knows (e.g. cached thread stacks)");
  app.add_flag("!--no-reclaim", o.ci.reclaim,
               "Judge without first asking the kernel to reclaim its caches (by default kleak --ci drops the "
               "dentry and inode caches, and what they free is cache-owned, not a leak)");
}

// "kleak: WHY (see kleak --help)", status 2.
ParsedCommandLine usage_error(std::ostream& err, const std::string& name, const std::string& why) {
  err << name << ": " << why << " (see " << name << " --help)\n";
  ParsedCommandLine result;
  result.exit_code = kExitUsage;
  return result;
}

}  // namespace

ParsedCommandLine parse_command_line(const std::vector<std::string>& args, std::ostream& out,
                                     std::ostream& err, CommandKind command) {
  TraceOptions o;
  ParsedCommandLine result;
  const bool serve = command == CommandKind::serve;
  const std::string name = serve ? "kleak serve" : "kleak";
  CLI::App app{serve ? kServeDescription : kDescription, name};
  app.footer(serve ? kServeExamples : kExamples);
  app.get_formatter()->column_width(34);

  bool version = false;
  OptionStrings strings;
  app.add_flag("-V,--version", version, "Print version and exit");

  add_selection_options(app, o, strings);
  add_age_option(app, o, "-o,--older");

  {
    const HelpGroup group(app, "Reporting");
    if (!serve) {
      app.add_option("interval", o.interval_s, "Seconds between reports (default 10, or only a final report with -d)");
      app.add_option("count", o.count, "Number of reports, then exit");
    }
    app.add_option("-d,--duration", o.duration_s, "Trace for SECONDS, print the final report, exit 0");
  }
  add_report_options(app, o, strings, !serve);
  if (serve) add_serve_options(app, o);
  {
    const HelpGroup group(app, "Reporting");
    add_reclaim_option(app, o, serve ? "Every --reclaim-every seconds, between scrapes" : "Before the final report");
    if (serve) app.get_option("--reclaim-every")->needs("--reclaim");
  }
  add_limit_options(app, o, strings);
  add_verbose_option(app, o);

  if (!serve) add_ci_mode_options(app, o);

  // Everything after "--" is the command to run (CI mode), kept out of CLI11.
  std::vector<std::string> own(args);
  if (auto dd = std::find(own.begin(), own.end(), "--"); dd != own.end()) {
    o.ci.command.assign(dd + 1, own.end());
    own.erase(dd, own.end());
  }
  if (auto status = parse_cli(app, own, name, out, err)) {
    result.exit_code = *status;
    return result;
  }
  if (version) {
    out << "kleak " << kVersion << "\n";
    result.exit_code = kExitOk;
    return result;
  }
  if (auto why = apply_option_strings(o, strings, app.count("--top") > 0); !why)
    return usage_error(err, name, why.error().message);
  if (serve) {
    o.serve.enabled = true;
    o.format = OutputFormat::prometheus;
  }
  if (!serve && o.interval_s == 0 && o.duration_s == 0 && app.count("interval") == 0 && !o.ci.enabled)
    o.interval_s = 10;
  if (!serve && app.count("interval") > 0 && o.interval_s <= 0)
    return usage_error(err, name, "interval must be positive");
  if (auto why = validate(o); !why) return usage_error(err, name, why.error().message);
  result.trace = o;
  return result;
}

}  // namespace kleak
