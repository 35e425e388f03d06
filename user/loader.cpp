#include "loader.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "abi.h"
#include "kleak.skel.h"
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

// One tracepoint kleak can attach: the program that handles it, and whether
// kleak cannot work at all without it.
struct Hook {
  const char* name;  // "kmalloc": tp_btf name and btf_trace_<name> typedef
  bpf_program* (*prog)(kleak_bpf*);
  bpf_link** (*link)(kleak_bpf*);
  bool required;
};

const Hook kHooks[] = {
    {"kmalloc", [](kleak_bpf* s) { return s->progs.kleak_kmalloc; },
     [](kleak_bpf* s) { return &s->links.kleak_kmalloc; }, true},
    {"kfree", [](kleak_bpf* s) { return s->progs.kleak_kfree; }, [](kleak_bpf* s) { return &s->links.kleak_kfree; },
     true},
    {"kmem_cache_alloc", [](kleak_bpf* s) { return s->progs.kleak_kc_alloc; },
     [](kleak_bpf* s) { return &s->links.kleak_kc_alloc; }, false},
    {"kmem_cache_free", [](kleak_bpf* s) { return s->progs.kleak_kc_free; },
     [](kleak_bpf* s) { return &s->links.kleak_kc_free; }, false},
};

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
    std::string type = std::string("btf_trace_") + h.name;
    bool present = btf__find_by_name_kind(vmlinux, type.c_str(), BTF_KIND_TYPEDEF) > 0;
    if (present) continue;
    if (h.required) {
      btf__free(vmlinux);
      return make_error(std::string("this kernel has no kmem/") + h.name +
                            " tracepoint in its BTF: kleak cannot track kmalloc here",
                        ENOENT);
    }
    bpf_program__set_autoload(h.prog(skel_.get()), false);
    missing_.push_back(std::string("kmem/") + h.name);
    log_warn("kernel has no kmem/{} tracepoint: not tracing it", h.name);
  }
  // __GFP_ACCOUNT's bit moved when gfp bits became an (anonymous) enum:
  // read ___GFP_ACCOUNT_BIT from BTF where it exists.
  if (auto bit = enum_value(vmlinux, "___GFP_ACCOUNT_BIT")) gfp_account_ = 1ull << *bit;
  btf__free(vmlinux);

  auto* ro = skel_->rodata;
  ro->gfp_account = gfp_account_;
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
  ro->stack_sample_every = config_.stack_sample_every;
  ro->min_size = config_.min_size_bytes;
  ro->max_size = config_.max_size_bytes;
  if (int err = bpf_map__set_max_entries(skel_->maps.kleak_live, config_.max_allocs); err)
    return make_error("size map kleak_live", err);
  if (int err = bpf_map__set_max_entries(skel_->maps.kleak_stacks, config_.stack_storage_size); err)
    return make_error("size map kleak_stacks", err);
  return {};
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
  for (const Hook& h : kHooks) {
    bpf_program* prog = h.prog(skel_.get());
    if (!bpf_program__autoload(prog)) continue;
    bpf_link* link = bpf_program__attach(prog);
    if (!link) return make_error(std::string("attach kmem/") + h.name, errno);
    *h.link(skel_.get()) = link;
    attached_.push_back(std::string("kmem/") + h.name);
  }
  return {};
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
