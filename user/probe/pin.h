// Pinned sessions: a tracer's programs' links, programs and maps kept in
// bpffs (/sys/fs/bpf/kleak) after `kleak start` exits, so later processes
// can report from them and `kleak stop` can end them.
//
// Layout (directories 0700, root only):
//   /sys/fs/bpf/kleak/meta          kleak_meta: an array map holding PinMeta as JSON
//   /sys/fs/bpf/kleak/maps/NAME     every map of the BPF object (kleak_live, ...; a dot in
//                                   a name becomes '_': bpffs reserves dots)
//   /sys/fs/bpf/kleak/progs/NAME    every loaded program (kleak_peek_run runs on demand)
//   /sys/fs/bpf/kleak/links/NAME    every attached program's link: keeps it attached
// bpffs holds only pins and directories, no regular files: hence the map.
//
// Creating and removing are atomic for readers: a session is built in
// /sys/fs/bpf/kleak-new-PID and renamed into place; `stop` renames it to
// kleak-old-PID before unpinning. A process killed half-way leaves only such
// a directory, which the next start or stop removes once PID is gone.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "probe/handles.h"
#include "model/pin_meta.h"
#include "util/fd.h"
#include "util/result.h"

struct bpf_object_skeleton;

namespace kleak {

inline constexpr const char* kBpffsRoot = "/sys/fs/bpf";
inline constexpr const char* kPinDirName = "kleak";

// Identity of this kleak's maps and programs: a hash of the ABI structs'
// sizes and of the embedded BPF object. Another build that changed either
// reads a session wrongly, so it is refused.
std::string abi_fingerprint();
// /proc/sys/kernel/random/boot_id, or "unknown".
std::string current_boot_id();

// Why pinning cannot work here (bpffs not mounted at `root`, with the
// command that mounts it) as the error; ok when it can.
Status bpffs_problem(const std::string& root = kBpffsRoot);
// mount -t bpf bpf ROOT (mode 0700); the error says why not.
Status mount_bpffs(const std::string& root = kBpffsRoot);

std::string session_dir(const std::string& root = kBpffsRoot);
bool session_exists(const std::string& root = kBpffsRoot);

// Removes kleak-new-PID / kleak-old-PID directories whose PID is not
// running: what a killed start or stop left. Returns how many.
size_t remove_stale_sessions(const std::string& root = kBpffsRoot);

// Pins every created map, loaded program and attached link of `skel` and a
// kleak_meta map holding `meta`, then moves the whole into the session
// directory. Errors: EEXIST when a session is already there (the staging
// directory is then removed too).
Status pin_session(const bpf_object_skeleton& skel, const PinMeta& meta, const std::string& root = kBpffsRoot);

// Unpins a session (the links go, so the programs detach once no process
// holds them). `dir` is the session directory.
Status unpin_session(const std::string& dir);

// Reads only the metadata of the session in `dir`.
Result<PinMeta> read_pin_meta(const std::string& dir);

// A session opened by a later process: fds for every pinned map and program,
// by name, and its metadata. Holds an exclusive flock on the session
// directory while open, so reports (which share --peek's request map) and
// stop do not interleave.
class PinnedSession : public BpfHandles {
 public:
  // Opens without checking compatibility: call check() before reading maps.
  static Result<std::unique_ptr<PinnedSession>> open(const std::string& dir);

  int map_fd(const std::string& name) const override;
  int prog_fd(const std::string& name) const override;
  uint32_t live_capacity() const override { return meta_.max_allocs; }
  uint32_t stack_capacity() const override { return meta_.stack_storage_size; }
  uint32_t stack_sample_every() const override { return meta_.stack_sample_every; }
  const std::vector<std::string>& attached() const override { return meta_.attached; }
  const std::vector<std::string>& missing() const override { return meta_.missing; }
  const std::vector<Degraded>& degraded() const override { return meta_.degraded; }
  const PinMeta& meta() const { return meta_; }
  const std::string& dir() const { return dir_; }

 private:
  PinnedSession() = default;
  std::string dir_;
  Fd lock_;
  PinMeta meta_;
  std::unordered_map<std::string, Fd> maps_;
  std::unordered_map<std::string, Fd> progs_;
};

}  // namespace kleak
