#include "probe/loader.h"

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

#include "model/abi.h"
#include "kleak.skel.h"
#include "kleak_sc.skel.h"
#include "symbols/ksyms.h"
#include "util/fd.h"
#include "util/log.h"

namespace kleak {
namespace {

// One tracepoint kleak can attach: the program that handles it, the family
// it serves, the part it belongs to, and whether that family cannot work at
// all without it.
struct Hook {
  const char* subsystem;  // for messages and reports: "kmem/kmalloc"
  const char* name;       // tp_btf name and btf_trace_<name> typedef
  uint32_t family;        // enum kleak_family; kmalloc's hooks serve all of slab
  uint32_t part;          // enum kleak_part: what is dropped when it is refused
  const char* program;    // in bpf/kleak.bpf.c
  bool required;          // the family is not traced without it
  bool alloc;             // records allocations: captures stacks (the stack cache's user)
  bool void_ptr;          // reads a `const void *` argument (direct_ptr_args)
  bool legacy = false;    // an event of older kernels: loaded where it exists, not "missing" where not
  bool backup = false;    // a free program's backup (kleak_*_b, bpf/kleak.bpf.c): not listed as attached
};

const Hook kHooks[] = {
    {"kmem", "kmalloc", KLEAK_FAMILY_KMALLOC, KLEAK_PART_CORE, "kleak_kmalloc", true, true, true},
    {"kmem", "kfree", KLEAK_FAMILY_KMALLOC, KLEAK_PART_CORE, "kleak_kfree", true, false, true},
    {"kmem", "kmem_cache_alloc", KLEAK_FAMILY_KMEM_CACHE, KLEAK_PART_KMEM_CACHE, "kleak_kc_alloc", false, true, true},
    {"kmem", "kmem_cache_free", KLEAK_FAMILY_KMEM_CACHE, KLEAK_PART_KMEM_CACHE, "kleak_kc_free", false, false, true},
    // Before v6.1: the _node variants, and kmem_cache_alloc without a cache
    // pointer (kleak_kc_old; the loader picks it or kleak_kc_alloc by layout).
    {"kmem", "kmalloc_node", KLEAK_FAMILY_KMALLOC, KLEAK_PART_CORE, "kleak_kmalloc_n", false, true, true, true},
    {"kmem", "kmem_cache_alloc_node", KLEAK_FAMILY_KMEM_CACHE, KLEAK_PART_KMEM_CACHE, "kleak_kc_node", false, true, true,
     true},
    {"kmem", "kmem_cache_alloc", KLEAK_FAMILY_KMEM_CACHE, KLEAK_PART_KMEM_CACHE, "kleak_kc_old", false, true, true,
     true},
    {"kmem", "mm_page_alloc", KLEAK_FAMILY_PAGE, KLEAK_PART_PAGE, "kleak_pg_alloc", true, true, false},
    {"kmem", "mm_page_free", KLEAK_FAMILY_PAGE, KLEAK_PART_PAGE, "kleak_pg_free", true, false, false},
    {"filemap", "mm_filemap_add_to_page_cache", KLEAK_FAMILY_PAGE, KLEAK_PART_PAGE, "kleak_pg_cache", false, false,
     false},
    {"percpu", "percpu_alloc_percpu", KLEAK_FAMILY_PERCPU, KLEAK_PART_PERCPU, "kleak_pc_alloc", true, true, true},
    {"percpu", "percpu_free_percpu", KLEAK_FAMILY_PERCPU, KLEAK_PART_PERCPU, "kleak_pc_free", true, false, true},
    {"vmalloc", "alloc_vmap_area", KLEAK_FAMILY_VMALLOC, KLEAK_PART_VMALLOC, "kleak_va_alloc", true, true, false},
    {"vmalloc", "free_vmap_area_noflush", KLEAK_FAMILY_VMALLOC, KLEAK_PART_VMALLOC, "kleak_va_free", true, false,
     false},
    // The free programs' backups: frees the kernel skips for the program
    // (nested in it on one CPU) are done by these.
    {"kmem", "kfree", KLEAK_FAMILY_KMALLOC, KLEAK_PART_FREE_BACKUP, "kleak_kfree_b", false, false, true, false, true},
    {"kmem", "kmem_cache_free", KLEAK_FAMILY_KMEM_CACHE, KLEAK_PART_FREE_BACKUP, "kleak_kc_free_b", false, false, true,
     false, true},
    {"kmem", "mm_page_free", KLEAK_FAMILY_PAGE, KLEAK_PART_FREE_BACKUP, "kleak_pg_free_b", false, false, false, false,
     true},
    {"percpu", "percpu_free_percpu", KLEAK_FAMILY_PERCPU, KLEAK_PART_FREE_BACKUP, "kleak_pc_free_b", false, false,
     true, false, true},
    {"vmalloc", "free_vmap_area_noflush", KLEAK_FAMILY_VMALLOC, KLEAK_PART_FREE_BACKUP, "kleak_va_free_b", false,
     false, false, false, true},
};

std::string hook_label(const Hook& h) { return std::string(h.subsystem) + "/" + h.name; }

// Programs beyond the allocator hooks that follow what else frees memory or
// names it (bpf/kleak.bpf.c), by part: listed as attached under `label`.
struct Follower {
  uint32_t part;
  const char* program;
  const char* label;
};
const Follower kFollowers[] = {
    {KLEAK_PART_BULK_FREE, "kleak_free_bulk", "fentry/kmem_cache_free_bulk"},
    {KLEAK_PART_BULK_FREE, "kleak_rcu_sheaf", "fexit/__kfree_rcu_sheaf"},
    {KLEAK_PART_MODULE_FOLLOWER, "kleak_mod_load", "module/module_load"},
    {KLEAK_PART_MODULE_FOLLOWER, "kleak_mod_free", "module/module_free"},
};

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
struct BtfDeleter {
  void operator()(btf* b) const { btf__free(b); }
};
using BtfPtr = std::unique_ptr<btf, BtfDeleter>;

Status check_btf_file(const std::string& path) {
  const std::string what = "--btf " + path;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return make_error(what, errno);
  struct stat st;
  unsigned char magic[4] = {};
  bool regular = fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode);
  ssize_t n = regular ? pread(fd.get(), magic, sizeof(magic), 0) : 0;
  if (!regular) return make_error(what + ": not a regular file", 0);
  const bool raw = n >= 2 && ((magic[0] == 0x9f && magic[1] == 0xeb) || (magic[0] == 0xeb && magic[1] == 0x9f));
  const unsigned char elf_magic[4] = {0x7f, 'E', 'L', 'F'};
  const bool elf = n == 4 && std::memcmp(magic, elf_magic, 4) == 0;
  if (!raw && !elf) return make_error(what + ": not BTF (neither raw BTF nor an ELF file)", 0);
  libbpf_print_fn_t print = libbpf_set_print(nullptr);
  BtfPtr b(btf__parse(path.c_str(), nullptr));
  int err = b ? 0 : errno;
  libbpf_set_print(print);
  if (err == 0) return {};
  if (elf && err == ENOENT) return make_error(what + ": an ELF file without a .BTF section", 0);
  return make_error(what + ": corrupt BTF", err >= 4000 ? EINVAL : err);  // libbpf's own codes
}

}  // namespace

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
  return Fd(bpf_prog_load(BPF_PROG_TYPE_TRACING, "kleak_probe", "GPL", insns, std::size(insns), &opts)).valid();
}

// Why this kernel refuses an fentry program on `function` (the bulk-free
// follower's program type), or empty when it loads one: `r0 = 0; exit`.
// Some kernels forbid the type outright (seen on a 6.18 build with
// integrity lockdown: EPERM before verification, no verifier log).
std::string fentry_refusal(const char* function) {
  int btf_id = libbpf_find_vmlinux_btf_id(function, BPF_TRACE_FENTRY);
  if (btf_id <= 0) return fmt::format("{} is not in the kernel's BTF", function);
  const bpf_insn insns[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .src_reg = 0, .off = 0, .imm = 0},
      {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
  };
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_FENTRY,
              .attach_btf_id = static_cast<uint32_t>(btf_id));
  Fd fd(bpf_prog_load(BPF_PROG_TYPE_TRACING, "kleak_probe", "GPL", insns, std::size(insns), &opts));
  if (fd.valid()) return {};
  const int err = errno;
  return fmt::format("this kernel refuses fentry programs ({}, {}): frees without a per-object tracepoint are seen "
                     "only when their address is reused",
                     std::strerror(err), err);
}

// What the object's .rodata gets: every knob but the stack cache's, which
// only kleak_sc.bpf.o has.
struct Rodata {
  uint32_t refuse_parts = 0;
  bool direct_ptr_args = false;
  uint32_t self_tgid = 0, target_tgid = 0;
  bool follow_tasks = false;
  uint64_t min_size = 0, max_size = ~0ull;
  bool kmalloc_off = false, kmem_cache_off = false;
  int kmalloc_type = -1;
  uint64_t gfp_account = 0, gfp_movable = 0;
  std::string cache_name;
  uint32_t stack_sample_every = 1;
  uint32_t page_shift = 12;
  uint32_t nr_possible_cpus = 1;
  std::vector<std::array<uint64_t, 3>> page_skip;  // lo, hi, kind
  uint32_t stack_cache_mode = KLEAK_SC_OFF;        // kleak_sc.bpf.o only
  uint32_t sc_sets_mask = 0;
};

// One open skeleton of bpf/kleak.bpf.c's two objects (kleak.bpf.o,
// kleak_sc.bpf.o): the same programs and maps, the skeleton types differ.
class LoadedObject {
 public:
  virtual ~LoadedObject() = default;
  virtual bpf_object* obj() const = 0;
  virtual const bpf_object_skeleton* skeleton() const = 0;
  virtual bool has_stack_cache() const = 0;
  virtual void set_rodata(const Rodata& r) = 0;
  virtual int load() = 0;
};

template <typename Skel>
class SkelObject final : public LoadedObject {
 public:
  explicit SkelObject(Skel* s) : s_(s) {}
  ~SkelObject() override { Skel::destroy(s_); }
  bpf_object* obj() const override { return s_->obj; }
  const bpf_object_skeleton* skeleton() const override { return s_->skeleton; }
  bool has_stack_cache() const override { return requires(Skel * s) { s->rodata->stack_cache_mode; }; }
  int load() override { return Skel::load(s_); }
  void set_rodata(const Rodata& r) override {
    auto* ro = s_->rodata;
    ro->refuse_parts = r.refuse_parts;
    ro->direct_ptr_args = r.direct_ptr_args;
    ro->self_tgid = r.self_tgid;
    ro->target_tgid = r.target_tgid;
    ro->follow_tasks = r.follow_tasks;
    ro->min_size = r.min_size;
    ro->max_size = r.max_size;
    ro->kmalloc_off = r.kmalloc_off;
    ro->kmem_cache_off = r.kmem_cache_off;
    ro->kmalloc_type = r.kmalloc_type;
    ro->gfp_account = r.gfp_account;
    ro->gfp_movable = r.gfp_movable;
    std::copy(r.cache_name.begin(), r.cache_name.end(), const_cast<char*>(ro->cache_name));
    ro->stack_sample_every = r.stack_sample_every;
    ro->page_shift = r.page_shift;
    ro->nr_possible_cpus = r.nr_possible_cpus;
    for (size_t n = 0; n < r.page_skip.size() && n < KLEAK_PAGE_SKIP_RANGES; ++n) {
      ro->page_skip_lo[n] = r.page_skip[n][0];
      ro->page_skip_hi[n] = r.page_skip[n][1];
      ro->page_skip_kind[n] = static_cast<uint32_t>(r.page_skip[n][2]);
    }
    if constexpr (requires(Skel* s) { s->rodata->stack_cache_mode; }) {
      ro->stack_cache_mode = r.stack_cache_mode;
      ro->sc_sets_mask = r.sc_sets_mask;
    }
  }

 private:
  Skel* s_;
};

struct KernelFacts {
  BtfPtr vmlinux;
  std::vector<bool> hook_present;  // per kHooks entry: its tracepoint is in the BTF
  bool kmem_cache_old = false;     // kmem_cache_alloc has the pre-6.1 layout
  uint64_t gfp_account = 0x400000;  // __GFP_ACCOUNT before it was an enum bit
  uint64_t gfp_movable = 0x08;      // __GFP_MOVABLE before v6.10
  bool direct_ptr_args = false;     // direct_void_ptr_args_allowed()
  // The bulk-free follower's functions (fentry/fexit targets) in the
  // running kernel's BTF: kmem_cache_free_bulk (every kernel),
  // __kfree_rcu_sheaf (v6.18+).
  bool free_bulk_fn = false;
  bool rcu_sheaf_fn = false;
  std::string fentry_refused;  // fentry_refusal(), when the kernel has the functions
  // module/module_load and module/module_free (a kernel without loadable
  // modules has neither: nothing comes and goes there).
  bool module_tracepoints = false;
  uint32_t ncpus = 1;
  struct Range {
    uint64_t lo, hi;
    uint32_t kind;
  };
  std::vector<Range> page_skip;  // kPageSkipFunctions found in kallsyms
};

Loader::Loader(LoaderConfig config) : config_(std::move(config)) {}
Loader::~Loader() = default;

Result<std::unique_ptr<Loader>> Loader::create(const LoaderConfig& config) {
  std::unique_ptr<Loader> l(new Loader(config));
  if (auto s = l->read_kernel(); !s) return s.error();
  if (auto s = l->decide_hooks(); !s) return s.error();
  if (auto s = l->load(); !s) return s.error();
  if (auto s = l->attach(); !s) return s.error();
  return l;
}

Status Loader::load_only(const LoaderConfig& config, std::vector<Degraded>* dropped) {
  Loader l(config);
  if (auto s = l.read_kernel(); !s) return s;
  if (auto s = l.decide_hooks(); !s) return s;
  if (auto s = l.load(); !s) return s;
  if (dropped) *dropped = l.degraded_;
  return {};
}

Status Loader::read_kernel() {
  if (!config_.btf_path.empty()) {
    if (auto ok = check_btf_file(config_.btf_path); !ok) return ok.error();
  } else if (struct stat st; stat("/sys/kernel/btf/vmlinux", &st) != 0) {
    return make_error("kernel BTF not found at /sys/kernel/btf/vmlinux (needs CONFIG_DEBUG_INFO_BTF=y; "
                      "or pass --btf FILE)",
                      errno);
  }
  if (config_.cache_name.size() >= KLEAK_CACHE_NAME_LEN) return make_error("--cache name too long", ENAMETOOLONG);
  if (config_.follow_tgids.size() > KLEAK_MAX_TASKS) return make_error("too many processes to follow", E2BIG);
  if (!config_.refuse_parts) {
    auto refuse = parts_to_refuse();
    if (!refuse) return refuse.error();
    config_.refuse_parts = *refuse;
  }
  auto k = std::make_unique<KernelFacts>();
  k->vmlinux.reset(config_.btf_path.empty() ? btf__load_vmlinux_btf() : btf__parse(config_.btf_path.c_str(), nullptr));
  if (!k->vmlinux) {
    return make_error(config_.btf_path.empty() ? std::string("load kernel BTF") : "load BTF " + config_.btf_path,
                      errno);
  }
  const btf* vmlinux = k->vmlinux.get();
  for (const Hook& h : kHooks) {
    std::string type = std::string("btf_trace_") + h.name;
    k->hook_present.push_back(btf__find_by_name_kind(vmlinux, type.c_str(), BTF_KIND_TYPEDEF) > 0);
  }
  k->kmem_cache_old = !kmem_cache_alloc_has_cache(vmlinux);
  k->module_tracepoints = btf__find_by_name_kind(vmlinux, "btf_trace_module_load", BTF_KIND_TYPEDEF) > 0 &&
                          btf__find_by_name_kind(vmlinux, "btf_trace_module_free", BTF_KIND_TYPEDEF) > 0;
  // __GFP_ACCOUNT's bit moved when gfp bits became an (anonymous) enum:
  // read ___GFP_ACCOUNT_BIT from BTF where it exists.
  if (auto bit = enum_value(vmlinux, "___GFP_ACCOUNT_BIT")) k->gfp_account = 1ull << *bit;
  // Likewise __GFP_MOVABLE (0x08 before v6.10, when the bits became enums).
  if (auto bit = enum_value(vmlinux, "___GFP_MOVABLE_BIT")) k->gfp_movable = 1ull << *bit;
  // Only against the running kernel's own BTF (a --btf file may describe another).
  k->direct_ptr_args = config_.btf_path.empty() && direct_void_ptr_args_allowed();
  // fentry/fexit need the running kernel's own BTF: a kernel that needs
  // --btf has none, so no follower there.
  if (config_.btf_path.empty()) {
    k->free_bulk_fn = btf__find_by_name_kind(vmlinux, "kmem_cache_free_bulk", BTF_KIND_FUNC) > 0;
    k->rcu_sheaf_fn = btf__find_by_name_kind(vmlinux, "__kfree_rcu_sheaf", BTF_KIND_FUNC) > 0;
    if (k->free_bulk_fn && config_.families.slab) k->fentry_refused = fentry_refusal("kmem_cache_free_bulk");
    if (!k->fentry_refused.empty()) k->free_bulk_fn = k->rcu_sheaf_fn = false;
  }
  // Per-CPU maps' memory scales with it (the stack cache), and the page
  // family reads it.
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return make_error("count possible CPUs", ncpus);
  k->ncpus = static_cast<uint32_t>(ncpus);
  if (config_.families.page) {
    const Ksyms* ksyms = config_.ksyms;
    Ksyms own;
    if (!ksyms) {
      auto loaded = Ksyms::load();
      if (loaded) own = std::move(*loaded);
      ksyms = &own;
    }
    for (const SkipFunction& f : kPageSkipFunctions)
      if (auto range = ksyms->function_range(f.name)) k->page_skip.push_back({range->first, range->second, f.kind});
    if (k->page_skip.empty())
      log_warn("--family page: no slab allocator function in /proc/kallsyms: pages backing slabs and large "
               "kmallocs are reported as pages too");
  }
  kernel_ = std::move(k);
  return {};
}

// Which hooks this kernel has: a family asked for whose required
// tracepoint is missing is dropped (an error when asked for by name, or
// for kmalloc itself).
Status Loader::decide_hooks() {
  // A kernel that forbids the follower's program type lacks the part, as
  // one without a tracepoint lacks a family: listed in every report, said
  // at -v (every run on such a kernel would warn otherwise).
  if (!kernel_->fentry_refused.empty()) {
    dropped_ |= KLEAK_PART_BULK_FREE;
    degraded_.push_back({part_name(KLEAK_PART_BULK_FREE), kernel_->fentry_refused, false});
    log_info("{}: {}", part_name(KLEAK_PART_BULK_FREE), kernel_->fentry_refused);
  }
  for (size_t i = 0; i < std::size(kHooks); ++i) {
    const Hook& h = kHooks[i];
    if (!config_.families.has(h.family) || kernel_->hook_present[i] || h.legacy || h.backup) continue;
    missing_.push_back(hook_label(h));
    if (!h.required) {
      log_warn("kernel has no {} tracepoint: not tracing it", hook_label(h));
      continue;
    }
    if (h.part == KLEAK_PART_CORE)
      return make_error("this kernel has no " + hook_label(h) + " tracepoint in its BTF: kleak cannot track kmalloc here",
                        ENOENT);
    const std::string why = "this kernel has no " + hook_label(h) + " tracepoint";
    if (config_.required_parts & h.part)
      return make_error(fmt::format("--family {}: {}", part_name(h.part), why), ENOENT);
    if (dropped_ & h.part) continue;
    dropped_ |= h.part;
    degraded_.push_back({part_name(h.part), why, false});
    log_warn("kernel has no {} tracepoint: the {} family is not traced", hook_label(h), family_name(h.family));
  }
  return {};
}

bool Loader::traces(uint32_t part) const { return !(dropped_ & part); }

uint32_t Loader::stack_cache_mode() const {
  return object_ && object_->has_stack_cache() ? config_.stack_cache : uint32_t{KLEAK_SC_OFF};
}

std::string Loader::what() const {
  return fmt::format("kleak.bpf.c: {} stacks, stack cache {}, families {}{}",
                     config_.stack_sample_every <= 1 ? "exact" : fmt::format("1-in-{}", config_.stack_sample_every),
                     config_.stack_cache == KLEAK_SC_OFF ? "off" : config_.stack_cache == KLEAK_SC_VERIFY ? "verify" : "on",
                     families_text(config_.families), config_.follow_tgids.empty() ? "" : ", following processes");
}

// Opens the object afresh and configures it with the parts in `dropped`
// (and those already dropped) left out.
bool Loader::wants_stack_cache(uint32_t off) const {
  return config_.stack_cache != KLEAK_SC_OFF && config_.stack_sample_every <= 1 && !(off & KLEAK_PART_STACK_CACHE);
}

// Opens afresh the object for the parts in `dropped` (and those already
// dropped) left out, and configures it: kleak_sc.bpf.o while the stack
// cache is wanted, else kleak.bpf.o.
Status Loader::open_configured(uint32_t dropped) {
  object_.reset();
  const uint32_t off = dropped_ | dropped;
  LIBBPF_OPTS(bpf_object_open_opts, opts);
  if (!config_.btf_path.empty()) opts.btf_custom_path = config_.btf_path.c_str();
  if (wants_stack_cache(off)) {
    if (kleak_sc_bpf* s = kleak_sc_bpf::open(&opts)) object_ = std::make_unique<SkelObject<kleak_sc_bpf>>(s);
  } else {
    if (kleak_bpf* s = kleak_bpf::open(&opts)) object_ = std::make_unique<SkelObject<kleak_bpf>>(s);
  }
  if (!object_) return make_error("open BPF object", errno);
  for (size_t i = 0; i < std::size(kHooks); ++i) {
    const Hook& h = kHooks[i];
    bool load = config_.families.has(h.family) && kernel_->hook_present[i] && !(off & h.part) &&
                !(off & family_part(h.family));
    // Two programs for one event: the one for this kernel's layout.
    if (load && std::strcmp(h.name, "kmem_cache_alloc") == 0) load = kernel_->kmem_cache_old == h.legacy;
    bpf_program__set_autoload(prog(h.program), load);
  }
  const bool follow = !config_.follow_tgids.empty();
  bpf_program__set_autoload(prog("kleak_fork"), follow);
  bpf_program__set_autoload(prog("kleak_exit"), follow && !(off & KLEAK_PART_EXIT_FOLLOWER));
  bpf_program__set_autoload(prog("kleak_peek_run"), !(off & KLEAK_PART_PEEK));
  const bool bulk = config_.families.slab && !(off & KLEAK_PART_BULK_FREE);
  bpf_program__set_autoload(prog("kleak_free_bulk"), bulk && kernel_->free_bulk_fn);
  bpf_program__set_autoload(prog("kleak_rcu_sheaf"), bulk && kernel_->rcu_sheaf_fn);
  const bool modules = kernel_->module_tracepoints && !(off & KLEAK_PART_MODULE_FOLLOWER);
  bpf_program__set_autoload(prog("kleak_mod_load"), modules);
  bpf_program__set_autoload(prog("kleak_mod_free"), modules);
  Rodata ro;
  ro.refuse_parts = *config_.refuse_parts;
  ro.gfp_account = kernel_->gfp_account;
  ro.gfp_movable = kernel_->gfp_movable;
  ro.direct_ptr_args = kernel_->direct_ptr_args && !(off & KLEAK_PART_DIRECT_PTR);
  ro.self_tgid = config_.self_tgid;
  ro.target_tgid = config_.target_tgid;
  ro.follow_tasks = follow;
  ro.kmalloc_off = config_.kmalloc_off;
  ro.kmem_cache_off = config_.kmem_cache_off;
  ro.kmalloc_type = config_.kmalloc_type;
  ro.cache_name = config_.cache_name;
  ro.stack_sample_every = config_.stack_sample_every;
  ro.nr_possible_cpus = kernel_->ncpus;
  ro.min_size = config_.min_size_bytes;
  ro.max_size = config_.max_size_bytes;
  ro.page_shift = static_cast<uint32_t>(__builtin_ctzl(static_cast<unsigned long>(sysconf(_SC_PAGESIZE))));
  for (const KernelFacts::Range& r : kernel_->page_skip) ro.page_skip.push_back({r.lo, r.hi, r.kind});
  if (auto st = configure_stack_cache(ro); !st) return st;
  object_->set_rodata(ro);
  if (int err = bpf_map__set_max_entries(map("kleak_live"), config_.families.slab ? config_.max_allocs : 1); err)
    return make_error("size map kleak_live", err);
  for (uint32_t fam : kExtraFamilies) {
    // A family that is off keeps a one-entry map: preallocated maps cost
    // their full size in kernel memory.
    uint32_t size = config_.families.has(fam) && !(off & family_part(fam)) ? config_.max_allocs : 1;
    if (int err = bpf_map__set_max_entries(family_map(fam), size); err)
      return make_error(std::string("size map ") + bpf_map__name(family_map(fam)), err);
  }
  if (int err = bpf_map__set_max_entries(map("kleak_stacks"), config_.stack_storage_size); err)
    return make_error("size map kleak_stacks", err);
  return {};
}

// The verified stack cache (bpf/stack_cache.bpf.h), in kleak_sc.bpf.o: a
// per-CPU map of KLEAK_SC_SLOTS entries as compiled, fewer where that would
// pass 4 MiB over all CPUs.
Status Loader::configure_stack_cache(Rodata& ro) {
  if (!object_->has_stack_cache()) return {};
  constexpr uint64_t kBudget = 4ull << 20;
  constexpr uint32_t kMinSlots = 64;
  bpf_map* sc = map("kleak_sc");
  ro.stack_cache_mode = config_.stack_cache;
  uint64_t fit = kBudget / (uint64_t{ro.nr_possible_cpus} * bpf_map__value_size(sc));
  uint32_t slots = std::bit_floor(static_cast<uint32_t>(std::min<uint64_t>(bpf_map__max_entries(sc), fit)));
  slots = std::max(slots, kMinSlots);
  ro.sc_sets_mask = slots / KLEAK_SC_WAYS - 1;
  if (int err = bpf_map__set_max_entries(sc, slots); err) return make_error("size map kleak_sc", err);
  return {};
}

bpf_program* Loader::prog(const char* name) const { return bpf_object__find_program_by_name(object_->obj(), name); }

bpf_map* Loader::map(const char* name) const { return bpf_object__find_map_by_name(object_->obj(), name); }

// The skeleton's link of program `name`: where pin_session finds it.
bpf_link** Loader::link_slot(const char* name) const {
  const bpf_object_skeleton* s = object_->skeleton();
  for (int i = 0; i < s->prog_cnt; ++i) {
    const auto* ps = reinterpret_cast<const bpf_prog_skeleton*>(reinterpret_cast<const char*>(s->progs) +
                                                                static_cast<size_t>(i) * s->prog_skel_sz);
    if (std::strcmp(ps->name, name) == 0) return ps->link;
  }
  return nullptr;
}

bpf_map* Loader::family_map(uint32_t family) const {
  switch (family) {
    case KLEAK_FAMILY_PAGE: return map("kleak_pages");
    case KLEAK_FAMILY_PERCPU: return map("kleak_percpu");
    case KLEAK_FAMILY_VMALLOC: return map("kleak_vmalloc");
    default: return map("kleak_live");
  }
}

// The tiered load (bpf_load.h): the parts that may have made the verifier
// refuse a program are the stack cache (every allocation program captures
// stacks through it), direct pointer loads, and the part the program is.
Status Loader::load() {
  TierPlan plan;
  plan.what = what();
  plan.required = config_.required_parts;
  plan.attempt = [this](uint32_t dropped) -> Result<std::optional<Refusal>> {
    if (auto st = open_configured(dropped); !st) return st.error();
    return load_watched(object_->obj(), [this] { return object_->load(); });
  };
  plan.causes = [this](const std::string& program) {
    std::vector<uint32_t> parts;
    const Hook* hook = nullptr;
    for (const Hook& h : kHooks)
      if (program == h.program) hook = &h;
    if (hook && hook->alloc && wants_stack_cache(dropped_)) parts.push_back(KLEAK_PART_STACK_CACHE);
    if (hook && hook->void_ptr && kernel_->direct_ptr_args) parts.push_back(KLEAK_PART_DIRECT_PTR);
    if (hook && hook->part != KLEAK_PART_CORE) parts.push_back(hook->part);
    if (program == "kleak_exit") parts.push_back(KLEAK_PART_EXIT_FOLLOWER);
    if (program == "kleak_peek_run") parts.push_back(KLEAK_PART_PEEK);
    for (const Follower& f : kFollowers)
      if (program == f.program) parts.push_back(f.part);
    return parts;
  };
  auto r = load_in_tiers(plan);
  if (!r) return r.error();
  dropped_ |= r->dropped;
  degraded_.insert(degraded_.end(), r->degraded.begin(), r->degraded.end());
  return {};
}

// A part whose attach failed: its links go, so none of its programs runs
// (its frees were attached first, see attach(): no record of it is left
// without its free). The same for a follower's part.
void Loader::drop_at_attach(uint32_t part, const std::string& why) {
  for (const Hook& h : kHooks) {
    if (h.part != part) continue;
    bpf_link** link = link_slot(h.program);
    if (*link) {
      bpf_link__destroy(*link);
      *link = nullptr;
      if (!h.backup)
        attached_.erase(std::remove(attached_.begin(), attached_.end(), hook_label(h)), attached_.end());
    }
  }
  for (const Follower& f : kFollowers) {
    bpf_link** link = link_slot(f.program);
    if (f.part != part || !*link) continue;
    bpf_link__destroy(*link);
    *link = nullptr;
    attached_.erase(std::remove(attached_.begin(), attached_.end(), f.label), attached_.end());
  }
  dropped_ |= part;
  degraded_.push_back({part_name(part), why});
  log_warn("{} dropped: {}", part_name(part), why);
}

Status Loader::attach() {
  // Seed the followed set before any program runs: the processes are
  // waiting to start, so none of their allocations is missed.
  for (uint32_t tgid : config_.follow_tgids) {
    uint32_t one = 1;
    if (bpf_map_update_elem(tasks_fd(), &tgid, &one, BPF_ANY) != 0)
      return make_error("follow process " + std::to_string(tgid), errno);
  }
  if (bpf_program__autoload(prog("kleak_fork"))) {
    bpf_link* link = bpf_program__attach(prog("kleak_fork"));
    if (!link) return make_error("attach sched/sched_process_fork", errno);
    *link_slot("kleak_fork") = link;
    attached_.push_back("sched/sched_process_fork");
  }
  if (bpf_program__autoload(prog("kleak_exit"))) {
    bpf_link* link = bpf_program__attach(prog("kleak_exit"));
    if (link) {
      *link_slot("kleak_exit") = link;
      attached_.push_back("sched/sched_process_exit");
    } else {
      const int err = errno;
      dropped_ |= KLEAK_PART_EXIT_FOLLOWER;
      degraded_.push_back({part_name(KLEAK_PART_EXIT_FOLLOWER), make_error("attach sched/sched_process_exit", err).message});
      log_warn("{} dropped: {}", part_name(KLEAK_PART_EXIT_FOLLOWER), degraded_.back().reason);
    }
  }
  if (auto st = attach_followers(); !st) return st;
  // Frees first, then allocations: a part whose allocation hook attaches
  // and whose free hook does not would leave records no free removes.
  for (bool allocs : {false, true}) {
    for (const Hook& h : kHooks) {
      bpf_program* p = prog(h.program);
      if (h.alloc != allocs || !bpf_program__autoload(p) || !traces(h.part)) continue;
      bpf_link* link = bpf_program__attach(p);
      if (link) {
        *link_slot(h.program) = link;
        if (!h.backup) attached_.push_back(hook_label(h));
        continue;
      }
      Error e = make_error("attach " + hook_label(h), errno);
      if (h.part == KLEAK_PART_CORE) return e;
      if (config_.required_parts & h.part)
        return make_error(fmt::format("{} was asked for by name, but {}", part_name(h.part), e.message), 0);
      drop_at_attach(h.part, e.message);
    }
  }
  for (uint32_t fam : kExtraFamilies)
    if (config_.families.has(fam) && traces(family_part(fam)) && bpf_program__autoload(family_alloc_prog(fam)))
      traced_.push_back(fam);
  return {};
}

// The followers' programs (bpf/kleak.bpf.c), before any allocation hook.
// Each part is optional: a kernel that refuses an attach (no ftrace
// trampolines, a function marked notrace) loses only that part.
Status Loader::attach_followers() {
  for (const Follower& f : kFollowers) {
    bpf_program* p = prog(f.program);
    // A part dropped by an earlier program's attach: its other programs stay off.
    if (!bpf_program__autoload(p) || !traces(f.part)) continue;
    if (bpf_link* link = bpf_program__attach(p)) {
      *link_slot(f.program) = link;
      attached_.push_back(f.label);
      continue;
    }
    const int err = errno;
    drop_at_attach(f.part, make_error(fmt::format("attach {}", f.label), err).message);
  }
  return {};
}

bpf_program* Loader::family_alloc_prog(uint32_t family) const {
  for (const Hook& h : kHooks)
    if (h.family == family && h.required) return prog(h.program);
  return nullptr;
}

std::vector<std::pair<std::string, int>> Loader::programs() const {
  std::vector<std::pair<std::string, int>> progs;
  bpf_program* prog;
  bpf_object__for_each_program(prog, object_->obj()) {
    if (bpf_program__fd(prog) >= 0 && std::strcmp(bpf_program__name(prog), "kleak_peek_run") != 0)
      progs.emplace_back(bpf_program__name(prog), bpf_program__fd(prog));
  }
  return progs;
}

int Loader::map_fd(const std::string& name) const {
  const bpf_map* map = bpf_object__find_map_by_name(object_->obj(), name.c_str());
  return map ? bpf_map__fd(map) : -1;
}

int Loader::prog_fd(const std::string& name) const {
  const bpf_program* prog = bpf_object__find_program_by_name(object_->obj(), name.c_str());
  return prog ? bpf_program__fd(prog) : -1;
}

const bpf_object_skeleton& Loader::skeleton() const { return *object_->skeleton(); }

}  // namespace kleak
