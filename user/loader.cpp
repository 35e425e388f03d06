#include "loader.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <bit>
#include <optional>
#include <iterator>
#include <string>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "abi.h"
#include "kleak.skel.h"
#include "ksyms.h"
#include "log.h"

namespace kleak {
namespace {

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
  LogLevel mine = level == LIBBPF_WARN ? LogLevel::warn : level == LIBBPF_INFO ? LogLevel::info : LogLevel::debug;
  // libbpf's info lines are chatty (one per relocation): keep them for -vv.
  if (level == LIBBPF_INFO) mine = LogLevel::debug;
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

// One tracepoint kleak can attach: the program that handles it, the family
// it serves, and whether that family cannot work at all without it.
struct Hook {
  const char* subsystem;  // for messages and reports: "kmem/kmalloc"
  const char* name;       // tp_btf name and btf_trace_<name> typedef
  uint32_t family;        // enum kleak_family; kmalloc's hooks serve all of slab
  bpf_program* (*prog)(kleak_bpf*);
  bpf_link** (*link)(kleak_bpf*);
  bool required;          // the family is not traced without it
  bool legacy = false;    // an event of older kernels: loaded where it exists, not "missing" where not
};

#define KLEAK_HOOK(sub, tp, fam, prog, req, ...)                                                 \
  Hook {                                                                                          \
    sub, #tp, fam, [](kleak_bpf* s) { return s->progs.prog; }, [](kleak_bpf* s) { return &s->links.prog; }, req, \
        __VA_ARGS__                                                                               \
  }

const Hook kHooks[] = {
    KLEAK_HOOK("kmem", kmalloc, KLEAK_FAMILY_KMALLOC, kleak_kmalloc, true),
    KLEAK_HOOK("kmem", kfree, KLEAK_FAMILY_KMALLOC, kleak_kfree, true),
    KLEAK_HOOK("kmem", kmem_cache_alloc, KLEAK_FAMILY_KMEM_CACHE, kleak_kc_alloc, false),
    KLEAK_HOOK("kmem", kmem_cache_free, KLEAK_FAMILY_KMEM_CACHE, kleak_kc_free, false),
    // Before v6.1: the _node variants, and kmem_cache_alloc without a cache
    // pointer (kleak_kc_old; the loader picks it or kleak_kc_alloc by layout).
    KLEAK_HOOK("kmem", kmalloc_node, KLEAK_FAMILY_KMALLOC, kleak_kmalloc_n, false, true),
    KLEAK_HOOK("kmem", kmem_cache_alloc_node, KLEAK_FAMILY_KMEM_CACHE, kleak_kc_node, false, true),
    KLEAK_HOOK("kmem", kmem_cache_alloc, KLEAK_FAMILY_KMEM_CACHE, kleak_kc_old, false, true),
    KLEAK_HOOK("kmem", mm_page_alloc, KLEAK_FAMILY_PAGE, kleak_pg_alloc, true),
    KLEAK_HOOK("kmem", mm_page_free, KLEAK_FAMILY_PAGE, kleak_pg_free, true),
    KLEAK_HOOK("filemap", mm_filemap_add_to_page_cache, KLEAK_FAMILY_PAGE, kleak_pg_cache, false),
    KLEAK_HOOK("percpu", percpu_alloc_percpu, KLEAK_FAMILY_PERCPU, kleak_pcpu_alloc, true),
    KLEAK_HOOK("percpu", percpu_free_percpu, KLEAK_FAMILY_PERCPU, kleak_pcpu_free, true),
    KLEAK_HOOK("vmalloc", alloc_vmap_area, KLEAK_FAMILY_VMALLOC, kleak_va_alloc, true),
    KLEAK_HOOK("vmalloc", free_vmap_area_noflush, KLEAK_FAMILY_VMALLOC, kleak_va_free, true),
};
#undef KLEAK_HOOK

std::string hook_label(const Hook& h) { return std::string(h.subsystem) + "/" + h.name; }

// Functions through which a page allocation is not a leak candidate (see
// page_skip_of() in kleak.bpf.c): SLUB's slab pages (allocate_slab, or
// new_slab/alloc_slab_page where it is inlined), SLAB's before v6.8
// (kmem_getpages, cache_grow_begin), and kmallocs too large for a slab cache
// (___kmalloc_large_node since v6.10, __kmalloc_large_node and
// kmalloc_large in v6.1-v6.9, kmalloc_order before). Names a kernel lacks
// are skipped.
struct SkipFunction {
  const char* name;
  uint32_t kind;
};
const SkipFunction kPageSkipFunctions[] = {
    {"allocate_slab", KLEAK_PAGE_SKIP_SLAB},          {"new_slab", KLEAK_PAGE_SKIP_SLAB},
    {"alloc_slab_page", KLEAK_PAGE_SKIP_SLAB},        {"kmem_getpages", KLEAK_PAGE_SKIP_SLAB},
    {"cache_grow_begin", KLEAK_PAGE_SKIP_SLAB},       {"___kmalloc_large_node", KLEAK_PAGE_SKIP_KMALLOC},
    {"__kmalloc_large_node", KLEAK_PAGE_SKIP_KMALLOC}, {"kmalloc_large", KLEAK_PAGE_SKIP_KMALLOC},
    {"kmalloc_large_node", KLEAK_PAGE_SKIP_KMALLOC},  {"kmalloc_order", KLEAK_PAGE_SKIP_KMALLOC},
};
static_assert(std::size(kPageSkipFunctions) <= KLEAK_PAGE_SKIP_RANGES);

// True when kmem_cache_alloc's third argument is the struct kmem_cache *
// (v6.1+), false for the older kmem_alloc layout (bytes_req there).
bool kmem_cache_alloc_has_cache(const btf* b) {
  int id = btf__find_by_name_kind(b, "btf_trace_kmem_cache_alloc", BTF_KIND_TYPEDEF);
  if (id <= 0) return true;
  const btf_type* t = btf__type_by_id(b, btf__type_by_id(b, static_cast<uint32_t>(id))->type);  // pointer
  if (!t || !btf_is_ptr(t)) return true;
  t = btf__type_by_id(b, t->type);  // func proto: (void *, call_site, ptr, s or bytes_req, ...)
  if (!t || !btf_is_func_proto(t) || btf_vlen(t) < 4) return true;
  const btf_type* arg = btf__type_by_id(b, btf_params(t)[3].type);
  return arg && btf_is_ptr(arg);
}

// Whether this kernel's verifier lets a tp_btf program load an argument
// typed `const void *` directly (v6.16+, see bpf/compat.bpf.h): loads a
// three-instruction program on kmalloc that does `r0 = ctx[1]`. Any failure
// means no, and the programs copy such arguments with a helper instead.
bool direct_void_ptr_args_allowed() {
  int btf_id = libbpf_find_vmlinux_btf_id("kmalloc", BPF_TRACE_RAW_TP);
  if (btf_id <= 0) return false;
  const bpf_insn insns[] = {
      {.code = BPF_LDX | BPF_MEM | BPF_DW, .dst_reg = BPF_REG_0, .src_reg = BPF_REG_1, .off = 8, .imm = 0},
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .src_reg = 0, .off = 0, .imm = 0},
      {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
  };
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_RAW_TP,
              .attach_btf_id = static_cast<uint32_t>(btf_id));
  int fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, "kleak_probe", "GPL", insns, std::size(insns), &opts);
  if (fd < 0) return false;
  close(fd);
  return true;
}

// The value of enumerator `name` in any enum of `btf`, anonymous ones too.
std::optional<int64_t> enum_value(const btf* b, const char* name) {
  for (uint32_t id = 1; id < btf__type_cnt(b); ++id) {
    const btf_type* t = btf__type_by_id(b, id);
    if (!btf_is_enum(t)) continue;
    const struct btf_enum* e = btf_enum(t);
    for (uint16_t i = 0; i < btf_vlen(t); ++i)
      if (std::strcmp(btf__name_by_offset(b, e[i].name_off), name) == 0) return e[i].val;
  }
  return std::nullopt;
}

// A --btf FILE libbpf can use: raw BTF or an ELF file with a .BTF section
// (a vmlinux). libbpf's own messages for anything else are a warning line
// plus an error code of its own (LIBBPF_ERRNO__FORMAT, 4001): say in one
// line what is wrong instead.
Status check_btf_file(const std::string& path) {
  const std::string what = "--btf " + path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(what, errno);
  struct stat st;
  unsigned char magic[4] = {};
  bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  ssize_t n = regular ? pread(fd, magic, sizeof(magic), 0) : 0;
  close(fd);
  if (!regular) return make_error(what + ": not a regular file", 0);
  const bool raw = n >= 2 && ((magic[0] == 0x9f && magic[1] == 0xeb) || (magic[0] == 0xeb && magic[1] == 0x9f));
  const unsigned char elf_magic[4] = {0x7f, 'E', 'L', 'F'};
  const bool elf = n == 4 && std::memcmp(magic, elf_magic, 4) == 0;
  if (!raw && !elf) return make_error(what + ": not BTF (neither raw BTF nor an ELF file)", 0);
  libbpf_print_fn_t print = libbpf_set_print(nullptr);
  btf* b = btf__parse(path.c_str(), nullptr);
  int err = b ? 0 : errno;
  libbpf_set_print(print);
  btf__free(b);
  if (err == 0) return {};
  if (elf && err == ENOENT) return make_error(what + ": an ELF file without a .BTF section", 0);
  return make_error(what + ": corrupt BTF", err >= 4000 ? EINVAL : err);  // libbpf's own codes
}

}  // namespace

void install_libbpf_logger() { libbpf_set_print(libbpf_print); }

void Loader::SkelDeleter::operator()(kleak_bpf* skel) const { kleak_bpf__destroy(skel); }

Loader::Loader(LoaderConfig config) : config_(std::move(config)) {}
Loader::~Loader() = default;

Result<std::unique_ptr<Loader>> Loader::create(const LoaderConfig& config) {
  std::unique_ptr<Loader> l(new Loader(config));
  if (auto s = l->open(); !s) return s.error();
  if (auto s = l->probe_and_configure(); !s) return s.error();
  if (auto s = l->load(); !s) return s.error();
  if (auto s = l->attach(); !s) return s.error();
  return l;
}

Status Loader::open() {
  const char* btf = "/sys/kernel/btf/vmlinux";
  if (!config_.btf_path.empty()) {
    btf = config_.btf_path.c_str();
  }
  if (!config_.btf_path.empty()) {
    if (auto ok = check_btf_file(config_.btf_path); !ok) return ok.error();
  } else if (struct stat st; stat(btf, &st) != 0) {
    return make_error("kernel BTF not found at /sys/kernel/btf/vmlinux (needs CONFIG_DEBUG_INFO_BTF=y; "
                      "or pass --btf FILE)",
                      errno);
  }
  LIBBPF_OPTS(bpf_object_open_opts, opts);
  if (!config_.btf_path.empty()) opts.btf_custom_path = config_.btf_path.c_str();
  kleak_bpf* skel = kleak_bpf__open_opts(&opts);
  if (!skel) return make_error("open BPF object", errno);
  skel_.reset(skel);
  return {};
}

Status Loader::probe_and_configure() {
  btf* vmlinux = config_.btf_path.empty() ? btf__load_vmlinux_btf() : btf__parse(config_.btf_path.c_str(), nullptr);
  if (!vmlinux) {
    return make_error(config_.btf_path.empty() ? std::string("load kernel BTF") : "load BTF " + config_.btf_path,
                      errno);
  }
  for (const Hook& h : kHooks) {
    bpf_program* prog = h.prog(skel_.get());
    if (!config_.families.has(h.family)) {
      bpf_program__set_autoload(prog, false);  // not asked for: never loaded, never run
      continue;
    }
    std::string type = std::string("btf_trace_") + h.name;
    bool present = btf__find_by_name_kind(vmlinux, type.c_str(), BTF_KIND_TYPEDEF) > 0;
    if (present && std::strcmp(h.name, "kmem_cache_alloc") == 0) {
      // Two programs for one event: the one for this kernel's layout.
      bool old = !kmem_cache_alloc_has_cache(vmlinux);
      if (old == h.legacy) continue;
      bpf_program__set_autoload(prog, false);
      continue;
    }
    if (present) continue;
    bpf_program__set_autoload(prog, false);
    if (h.legacy) continue;
    missing_.push_back(hook_label(h));
    if (h.required && (h.family == KLEAK_FAMILY_KMALLOC || h.family == KLEAK_FAMILY_KMEM_CACHE)) {
      btf__free(vmlinux);
      return make_error("this kernel has no " + hook_label(h) + " tracepoint in its BTF: kleak cannot track kmalloc here",
                        ENOENT);
    }
    log_warn("kernel has no {} tracepoint: {}", hook_label(h),
             h.required ? std::string("the ") + family_name(h.family) + " family is not traced" : "not tracing it");
  }
  // A family whose required hooks are missing is not traced at all.
  for (const Hook& h : kHooks) {
    if (!h.required || !config_.families.has(h.family) || bpf_program__autoload(h.prog(skel_.get()))) continue;
    for (const Hook& other : kHooks)
      if (other.family == h.family) bpf_program__set_autoload(other.prog(skel_.get()), false);
  }
  // __GFP_ACCOUNT's bit moved when gfp bits became an (anonymous) enum:
  // read ___GFP_ACCOUNT_BIT from BTF where it exists.
  if (auto bit = enum_value(vmlinux, "___GFP_ACCOUNT_BIT")) gfp_account_ = 1ull << *bit;
  // Likewise __GFP_MOVABLE (0x08 before v6.10, when the bits became enums).
  uint64_t gfp_movable = 0x08;
  if (auto bit = enum_value(vmlinux, "___GFP_MOVABLE_BIT")) gfp_movable = 1ull << *bit;
  btf__free(vmlinux);

  auto* ro = skel_->rodata;
  ro->gfp_account = gfp_account_;
  // Only against the running kernel's own BTF (a --btf file may describe another).
  ro->direct_ptr_args = config_.btf_path.empty() && direct_void_ptr_args_allowed();
  ro->self_tgid = config_.self_tgid;
  ro->target_tgid = config_.target_tgid;
  ro->follow_tasks = !config_.follow_tgids.empty();
  ro->kmalloc_off = config_.kmalloc_off;
  ro->kmem_cache_off = config_.kmem_cache_off;
  ro->kmalloc_type = config_.kmalloc_type;
  if (config_.cache_name.size() >= sizeof(ro->cache_name)) return make_error("--cache name too long", ENAMETOOLONG);
  std::copy(config_.cache_name.begin(), config_.cache_name.end(), const_cast<char*>(ro->cache_name));
  if (config_.follow_tgids.size() > KLEAK_MAX_TASKS) return make_error("too many processes to follow", E2BIG);
  bpf_program__set_autoload(skel_->progs.kleak_fork, ro->follow_tasks);
  bpf_program__set_autoload(skel_->progs.kleak_exit, ro->follow_tasks);
  ro->stack_sample_every = config_.stack_sample_every;
  // Per-CPU maps' memory scales with it (the stack cache), and the page
  // family reads it.
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return make_error("count possible CPUs", ncpus);
  ro->nr_possible_cpus = static_cast<uint32_t>(ncpus);
  if (auto st = configure_stack_cache(); !st) return st;
  ro->min_size = config_.min_size_bytes;
  ro->max_size = config_.max_size_bytes;
  if (int err = bpf_map__set_max_entries(skel_->maps.kleak_live, config_.families.slab ? config_.max_allocs : 1); err)
    return make_error("size map kleak_live", err);
  if (auto st = configure_families(gfp_movable); !st) return st;
  if (int err = bpf_map__set_max_entries(skel_->maps.kleak_stacks, config_.stack_storage_size); err)
    return make_error("size map kleak_stacks", err);
  return {};
}

// The verified stack cache (bpf/stack_cache.bpf.h): a per-CPU map of
// KLEAK_SC_SLOTS entries as compiled, fewer where that would pass 4 MiB over
// all CPUs, and 4 (one set) when nothing uses it.
Status Loader::configure_stack_cache() {
  constexpr uint64_t kBudget = 4ull << 20;
  constexpr uint32_t kMinSlots = 64;
  auto* ro = skel_->rodata;
  bpf_map* map = skel_->maps.kleak_sc;
  bool used = config_.stack_cache != KLEAK_SC_OFF && config_.stack_sample_every <= 1;
  ro->stack_cache_mode = used ? config_.stack_cache : uint32_t{KLEAK_SC_OFF};
  uint64_t fit = kBudget / (uint64_t{ro->nr_possible_cpus} * bpf_map__value_size(map));
  uint32_t slots = std::bit_floor(static_cast<uint32_t>(std::min<uint64_t>(bpf_map__max_entries(map), fit)));
  slots = used ? std::max(slots, kMinSlots) : KLEAK_SC_WAYS;
  ro->sc_sets_mask = slots / KLEAK_SC_WAYS - 1;
  if (int err = bpf_map__set_max_entries(map, slots); err) return make_error("size map kleak_sc", err);
  return {};
}

Status Loader::configure_families(uint64_t gfp_movable) {
  auto* ro = skel_->rodata;
  ro->gfp_movable = gfp_movable;
  ro->page_shift = static_cast<uint32_t>(__builtin_ctzl(static_cast<unsigned long>(sysconf(_SC_PAGESIZE))));
  for (uint32_t fam : kExtraFamilies) {
    // A family that is off keeps a one-entry map: preallocated maps cost
    // their full size in kernel memory.
    uint32_t size = config_.families.has(fam) ? config_.max_allocs : 1;
    if (int err = bpf_map__set_max_entries(family_map(fam), size); err)
      return make_error(std::string("size map ") + bpf_map__name(family_map(fam)), err);
  }
  if (!config_.families.page) return {};
  const Ksyms* ksyms = config_.ksyms;
  Ksyms own;
  if (!ksyms) {
    auto loaded = Ksyms::load();
    if (loaded) own = std::move(*loaded);
    ksyms = &own;
  }
  size_t n = 0;
  for (const SkipFunction& f : kPageSkipFunctions) {
    auto range = ksyms->function_range(f.name);
    if (!range) continue;
    ro->page_skip_lo[n] = range->first;
    ro->page_skip_hi[n] = range->second;
    ro->page_skip_kind[n] = f.kind;
    ++n;
  }
  if (n == 0)
    log_warn("--family page: no slab allocator function in /proc/kallsyms: pages backing slabs and large "
             "kmallocs are reported as pages too");
  return {};
}

bpf_map* Loader::family_map(uint32_t family) const {
  switch (family) {
    case KLEAK_FAMILY_PAGE: return skel_->maps.kleak_pages;
    case KLEAK_FAMILY_PERCPU: return skel_->maps.kleak_percpu;
    case KLEAK_FAMILY_VMALLOC: return skel_->maps.kleak_vmalloc;
    default: return skel_->maps.kleak_live;
  }
}

Status Loader::load() {
  if (int err = kleak_bpf__load(skel_.get()); err) {
    std::string hint = log_enabled(LogLevel::debug) ? "" : " (run with -vv for the verifier log)";
    return make_error("load BPF programs" + hint, err);
  }
  return {};
}

Status Loader::attach() {
  // Seed the followed set before any program runs: the processes are
  // waiting to start, so none of their allocations is missed.
  for (uint32_t tgid : config_.follow_tgids) {
    uint32_t one = 1;
    if (bpf_map_update_elem(tasks_fd(), &tgid, &one, BPF_ANY) != 0)
      return make_error("follow process " + std::to_string(tgid), errno);
  }
  if (bpf_program__autoload(skel_->progs.kleak_fork)) {
    bpf_link* link = bpf_program__attach(skel_->progs.kleak_fork);
    if (!link) return make_error("attach sched/sched_process_fork", errno);
    skel_->links.kleak_fork = link;
    attached_.push_back("sched/sched_process_fork");
  }
  if (bpf_program__autoload(skel_->progs.kleak_exit)) {
    bpf_link* link = bpf_program__attach(skel_->progs.kleak_exit);
    if (!link) return make_error("attach sched/sched_process_exit", errno);
    skel_->links.kleak_exit = link;
    attached_.push_back("sched/sched_process_exit");
  }
  for (const Hook& h : kHooks) {
    bpf_program* prog = h.prog(skel_.get());
    if (!bpf_program__autoload(prog)) continue;
    bpf_link* link = bpf_program__attach(prog);
    if (!link) return make_error("attach " + hook_label(h), errno);
    *h.link(skel_.get()) = link;
    attached_.push_back(hook_label(h));
  }
  for (uint32_t fam : kExtraFamilies)
    if (config_.families.has(fam) && bpf_program__autoload(family_alloc_prog(fam))) traced_.push_back(fam);
  return {};
}

bpf_program* Loader::family_alloc_prog(uint32_t family) const {
  for (const Hook& h : kHooks)
    if (h.family == family && h.required) return h.prog(skel_.get());
  return nullptr;
}

std::vector<std::pair<std::string, int>> Loader::programs() const {
  std::vector<std::pair<std::string, int>> progs;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    if (bpf_program__fd(prog) >= 0 && prog != skel_->progs.kleak_peek_run)
      progs.emplace_back(bpf_program__name(prog), bpf_program__fd(prog));
  }
  return progs;
}

int Loader::map_fd(const std::string& name) const {
  const bpf_map* map = bpf_object__find_map_by_name(skel_->obj, name.c_str());
  return map ? bpf_map__fd(map) : -1;
}

int Loader::prog_fd(const std::string& name) const {
  const bpf_program* prog = bpf_object__find_program_by_name(skel_->obj, name.c_str());
  return prog ? bpf_program__fd(prog) : -1;
}

const bpf_object_skeleton& Loader::skeleton() const { return *skel_->skeleton; }

}  // namespace kleak
