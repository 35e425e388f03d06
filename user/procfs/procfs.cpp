#include "procfs/procfs.h"

#include "util/fd.h"
#include "util/sys.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <limits>
#include <memory>

namespace kleak {
namespace {

constexpr std::string_view kSpace = " \t";

std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t b = s.find_first_not_of(kSpace, i);
    if (b == std::string_view::npos) break;
    size_t e = s.find_first_of(kSpace, b);
    if (e == std::string_view::npos) e = s.size();
    out.push_back(s.substr(b, e - b));
    i = e;
  }
  return out;
}

// Whole-token unsigned decimal; nullopt on anything else, including a value
// that does not fit in 64 bits.
std::optional<uint64_t> to_u64(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<uint64_t> kib_to_bytes(uint64_t kib) {
  if (kib > std::numeric_limits<uint64_t>::max() / 1024) return std::nullopt;
  return kib * 1024;
}

// Calls f(line) for each line, without the newline.
template <typename F>
void for_each_line(std::string_view text, F&& f) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    f(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// "Key:   123 kB" -> (Key, 123, true); "Key: 5" -> (Key, 5, false).
struct KeyValue {
  std::string_view key;
  uint64_t value = 0;
  bool kib = false;
};

std::optional<KeyValue> parse_key_value(std::string_view line) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  KeyValue kv;
  kv.key = line.substr(0, colon);
  if (kv.key.find_first_of(kSpace) != std::string_view::npos) return std::nullopt;
  auto tok = split_ws(line.substr(colon + 1));
  if (tok.empty() || tok.size() > 2) return std::nullopt;
  auto v = to_u64(tok[0]);
  if (!v) return std::nullopt;
  kv.value = *v;
  if (tok.size() == 2) {
    if (tok[1] != "kB") return std::nullopt;
    kv.kib = true;
  }
  return kv;
}

// "4k" -> 4096, "96" -> 96, "2M" -> 2 MiB; nothing else.
std::optional<uint64_t> size_token(std::string_view s) {
  uint64_t mult = 1;
  if (!s.empty() && (s.back() == 'k' || s.back() == 'M')) {
    mult = s.back() == 'k' ? 1024 : 1024 * 1024;
    s.remove_suffix(1);
  }
  auto v = to_u64(s);
  if (!v || *v == 0 || *v > (1ull << 40)) return std::nullopt;
  return *v * mult;
}

bool consume(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

}  // namespace

void ParseIssues::add(std::string_view line) {
  if (bad_lines++ == 0) first_bad_line = std::string(line.substr(0, 80));
}

std::optional<uint64_t> Meminfo::get(std::string_view field) const {
  auto it = bytes.find(field);
  if (it == bytes.end()) return std::nullopt;
  return it->second;
}

Meminfo parse_meminfo(std::string_view text) {
  Meminfo m;
  for_each_line(text, [&](std::string_view line) {
    if (trim(line).empty()) return;
    auto kv = parse_key_value(line);
    std::optional<uint64_t> b = kv && kv->kib ? kib_to_bytes(kv->value) : std::nullopt;
    // A field seen twice is ambiguous: keep the first, report the second.
    if (!kv || (kv->kib && !b) || m.bytes.count(kv->key) || m.counts.count(kv->key)) {
      m.issues.add(line);
      return;
    }
    if (kv->kib)
      m.bytes.emplace(std::string(kv->key), *b);
    else
      m.counts.emplace(std::string(kv->key), kv->value);
  });
  return m;
}

Result<Slabinfo> parse_slabinfo(std::string_view text) {
  Slabinfo s;
  bool header = false;
  for_each_line(text, [&](std::string_view line) {
    if (!header) {
      std::string_view h = trim(line);
      if (consume(h, "slabinfo - version:")) {
        s.version = std::string(trim(h));
        header = true;
      }
      return;  // nothing before the header is a cache
    }
    if (trim(line).empty() || trim(line).front() == '#') return;
    // "<name> <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables ... : slabdata ...".
    // Take the five numbers before the first " : " from the right, so a name
    // is whatever precedes them; a line cut before the tunables is rejected.
    size_t colon = line.find(" : ");
    if (colon == std::string_view::npos) {
      s.issues.add(line);
      return;
    }
    auto tok = split_ws(line.substr(0, colon));
    if (tok.size() < 6) {
      s.issues.add(line);
      return;
    }
    size_t n = tok.size();
    auto active = to_u64(tok[n - 5]), num = to_u64(tok[n - 4]), objsize = to_u64(tok[n - 3]);
    bool numbers_ok = to_u64(tok[n - 2]) && to_u64(tok[n - 1]);
    if (!active || !num || !objsize || !numbers_ok || *objsize == 0 || *active > *num ||
        *active > std::numeric_limits<uint64_t>::max() / *objsize) {
      s.issues.add(line);
      return;
    }
    SlabCache c;
    const char* name_end = tok[n - 6].data() + tok[n - 6].size();
    c.name = std::string(tok[0].data(), static_cast<size_t>(name_end - tok[0].data()));
    c.active_objs = *active;
    c.num_objs = *num;
    c.objsize = *objsize;
    c.bytes = *active * *objsize;
    s.caches.push_back(std::move(c));
  });
  if (!header) return Error{"slabinfo: no 'slabinfo - version:' header", 0};
  if (s.version.substr(0, 2) != "2.")
    return Error{"slabinfo: unsupported version '" + s.version + "' (expected 2.x)", 0};
  return s;
}

std::optional<uint64_t> kmalloc_size_of(std::string_view name) {
  if (consume(name, "size-")) {  // SLAB before v3.x: size-4096, size-4096(DMA)
    if (name.size() > 5 && name.substr(name.size() - 5) == "(DMA)") name.remove_suffix(5);
    return size_token(name);
  }
  consume(name, "dma-");
  if (!consume(name, "kmalloc-")) return std::nullopt;
  // v4.20 named the reclaimable caches kmalloc-reclaimable-N, v5.0 kmalloc-rcl-N.
  if (!consume(name, "cg-") && !consume(name, "rcl-") && !consume(name, "reclaimable-") && consume(name, "rnd-")) {
    // CONFIG_RANDOM_KMALLOC_CACHES: kmalloc-rnd-<nn>-<size>
    size_t dash = name.find('-');
    if (dash == std::string_view::npos || !to_u64(name.substr(0, dash))) return std::nullopt;
    name.remove_prefix(dash + 1);
  }
  return size_token(name);
}

std::optional<ProcessMemory> parse_smaps_rollup(std::string_view text, ParseIssues& issues) {
  ProcessMemory m;
  bool pss = false, rss = false;
  for_each_line(text, [&](std::string_view line) {
    if (trim(line).empty()) return;
    // The first line is the rollup's address range: "55d..-7ff.. ---p ... [rollup]".
    if (line.find("[rollup]") != std::string_view::npos) return;
    auto kv = parse_key_value(line);
    if (!kv || !kv->kib) {
      issues.add(line);
      return;
    }
    if (kv->key != "Pss" && kv->key != "Rss") return;
    auto b = kib_to_bytes(kv->value);
    if (!b) {
      issues.add(line);
      return;
    }
    (kv->key == "Pss" ? m.pss_bytes : m.rss_bytes) = *b;
    (kv->key == "Pss" ? pss : rss) = true;
  });
  if (!pss) {
    if (!trim(text).empty()) issues.add(trim(text).substr(0, trim(text).find('\n')));
    return std::nullopt;
  }
  (void)rss;  // Rss is informative only; 0 when a kernel leaves it out
  return m;
}

std::string parse_comm(std::string_view text) { return std::string(trim(text)); }

std::map<std::string, std::vector<std::string>> slab_aliases(
    const std::vector<std::pair<std::string, std::string>>& links) {
  std::map<std::string, std::vector<std::string>> by_target;
  for (const auto& [name, target] : links) by_target[target].push_back(name);
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [name, target] : links) {
    std::vector<std::string> others;
    for (const std::string& n : by_target[target])
      if (n != name) others.push_back(n);
    if (!others.empty()) out[name] = std::move(others);
  }
  return out;
}

Result<Meminfo> load_meminfo(const std::string& proc_dir) {
  auto text = read_text_file(proc_dir + "/meminfo");
  if (!text) return text.error();
  return parse_meminfo(*text);
}

Result<Slabinfo> load_slabinfo(const std::string& proc_dir) {
  auto text = read_text_file(proc_dir + "/slabinfo");
  if (!text) return text.error();
  return parse_slabinfo(*text);
}

std::map<std::string, std::vector<std::string>> load_slab_aliases(const std::string& sys_slab_dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir(sys_slab_dir.c_str()), closedir);
  if (!dir) return {};
  std::vector<std::pair<std::string, std::string>> links;
  while (dirent* e = readdir(dir.get())) {
    if (e->d_type != DT_LNK) continue;
    char target[256];
    ssize_t n = readlinkat(dirfd(dir.get()), e->d_name, target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    links.emplace_back(e->d_name, target);
  }
  return slab_aliases(links);
}

Result<ProcessScan> scan_processes(const std::string& proc_dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir(proc_dir.c_str()), closedir);
  if (!dir) return make_error("open " + proc_dir, errno);
  ProcessScan scan;
  while (dirent* e = readdir(dir.get())) {
    auto pid = to_u64(e->d_name);
    if (!pid || *pid == 0 || *pid > std::numeric_limits<uint32_t>::max()) continue;
    std::string base = proc_dir + "/" + e->d_name;
    auto rollup = read_text_file(base + "/smaps_rollup");
    if (!rollup) {
      int err = rollup.error().err;
      if (err == EACCES || err == EPERM)
        ++scan.unreadable;
      else if (access(base.c_str(), F_OK) != 0)
        ++scan.vanished;  // it exited: ENOENT, or ESRCH while reading
      else if (err == ESRCH)
        ++scan.kernel_threads;  // no mm: a kernel thread (or a zombie); older kernels give an empty file
      else if (err == ENOENT)
        ++scan.no_rollup;  // the process is there, the file is not: Linux < 4.14
      else
        ++scan.vanished;
      continue;
    }
    if (trim(*rollup).empty()) {
      ++scan.kernel_threads;
      continue;
    }
    auto mem = parse_smaps_rollup(*rollup, scan.issues);
    if (!mem) continue;
    auto comm = read_text_file(base + "/comm");
    if (!comm) {
      ++scan.vanished;
      continue;
    }
    scan.processes.push_back(ProcessSample{static_cast<uint32_t>(*pid), parse_comm(*comm), *mem});
  }
  return scan;
}

}  // namespace kleak
