#include "probe/uprobe_loader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fmt/format.h>

#include "model/abi.h"
#include "probe/bpf_load.h"
#include "kleak_user.skel.h"
#include "util/log.h"
#include "probe/probe_site.h"
#include "symbols/usyms.h"

namespace kleak {
namespace {

bool is_mmap_family(uint32_t fn) {
  return fn == KLEAK_UFN_MMAP || fn == KLEAK_UFN_MREMAP || fn == KLEAK_UFN_MUNMAP;
}

// Entry-only functions: they act at entry and return nothing to record.
bool entry_only(uint32_t fn) { return fn == KLEAK_UFN_FREE || fn == KLEAK_UFN_MUNMAP; }

std::string base_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

const std::vector<std::string>& allocator_functions() {
  static const std::vector<std::string> names = {
      "malloc",  "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc", "memalign",
      "valloc",  "pvalloc", "mmap",   "mremap",       "free",           "munmap"};
  static_assert(KLEAK_UFN_MAX == 13, "allocator_functions() follows enum kleak_user_fn");
  return names;
}

std::string mapped_libc(uint32_t pid) {
  UserSymbolizer s;
  if (!s.refresh(pid)) return {};
  for (const MapEntry& m : s.maps(pid)) {
    std::string b = base_name(m.path);
    if (b.rfind("libc.so", 0) == 0 || b.rfind("libc-2.", 0) == 0) return m.path;
  }
  return {};
}

void UserLoader::SkelDeleter::operator()(kleak_user_bpf* skel) const { kleak_user_bpf__destroy(skel); }
void UserLoader::LinkDeleter::operator()(bpf_link* link) const { bpf_link__destroy(link); }

UserLoader::UserLoader(UserLoaderConfig config) : config_(std::move(config)) {}
UserLoader::~UserLoader() {
  // Before the skeleton that owns the programs. Each uprobe's detach waits
  // for an RCU grace period, serialized in the kernel (about 0.1 s each on
  // this 6.18 machine, also from several threads at once): 2.3 s for one
  // process's 23 links. A uprobe_multi link (v6.6) would make it one; this
  // libbpf (1.1) has no API for it.
  links_.clear();
}

Status user_tracer_supported() {
  // One uprobe program serves every allocator function, told apart by its
  // attach cookie (v5.15, commit 82e6b1eee6a8).
  if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE, BPF_FUNC_get_attach_cookie, nullptr) > 0) return {};
  return make_error("this kernel has no bpf_get_attach_cookie helper (v5.15+), which kleak user needs", 0);
}

Result<std::unique_ptr<UserLoader>> UserLoader::create(const UserLoaderConfig& config) {
  if (auto st = user_tracer_supported(); !st) return Error{st.error().message, EOPNOTSUPP};
  std::unique_ptr<UserLoader> l(new UserLoader(config));
  if (!l->config_.refuse_parts) {
    auto refuse = parts_to_refuse();
    if (!refuse) return refuse.error();
    l->config_.refuse_parts = *refuse;
  }
  if (auto s = l->load(); !s) return s.error();
  return l;
}

Status UserLoader::open(uint32_t dropped) {
  skel_.reset();
  kleak_user_bpf* skel = kleak_user_bpf__open();
  if (!skel) return make_error("open BPF object kleak_user", errno);
  skel_.reset(skel);
  skel_->rodata->refuse_parts = *config_.refuse_parts;
  skel_->rodata->min_size = config_.min_size_bytes;
  skel_->rodata->max_size = config_.max_size_bytes;
  skel_->rodata->stack_sample_every = config_.stack_sample_every;
  bpf_program__set_autoload(skel_->progs.kleak_u_exec, !(dropped & KLEAK_PART_EXEC_FOLLOWER));
  if (int err = bpf_map__set_max_entries(skel_->maps.kleak_ulive, config_.max_allocs); err)
    return make_error("size map kleak_ulive", err);
  if (int err = bpf_map__set_max_entries(skel_->maps.kleak_ustacks, config_.stack_storage_size); err)
    return make_error("size map kleak_ustacks", err);
  return {};
}

// In tiers (bpf_load.h): the exec follower may be dropped, the uprobe
// programs may not.
Status UserLoader::load() {
  TierPlan plan;
  plan.what = fmt::format("kleak_user.bpf.c: {} stacks",
                          config_.stack_sample_every <= 1 ? "exact" : fmt::format("1-in-{}", config_.stack_sample_every));
  plan.attempt = [this](uint32_t dropped) -> Result<std::optional<Refusal>> {
    if (auto st = open(dropped); !st) return st.error();
    return load_watched(skel_->obj, [this] { return kleak_user_bpf__load(skel_.get()); });
  };
  plan.causes = [this](const std::string& program) {
    return program == bpf_program__name(skel_->progs.kleak_u_exec) ? std::vector<uint32_t>{KLEAK_PART_EXEC_FOLLOWER}
                                                                     : std::vector<uint32_t>{};
  };
  auto tiers = load_in_tiers(plan);
  if (!tiers) return tiers.error();
  dropped_ = tiers->dropped;
  degraded_ = tiers->degraded;
  if (dropped_ & KLEAK_PART_EXEC_FOLLOWER) return {};
  // exec tracking is a tracepoint: one link for every process.
  bpf_link* link = bpf_program__attach(skel_->progs.kleak_u_exec);
  if (!link) {
    dropped_ |= KLEAK_PART_EXEC_FOLLOWER;
    degraded_.push_back({part_name(KLEAK_PART_EXEC_FOLLOWER), make_error("attach sched/sched_process_exec", errno).message});
    log_warn("{} dropped: {}", degraded_.back().part, degraded_.back().reason);
    return {};
  }
  links_.emplace_back(link);
  return {};
}

Status UserLoader::attach_one(uint32_t slot, uint32_t pid, const std::string& path, uint64_t offset, uint32_t fn) {
  const std::string& name = allocator_functions()[fn];
  LIBBPF_OPTS(bpf_uprobe_opts, enter);
  enter.bpf_cookie = KLEAK_USER_COOKIE(slot, fn);
  bpf_link* l = bpf_program__attach_uprobe_opts(skel_->progs.kleak_u_enter, static_cast<pid_t>(pid), path.c_str(),
                                                offset, &enter);
  if (!l) return make_error(fmt::format("attach uprobe {}:{} for pid {}", path, name, pid), errno);
  links_.emplace_back(l);
  if (entry_only(fn)) return {};
  LIBBPF_OPTS(bpf_uprobe_opts, exit);
  exit.bpf_cookie = KLEAK_USER_COOKIE(slot, fn);
  exit.retprobe = true;
  l = bpf_program__attach_uprobe_opts(skel_->progs.kleak_u_exit, static_cast<pid_t>(pid), path.c_str(), offset,
                                      &exit);
  if (!l) return make_error(fmt::format("attach uretprobe {}:{} for pid {}", path, name, pid), errno);
  links_.emplace_back(l);
  return {};
}

Status UserLoader::attach(uint32_t slot, uint32_t pid, const AllocatorLibs& libs, const std::string& prefix) {
  if (slot >= KLEAK_USER_MAX_PIDS) return make_error("too many processes", E2BIG);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.kleak_uprocs), &pid, &slot, BPF_ANY) != 0)
    return make_error(fmt::format("register pid {}", pid), errno);
  // Open each library through the process's root (the path is as it sees it).
  std::map<std::string, std::unique_ptr<ElfFile>> files;
  auto open_lib = [&](const std::string& p) -> Result<const ElfFile*> {
    if (auto it = files.find(p); it != files.end()) return it->second.get();
    auto f = ElfFile::open(fmt::format("/proc/{}/root{}", pid, p));
    if (!f) f = ElfFile::open(p);
    if (!f) return f.error();
    return (files[p] = std::move(*f)).get();
  };
  // Functions at one offset (glibc's memalign and aligned_alloc are one
  // function) are probed once, or each call would enter twice.
  std::map<std::pair<std::string, uint64_t>, size_t> seen;  // (path, offset) -> index in attached_
  for (uint32_t fn = 0; fn < KLEAK_UFN_MAX; ++fn) {
    const std::string& path = is_mmap_family(fn) && !libs.mmap.empty() ? libs.mmap : libs.alloc;
    const std::string name = (is_mmap_family(fn) ? std::string() : prefix) + allocator_functions()[fn];
    auto f = open_lib(path);
    if (!f) return make_error(fmt::format("read symbols of {}", path), f.error().err);
    std::optional<uint64_t> vaddr = (*f)->symbol_vaddr(name);
    uint64_t off = 0;
    if (vaddr) off = (*f)->file_offset(*vaddr).value_or(0);
    std::string label = base_name(path) + ":" + name;
    ProbeSite site;
    if (off != 0) {
      std::vector<uint8_t> code = (*f)->function_code(*vaddr);
      site = choose_probe_site(code.data(), code.size(), *vaddr);
      if (site.offset != 0) {
        label += fmt::format("+{}", site.offset);
        if (slot == 0)
          log_info("{}: probed at +{} ({}, emulated) instead of its entry ({}, single-stepped)", name,
                   site.offset, site.insn, site.entry_insn);
      } else if (!site.emulated && slot == 0) {
        log_info("{}: probed at its entry ({}, single-stepped: each hit costs a second trap)", name,
                 site.entry_insn.empty() ? "not decoded" : site.entry_insn);
      }
    }
    if (off == 0) {
      if (fn == KLEAK_UFN_MALLOC || fn == KLEAK_UFN_FREE)
        return make_error(fmt::format("{} has no function {}: is it the allocator? (--obj, --symbols-prefix)", path,
                                      name),
                          ENOENT);
      if (slot == 0) {
        missing_.push_back(label);
        log_warn("{} has no {}: not traced", path, name);
      }
      continue;
    }
    auto key = std::make_pair(path, off);
    if (auto it = seen.find(key); it != seen.end()) {
      if (slot == 0) attached_[it->second] += "=" + name;
      continue;
    }
    if (slot == 0 && !site.emulated) ++single_stepped_;
    if (auto st = attach_one(slot, pid, fmt::format("/proc/{}/root{}", pid, path), off + site.offset, fn); !st)
      return st;
    seen[key] = attached_.size();
    if (slot == 0) attached_.push_back(label);
  }
  return {};
}

int UserLoader::map_fd(const std::string& name) const {
  static const std::pair<std::string_view, const char*> kRoles[] = {
      {"kleak_live", "kleak_ulive"},
      {"kleak_stacks", "kleak_ustacks"},
      {"kleak_counters", "kleak_ucounts"},
      {"kleak_sites", "kleak_usites"},  // the sampled mode's call-site cache
  };
  const char* own = name.c_str();
  for (const auto& [role, map] : kRoles)
    if (name == role) own = map;
  const bpf_map* map = bpf_object__find_map_by_name(skel_->obj, own);
  return map ? bpf_map__fd(map) : -1;
}

int UserLoader::prog_fd(const std::string& name) const {
  const bpf_program* prog = bpf_object__find_program_by_name(skel_->obj, name.c_str());
  return prog ? bpf_program__fd(prog) : -1;
}

Result<std::vector<uint64_t>> read_user_counters(int fd) {
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return make_error("count possible CPUs", ncpus);
  std::vector<kleak_user_counters> per_cpu(static_cast<size_t>(ncpus));
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(fd, &zero, per_cpu.data()) != 0) return make_error("read kleak_uextra", errno);
  std::vector<uint64_t> sum(KLEAK_UCNT_MAX, 0);
  for (const auto& pc : per_cpu)
    for (int i = 0; i < KLEAK_UCNT_MAX; ++i) sum[static_cast<size_t>(i)] += pc.v[i];
  return sum;
}

Result<std::vector<uint64_t>> read_exec_times(int fd) {
  std::vector<uint64_t> out(KLEAK_USER_MAX_PIDS, 0);
  for (uint32_t i = 0; i < KLEAK_USER_MAX_PIDS; ++i)
    if (bpf_map_lookup_elem(fd, &i, &out[i]) != 0) return make_error("read kleak_uexec", errno);
  return out;
}

}  // namespace kleak
