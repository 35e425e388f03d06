// BPF skeleton lifecycle: open, configure, load, attach; each step returns a
// Result. Owns the skeleton through RAII, so every program, map and link is
// released when the Loader goes away (links are fd-based: they also go away
// when the process is killed).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "probe/bpf_load.h"
#include "model/family.h"
#include "probe/handles.h"
#include "util/result.h"

struct bpf_link;
struct bpf_map;
struct bpf_program;
struct bpf_object_skeleton;

namespace kleak {

class Ksyms;

struct LoaderConfig {
  FamilySet families;  // which allocator families to load programs for
  uint32_t self_tgid = 0;
  uint32_t target_tgid = 0;
  // Non-empty: record only these processes and their descendants (a
  // command's process tree); target_tgid is then ignored.
  std::vector<uint32_t> follow_tgids;
  uint64_t min_size_bytes = 0;
  uint64_t max_size_bytes = ~0ULL;
  // --cache: record only one kmalloc family (kmalloc_type, -1 = any) or only
  // kmem_cache allocations from the cache named cache_name.
  bool kmalloc_off = false;
  bool kmem_cache_off = false;
  int kmalloc_type = -1;
  std::string cache_name;
  std::string cache_label;  // --cache as resolved, for reports
  uint32_t max_allocs = 262144;
  uint32_t stack_storage_size = 8192;
  uint32_t stack_sample_every = 1;  // see TraceOptions
  uint32_t stack_cache = 1;         // KLEAK_SC_*, see TraceOptions
  // Parts (enum kleak_part) the user asked for by name (--stack-cache on,
  // --family percpu, --peek): the kernel refusing one is an error, where an
  // optional part the kernel refuses is dropped (bpf_load.h).
  uint32_t required_parts = 0;
  // Parts to make the verifier refuse (bpf/refuse.bpf.h): tests only, from
  // KLEAK_REFUSE unless set here.
  std::optional<uint32_t> refuse_parts;
  std::string btf_path;  // empty: running kernel's BTF
  // For the page family's slab/kmalloc exclusions (function ranges); null:
  // the loader reads /proc/kallsyms itself. Not owned.
  const Ksyms* ksyms = nullptr;
};

// Whether this kernel's verifier lets a tp_btf program load an argument
// typed `const void *` directly (v6.16+, see bpf/compat.bpf.h), asked of
// the kernel with a three-instruction program. Any failure means no.
bool direct_void_ptr_args_allowed();

// Facts about the running kernel that configuring the object needs, read
// once however many times the tiered load opens it.
struct KernelFacts;
// One open object of bpf/kleak.bpf.c, with or without the stack cache, and
// what its .rodata gets (loader.cpp).
class LoadedObject;
struct Rodata;

class Loader : public BpfHandles {
 public:
  // Opens, probes the kernel, configures, loads (in tiers: a refused
  // optional part is dropped, see bpf_load.h) and attaches.
  static Result<std::unique_ptr<Loader>> create(const LoaderConfig& config);
  // Opens, configures and loads in tiers, without attaching: what the load
  // tier of the tests runs for every mode. `dropped` gets the parts lost.
  static Status load_only(const LoaderConfig& config, std::vector<Degraded>* dropped = nullptr);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int map_fd(const std::string& name) const override;
  int prog_fd(const std::string& name) const override;
  uint32_t live_capacity() const override { return config_.max_allocs; }
  uint32_t stack_capacity() const override { return config_.stack_storage_size; }
  uint32_t stack_sample_every() const override { return config_.stack_sample_every; }
  // The families this loader traces (family.h), and which beyond slab are
  // attached on this kernel; the loaded programs, for recursion misses.
  FamilySet families() const override { return config_.families; }
  std::vector<uint32_t> traced_families() const override { return traced_; }
  std::vector<std::pair<std::string, int>> programs() const override;
  // Tracepoints attached, e.g. "kmem/kmalloc".
  const std::vector<std::string>& attached() const override { return attached_; }
  // Tracepoints this kernel lacks, skipped with a warning.
  const std::vector<std::string>& missing() const override { return missing_; }
  // Parts dropped because the kernel refused or lacks them.
  const std::vector<Degraded>& degraded() const override { return degraded_; }
  // The stack cache mode in force (KLEAK_SC_*): off when dropped or unused.
  uint32_t stack_cache_mode() const;
  // Every program, map and link, for pinning them (pin.h).
  const bpf_object_skeleton& skeleton() const;

 private:
  explicit Loader(LoaderConfig config);
  Status read_kernel();
  Status decide_hooks();
  bool wants_stack_cache(uint32_t dropped) const;
  Status open_configured(uint32_t dropped);
  Status configure_stack_cache(Rodata& ro);
  Status load();
  Status attach();
  Status attach_followers();
  void drop_at_attach(uint32_t part, const std::string& why);
  bpf_program* prog(const char* name) const;
  bpf_map* map(const char* name) const;
  bpf_link** link_slot(const char* program) const;
  bpf_map* family_map(uint32_t family) const;
  bpf_program* family_alloc_prog(uint32_t family) const;
  bool traces(uint32_t part) const;
  std::string what() const;

  LoaderConfig config_;
  std::unique_ptr<LoadedObject> object_;  // of kleak.bpf.o or kleak_sc.bpf.o
  std::unique_ptr<KernelFacts> kernel_;
  uint32_t dropped_ = 0;  // parts not loaded or not attached (enum kleak_part)
  std::vector<Degraded> degraded_;
  std::vector<std::string> attached_;
  std::vector<std::string> missing_;
  std::vector<uint32_t> traced_;
};

}  // namespace kleak
