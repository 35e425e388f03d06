#include "probe/bpf_load.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include <bpf/libbpf.h>

#include "model/abi.h"
#include "util/log.h"

namespace kleak {
namespace {

int g_quiet = 0;  // QuietLibbpf's alive
// The program named by libbpf's last "prog '%s': failed to load" message:
// which program a load failed on when the kernel wrote no verifier log
// (e.g. EPERM for a program type it forbids).
std::string g_failed_program;

void note_failed_program(const char* format, va_list args) {
  if (!std::strstr(format, "prog '%s': failed to load")) return;
  va_list copy;
  va_copy(copy, args);
  g_failed_program = va_arg(copy, const char*);
  va_end(copy);
}

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
  note_failed_program(format, args);
  // libbpf's info lines are chatty (one per relocation): keep them for -vv.
  LogLevel mine = level == LIBBPF_WARN && g_quiet == 0 ? LogLevel::warn : LogLevel::debug;
  if (!log_enabled(mine)) return 0;
  // Verifier logs come as one message of many KiB: size it, then format.
  va_list again;
  va_copy(again, args);
  int n = std::vsnprintf(nullptr, 0, format, args);
  if (n < 0) {
    va_end(again);
    return n;
  }
  std::string buf(static_cast<size_t>(n) + 1, '\0');
  std::vsnprintf(buf.data(), buf.size(), format, again);
  va_end(again);
  buf.resize(static_cast<size_t>(n));
  log_write(mine, buf);  // libbpf's messages carry their own "libbpf: " prefix
  return n;
}

struct PartName {
  uint32_t part;
  const char* name;
};
const PartName kParts[] = {
    {KLEAK_PART_CORE, "core"},
    {KLEAK_PART_STACK_CACHE, "stack-cache"},
    {KLEAK_PART_DIRECT_PTR, "direct-ptr-args"},
    {KLEAK_PART_KMEM_CACHE, "kmem_cache"},
    {KLEAK_PART_PAGE, "page"},
    {KLEAK_PART_PERCPU, "percpu"},
    {KLEAK_PART_VMALLOC, "vmalloc"},
    {KLEAK_PART_EXIT_FOLLOWER, "exit-follower"},
    {KLEAK_PART_PEEK, "peek"},
    {KLEAK_PART_EXEC_FOLLOWER, "exec-follower"},
    {KLEAK_PART_FREE_BACKUP, "free-backup"},
    {KLEAK_PART_BULK_FREE, "bulk-free-follower"},
    {KLEAK_PART_MODULE_FOLLOWER, "module-follower"},
};

// The log's lines, without the verifier's closing summary and blank lines.
std::vector<std::string_view> meaningful_lines(std::string_view log) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < log.size()) {
    size_t nl = log.find('\n', pos);
    std::string_view line = log.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? log.size() : nl + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty() || line.starts_with("processed ") || line.starts_with("verification time") ||
        line.starts_with("stack depth") || line.starts_with("-- "))
      continue;
    out.push_back(line);
  }
  return out;
}

}  // namespace

void install_libbpf_logger() { libbpf_set_print(libbpf_print); }

QuietLibbpf::QuietLibbpf() { ++g_quiet; }
QuietLibbpf::~QuietLibbpf() { --g_quiet; }

const char* part_name(uint32_t part) {
  for (const PartName& p : kParts)
    if (p.part == part) return p.name;
  return "unknown";
}

Result<uint32_t> parse_parts(std::string_view list) {
  uint32_t mask = 0;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view name = list.substr(0, comma);
    bool known = false;
    for (const PartName& p : kParts)
      if (name == p.name) mask |= p.part, known = true;
    if (!known) {
      std::string all;
      for (const PartName& p : kParts) all += (all.empty() ? "" : ", ") + std::string(p.name);
      return Error{"unknown part '" + std::string(name) + "' (" + all + ")", EINVAL};
    }
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return mask;
}

Result<uint32_t> parts_to_refuse() {
  const char* v = std::getenv("KLEAK_REFUSE");
  if (!v || !*v) return uint32_t{0};
  auto mask = parse_parts(v);
  if (!mask) return Error{"KLEAK_REFUSE: " + mask.error().message, EINVAL};
  return mask;
}

std::string verifier_last_line(std::string_view log) {
  std::vector<std::string_view> lines = meaningful_lines(log);
  if (lines.empty()) return "no verifier log";
  std::string out(lines.back());
  // The source annotation the verifier prints before an instruction:
  // "; slot = (...) @ stack_cache.bpf.h:579".
  for (size_t i = lines.size() - 1; i-- > 0;) {
    std::string_view l = lines[i];
    if (!l.starts_with(";")) continue;
    size_t at = l.rfind(" @ ");
    if (at != std::string_view::npos) out += " (" + std::string(l.substr(at + 3)) + ")";
    break;
  }
  return out;
}

std::vector<std::string> verifier_tail(std::string_view log, size_t n) {
  std::vector<std::string_view> lines = meaningful_lines(log);
  size_t from = lines.size() > n ? lines.size() - n : 0;
  return {lines.begin() + static_cast<std::ptrdiff_t>(from), lines.end()};
}

VerifierLogs::VerifierLogs(bpf_object* obj) {
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    if (bpf_program__autoload(prog)) progs_.push_back(prog);
  }
  // new char[] leaves the memory untouched: malloc maps an allocation this
  // large on first use, so only the pages the kernel writes become resident.
  arena_.reset(new char[progs_.size() * kLogBytes]);
  for (size_t i = 0; i < progs_.size(); ++i) {
    char* buf = arena_.get() + i * kLogBytes;
    buf[0] = '\0';
    bpf_program__set_log_buf(progs_[i], buf, kLogBytes);
  }
}

std::optional<Refusal> VerifierLogs::refusal() const {
  for (size_t i = 0; i < progs_.size(); ++i) {
    const char* buf = arena_.get() + i * kLogBytes;
    if (buf[0] == '\0') continue;
    Refusal r;
    r.program = bpf_program__name(progs_[i]);
    r.log.assign(buf, strnlen(buf, kLogBytes));
    r.line = verifier_last_line(r.log);
    return r;
  }
  return std::nullopt;
}

Result<std::optional<Refusal>> load_watched(bpf_object* obj, const std::function<int()>& load) {
  VerifierLogs logs(obj);
  QuietLibbpf quiet;
  g_failed_program.clear();
  // The logger notes the failed program: installed for the load, whoever
  // the caller is.
  const libbpf_print_fn_t previous = libbpf_set_print(libbpf_print);
  int err = load();
  libbpf_set_print(previous);
  if (err == 0) return std::optional<Refusal>{};
  if (auto r = logs.refusal()) return r;
  // Refused before the verifier wrote a word: the program libbpf named.
  if (!g_failed_program.empty()) {
    Refusal r;
    r.program = g_failed_program;
    r.line = fmt::format("load failed before verification: {} ({})", std::strerror(err < 0 ? -err : err),
                         err < 0 ? -err : err);
    return std::optional<Refusal>{r};
  }
  std::string hint = log_enabled(LogLevel::debug) ? "" : " (run with -vv for libbpf's log)";
  return make_error("load BPF programs" + hint, err);
}

Result<TierResult> load_in_tiers(const TierPlan& plan) {
  TierResult out;
  struct Trial {
    uint32_t part;
    Refusal refusal;
  };
  std::optional<Trial> trial;
  std::set<std::pair<std::string, uint32_t>> no_help;  // (program, part) whose drop did not help
  // Each attempt drops one more part or undoes one: bounded by the parts
  // times the programs that can be refused.
  for (int attempt = 0; attempt < 64; ++attempt) {
    auto r = plan.attempt(out.dropped | (trial ? trial->part : 0));
    if (!r) return r.error();
    if (trial) {
      const Refusal& was = trial->refusal;
      if (*r && (*r)->program == was.program && (*r)->line == was.line) {
        no_help.emplace(was.program, trial->part);  // the same refusal: not this part
      } else {
        const std::string why = std::string(was.log.empty() ? "the kernel refused " : "the verifier refused ") +
                                was.program + ": " + was.line;
        if (trial->part & plan.required)
          return Error{fmt::format("{} was asked for by name, but this kernel refuses it: {}", part_name(trial->part), why),
                       EACCES};
        out.dropped |= trial->part;
        out.degraded.push_back({part_name(trial->part), why});
        log_warn("{} dropped: {}", part_name(trial->part), why);
      }
      trial.reset();
    }
    if (!*r) return out;
    const Refusal& refused = **r;
    for (uint32_t part : plan.causes(refused.program)) {
      if ((out.dropped & part) || no_help.count({refused.program, part})) continue;
      trial = Trial{part, refused};
      break;
    }
    if (trial) continue;
    log_debug("verifier log of {}:\n{}", refused.program, refused.log);
    std::string detail;
    for (const std::string& l : verifier_tail(refused.log, 3)) detail += "\n  " + l;
    std::string hint = log_enabled(LogLevel::debug) ? "" : "\n(run with -vv for the whole verifier log)";
    return Error{fmt::format("the {} refused {} ({}): {}{}{}", refused.log.empty() ? "kernel" : "verifier",
                             refused.program, plan.what, refused.line, detail, hint),
                 EACCES};
  }
  return make_error("load " + plan.what + ": no load succeeded after 64 attempts", EAGAIN);
}

}  // namespace kleak
