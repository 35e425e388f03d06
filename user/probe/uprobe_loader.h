// The user-space tracer's BPF skeleton (kleak_user.bpf.c): open, configure,
// load, then attach uprobes/uretprobes on the allocator of each traced
// process. Each step returns a Result; links and the skeleton are owned by
// RAII (fd-based, so they also go away when kleak is killed).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/degraded.h"
#include "probe/handles.h"
#include "util/result.h"
#include "probe/snapshot.h"

struct kleak_user_bpf;
struct bpf_link;

namespace kleak {

struct UserLoaderConfig {
  uint64_t min_size_bytes = 0;
  uint64_t max_size_bytes = ~0ULL;
  uint32_t max_allocs = 262144;
  uint32_t stack_storage_size = 16384;
  uint32_t stack_sample_every = 1;  // see TraceOptions
  // Parts to make the verifier refuse (bpf/refuse.bpf.h): tests only, from
  // KLEAK_REFUSE unless set here.
  std::optional<uint32_t> refuse_parts;
};

// Where the allocator of one process lives.
struct AllocatorLibs {
  std::string alloc;  // malloc, free, ...: --obj, else the libc the process maps
  std::string mmap;   // mmap, munmap, mremap: the libc (empty: alloc)
};

// Whether the user-space tracer can run on this kernel, asked of it (it
// needs bpf_get_attach_cookie, v5.15); the error says why not.
Status user_tracer_supported();

// The allocator functions kleak probes, in enum kleak_user_fn order.
const std::vector<std::string>& allocator_functions();

// The libc `pid` has mapped (a path as the process sees it), or empty.
std::string mapped_libc(uint32_t pid);

// Serves the common pipeline as BpfHandles: its maps are found under the
// kernel tracer's names ("kleak_live" is kleak_ulive, ...), and under their own.
class UserLoader : public BpfHandles {
 public:
  static Result<std::unique_ptr<UserLoader>> create(const UserLoaderConfig& config);
  ~UserLoader();
  UserLoader(const UserLoader&) = delete;
  UserLoader& operator=(const UserLoader&) = delete;

  // Probes the allocator of process `pid` as slot `slot` (its key space).
  // `prefix` is prepended to the malloc-family names (--symbols-prefix).
  // Functions a library lacks are skipped and listed in missing(); failing
  // to find malloc and free is an error.
  Status attach(uint32_t slot, uint32_t pid, const AllocatorLibs& libs, const std::string& prefix);

  int map_fd(const std::string& name) const override;
  int prog_fd(const std::string& name) const override;
  int extra_counters_fd() const { return map_fd("kleak_uextra"); }
  int exec_fd() const { return map_fd("kleak_uexec"); }
  uint32_t live_capacity() const override { return config_.max_allocs; }
  uint32_t stack_capacity() const override { return config_.stack_storage_size; }
  uint32_t stack_sample_every() const override { return config_.stack_sample_every; }
  // "libc.so.6:malloc", ... (aliases at one address are attached once, as
  // "libc.so.6:memalign=aligned_alloc"; "libc.so.6:free+3": probed past
  // the entry, see probe_site.h).
  const std::vector<std::string>& attached() const override { return attached_; }
  const std::vector<std::string>& missing() const override { return missing_; }
  // Parts the kernel refused, dropped: the exec follower (kleak_u_exec) is
  // the one optional part; the uprobes are the core, and an error.
  const std::vector<Degraded>& degraded() const override { return degraded_; }
  // Probed functions whose probe the kernel single-steps (see probe_site.h).
  uint32_t single_stepped() const { return single_stepped_; }

 private:
  explicit UserLoader(UserLoaderConfig config);
  Status open(uint32_t dropped);
  Status load();
  Status attach_one(uint32_t slot, uint32_t pid, const std::string& path, uint64_t offset, uint32_t fn);

  struct SkelDeleter {
    void operator()(kleak_user_bpf* skel) const;
  };
  struct LinkDeleter {
    void operator()(bpf_link* link) const;
  };
  UserLoaderConfig config_;
  std::unique_ptr<kleak_user_bpf, SkelDeleter> skel_;
  std::vector<std::unique_ptr<bpf_link, LinkDeleter>> links_;
  std::vector<std::string> attached_;
  std::vector<std::string> missing_;
  std::vector<Degraded> degraded_;
  uint32_t dropped_ = 0;
  uint32_t single_stepped_ = 0;
};

// Per-CPU user-only counters, summed (enum kleak_user_counter order).
Result<std::vector<uint64_t>> read_user_counters(int fd);
// Per slot, the monotonic time of the process's last exec (0: none seen).
Result<std::vector<uint64_t>> read_exec_times(int fd);

}  // namespace kleak
