#include "report/verdict.h"

#include <fnmatch.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace kleak {
namespace {

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default:
        // XML 1.0 allows no control characters but tab and newline.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') out += '?';
        else out += c;
    }
  }
  return out;
}

// A stack's key from a report's JSON: its stack_key, or rebuilt from frames
// for reports that predate the field.
std::string key_of(const nlohmann::json& stack) {
  if (stack.contains("stack_key") && stack["stack_key"].is_string()) return stack["stack_key"];
  std::vector<Frame> frames;
  for (const auto& f : stack.value("frames", nlohmann::json::array())) {
    Frame fr;
    if (f.contains("symbol") && f["symbol"].is_string()) fr.symbol = f["symbol"];
    if (f.contains("module") && f["module"].is_string()) fr.module = f["module"];
    frames.push_back(fr);
  }
  return stack_key(frames);
}

// Bounded caches the kernel fills as a side effect of ordinary work: never
// leaks, whatever a short CI run sees. A stack matches an entry when it
// passes through every function listed.
struct KnownCache {
  const char* name;
  std::vector<const char*> functions;
  // The first function must be the allocator's direct caller (frame 1):
  // for a function whose only allocation is the cache's own object once
  // its helper is inlined, without hiding what its callees allocate.
  bool direct = false;
};

const std::vector<KnownCache>& known_caches() {
  static const std::vector<KnownCache> kCaches = {
      // Exited tasks' vmalloc'ed stacks stay in a per-CPU cache
      // (NR_CACHED_STACKS, kernel/fork.c) for the next fork.
      {"thread-stack cache", {"copy_process", "__vmalloc_node_range_noprof"}},
      {"thread-stack cache", {"copy_process", "__vmalloc_node_range"}},
      // Per-slab metadata (e.g. the obj_exts vector of a memcg-accounted
      // slab, alloc_slab_obj_exts) lives as long as the slab page, which
      // the allocator keeps cached after its objects are freed.
      {"slab metadata", {"allocate_slab"}},
      // An LSM's per-inode blob (lsm_inode_cache, unreclaimable) lives as
      // long as its inode, which stays in the reclaimable inode cache after
      // the last close: e.g. a /proc/PID inode made by readlink
      // /proc/self/exe (seen under scripts/vmtest on 6.1).
      {"inode security blob", {"security_inode_alloc", "alloc_inode"}},
      // ... or attached to a slab later, by the memcg hook of its first
      // accounted object (alloc_slab_obj_exts outside allocate_slab).
      {"slab metadata", {"alloc_slab_obj_exts"}},
      // kfree_rcu() batches objects into per-CPU "sheaves" (v6.18): the
      // empty sheaf it allocates is kept per CPU for the next batch.
      {"kfree_rcu sheaf", {"__kfree_rcu_sheaf", "alloc_empty_sheaf"}},
      // ... and the sheaves a cache prefills for callers that must not
      // fail later (the maple tree's preallocation for a VMA change: every
      // fork and exec), kept in the cache's per-node barn for the next.
      {"slab sheaf", {"kmem_cache_prefill_sheaf", "alloc_empty_sheaf"}},
      // The same two where alloc_empty_sheaf is inlined (Debian's 7.2 build:
      // __kmalloc_flags_noprof <- __kfree_rcu_sheaf <- kvfree_call_rcu).
      {"kfree_rcu sheaf", {"__kfree_rcu_sheaf"}, true},
      {"slab sheaf", {"kmem_cache_prefill_sheaf"}, true},
      // A free that finds its CPU's main sheaf full swaps in an empty one,
      // allocated when the barn has none, and kept per CPU: seen on 7.2 as
      // __kmalloc_flags_noprof <- __pcs_replace_full_main <- kfree <-
      // free_pipe_info. An allocation that finds it empty swaps in a full
      // one the same way.
      {"slab sheaf", {"__pcs_replace_full_main", "alloc_empty_sheaf"}},
      {"slab sheaf", {"__pcs_replace_full_main"}, true},
      {"slab sheaf", {"__pcs_replace_empty_main", "alloc_empty_sheaf"}},
      {"slab sheaf", {"__pcs_replace_empty_main"}, true},
  };
  return kCaches;
}

bool passes_through(const std::vector<Frame>& frames, const KnownCache& k) {
  if (k.direct && (frames.size() < 2 || frames[1].symbol != k.functions.front())) return false;
  for (const char* fn : k.functions) {
    bool found = false;
    for (const Frame& f : frames) found = found || f.symbol == fn;
    if (!found) return false;
  }
  return true;
}

}  // namespace

std::string known_cache(const std::vector<Frame>& frames) {
  for (const KnownCache& k : known_caches())
    if (passes_through(frames, k)) return k.name;
  return {};
}

std::set<std::string> parse_baseline(const std::string& text, std::string* error) {
  std::set<std::string> keys;
  std::istringstream in(text);
  std::string line;
  size_t lineno = 0, docs = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto doc = nlohmann::json::parse(line, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("stacks") || !doc["stacks"].is_array()) {
      if (error) *error = fmt::format("line {} is not a kleak JSON report", lineno);
      return {};
    }
    ++docs;
    for (const auto& s : doc["stacks"]) {
      // key_of reads fields with value(), which throws on a non-object.
      if (!s.is_object()) {
        if (error) *error = fmt::format("line {} has a stack that is not an object", lineno);
        return {};
      }
      keys.insert(key_of(s));
    }
  }
  if (docs == 0 && error) *error = "no report in it";
  return keys;
}

Result<std::set<std::string>> load_baseline(const std::string& path) {
  if (path.empty()) return std::set<std::string>{};  // no --baseline
  std::ifstream in(path);
  if (!in) return make_error("cannot read baseline " + path, errno);
  std::ostringstream buf;
  buf << in.rdbuf();
  std::string error;
  auto keys = parse_baseline(buf.str(), &error);
  if (!error.empty()) return Error{"baseline " + path + ": " + error, EINVAL};
  return keys;
}

std::string suppression(const std::vector<Frame>& frames, const std::string& key, bool reclaimable,
                        uint64_t missed_frees, const VerdictRules& ci, const std::set<std::string>& baseline) {
  if (reclaimable && !ci.include_reclaimable) return "reclaimable";
  if (missed_frees > 0 && !ci.include_unverified) return "unverified";
  if (!ci.no_known_caches && !known_cache(frames).empty()) return "known-cache";
  if (baseline.count(key)) return "baseline";
  for (const std::string& pattern : ci.ignore)
    for (const Frame& f : frames)
      if (!f.symbol.empty() && fnmatch(pattern.c_str(), f.symbol.c_str(), 0) == 0) return "ignored";
  return {};
}

void count_suppressed(Verdict& v, const std::string& why) {
  if (why == "reclaimable") ++v.suppressed_reclaimable;
  else if (why == "unverified") ++v.suppressed_unverified;
  else if (why == "known-cache") ++v.suppressed_known_cache;
  else if (why == "baseline") ++v.suppressed_baseline;
  else if (why == "ignored") ++v.suppressed_ignored;
}

Aggregate judged_groups(const Aggregate& agg, const SnapshotInfo& snap, const VerdictRules& ci,
                        const std::set<std::string>& baseline, Symbolizer& syms, const StackSource& stacks,
                        Verdict& v) {
  Aggregate out;
  out.live_count = agg.live_count;
  out.young_bytes = agg.young_bytes;
  out.young_count = agg.young_count;
  for (const StackGroup& g : agg.groups) {
    std::vector<Frame> frames = group_frames(g, syms, stacks, nullptr);
    auto missed = snap.missed_sites.find(missed_free_key(g));
    std::string why = suppression(frames, stack_key(frames), g.flags & KLEAK_ALLOC_RECLAIMABLE,
                                  missed == snap.missed_sites.end() ? 0 : missed->second, ci, baseline);
    count_suppressed(v, why);
    if (!why.empty()) continue;
    out.groups.push_back(g);
    out.bytes += g.bytes;
    out.count += g.count;
  }
  v.leak_bytes = out.bytes;
  v.leak_count = out.count;
  v.leak_stacks = out.groups.size();
  return out;
}

void decide(Verdict& v, const VerdictRules& ci) {
  bool leak;
  if (!ci.fail_on_bytes && !ci.fail_on_count) {
    leak = v.leak_count > 0;
  } else {
    leak = (ci.fail_on_bytes && v.leak_bytes >= *ci.fail_on_bytes) ||
           (ci.fail_on_count && v.leak_count >= *ci.fail_on_count);
  }
  std::string what = fmt::format("{} bytes in {} allocations at {} stacks", v.leak_bytes, v.leak_count, v.leak_stacks);
  if (leak) {
    // What was found is outstanding whatever was lost: a leak stays a leak.
    v.status = kCiLeak;
    v.summary = "leak: " + what;
  } else if (!v.interrupted.empty()) {
    v.status = kCiIncomplete;
    v.summary = "incomplete: " + v.interrupted + "; so far " + what;
  } else if (!v.complete) {
    v.status = kCiIncomplete;
    v.summary = "incomplete: allocations were lost (see counters); so far " + what;
  } else {
    v.status = kCiPass;
    v.summary = "no leak: " + what;
  }
}

nlohmann::json verdict_json(const Verdict& v, const VerdictRules& ci, const std::vector<std::string>& command) {
  nlohmann::json j;
  const char* names[] = {"pass", "leak", "usage", "incomplete", "unsupported"};
  j["verdict"] = names[v.status];
  j["exit_status"] = static_cast<int>(v.status);
  j["summary"] = v.summary;
  j["leak_bytes"] = v.leak_bytes;
  j["leak_count"] = v.leak_count;
  j["leak_stacks"] = v.leak_stacks;
  j["suppressed_stacks"] = {{"baseline", v.suppressed_baseline},
                            {"ignored", v.suppressed_ignored},
                            {"reclaimable", v.suppressed_reclaimable},
                            {"unverified", v.suppressed_unverified},
                            {"known_cache", v.suppressed_known_cache}};
  j["thresholds"] = {{"fail_on_bytes", ci.fail_on_bytes ? nlohmann::json(*ci.fail_on_bytes) : nlohmann::json(nullptr)},
                     {"fail_on_count", ci.fail_on_count ? nlohmann::json(*ci.fail_on_count) : nlohmann::json(nullptr)}};
  j["reclaim"] = reclaim_json(v.reclaim);
  j["command"] = command;
  j["complete"] = v.complete && v.interrupted.empty();
  return j;
}

std::string junit_xml(const Verdict& v, const std::string& details, double seconds, const std::string& testcase) {
  std::string body;
  if (v.status == kCiLeak)
    body = fmt::format("<failure type=\"leak\" message=\"{}\">{}</failure>", xml_escape(v.summary), xml_escape(details));
  else if (v.status != kCiPass)
    body = fmt::format("<error type=\"incomplete\" message=\"{}\">{}</error>", xml_escape(v.summary),
                       xml_escape(details));
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<testsuites>\n"
      "  <testsuite name=\"kleak\" tests=\"1\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{:.3f}\">\n"
      "    <testcase classname=\"kleak\" name=\"{}-memory-leaks\" time=\"{:.3f}\">{}</testcase>\n"
      "  </testsuite>\n"
      "</testsuites>\n",
      v.status == kCiLeak ? 1 : 0, v.status != kCiLeak && v.status != kCiPass ? 1 : 0, seconds, testcase, seconds,
      body);
}

std::string ktap(const Verdict& v, const std::string& details, const std::string& testcase) {
  std::string out = "KTAP version 1\n1..1\n";
  std::istringstream in(details);
  std::string line;
  while (std::getline(in, line)) out += "# " + line + "\n";
  out += fmt::format("{} 1 kleak_{}_memory_leaks # {}\n", v.status == kCiPass ? "ok" : "not ok", testcase, v.summary);
  return out;
}

}  // namespace kleak
