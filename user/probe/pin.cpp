#include "probe/pin.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>

#include "model/abi.h"
#include "kleak.skel.h"
#include "kleak_sc.skel.h"
#include "util/log.h"

namespace kleak {
namespace {

namespace fs = std::filesystem;

constexpr const char* kMetaMapName = "kleak_meta";
// bpffs refuses names with a dot with EPERM (kernel/bpf/inode.c,
// bpf_lookup(): reserved for its own files such as maps.debug, since v5.10's
// bpf_preload); seen here on 6.18.
constexpr const char* kNewPrefix = "kleak-new-";
constexpr const char* kOldPrefix = "kleak-old-";

// A map or program name as a bpffs name: "kleak_bp.rodata" -> "kleak_bp_rodata".
std::string pin_name(std::string name) {
  std::replace(name.begin(), name.end(), '.', '_');
  return name;
}

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

Status make_dir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) != 0) return make_error("create " + path, errno);
  return {};
}

// The names under `dir` (no "." or ".."); empty when it cannot be read.
std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (!d) return names;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  closedir(d);
  return names;
}

// A pinned kleak_meta map holding `text` (u32 length, then the bytes).
Status pin_meta_map(const std::string& text, const std::string& path) {
  if (text.size() > kPinMetaMaxBytes) return make_error("session metadata too large", E2BIG);
  int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, kMetaMapName, sizeof(uint32_t), sizeof(uint32_t) + kPinMetaMaxBytes, 1,
                          nullptr);
  if (fd < 0) return make_error("create map kleak_meta", errno);
  Fd map(fd);
  std::vector<char> value(sizeof(uint32_t) + kPinMetaMaxBytes, 0);
  uint32_t len = static_cast<uint32_t>(text.size());
  std::memcpy(value.data(), &len, sizeof(len));
  std::memcpy(value.data() + sizeof(len), text.data(), text.size());
  uint32_t zero = 0;
  if (bpf_map_update_elem(map.get(), &zero, value.data(), BPF_ANY) != 0) return make_error("write kleak_meta", errno);
  if (bpf_obj_pin(map.get(), path.c_str()) != 0) return make_error("pin " + path, errno);
  return {};
}

}  // namespace

std::string abi_fingerprint() {
  const uint64_t sizes[] = {sizeof(kleak_alloc), sizeof(kleak_stack), sizeof(kleak_counters), KLEAK_CNT_MAX,
                            sizeof(kleak_peek_slot)};
  uint64_t h = fnv1a(0xcbf29ce484222325ull, sizes, sizeof(sizes));
  // Both objects of bpf/kleak.bpf.c: a session may run either.
  size_t n = 0;
  const void* elf = kleak_bpf__elf_bytes(&n);
  h = fnv1a(h, elf, n);
  elf = kleak_sc_bpf__elf_bytes(&n);
  h = fnv1a(h, elf, n);
  return fmt::format("{:016x}", h);
}

std::string current_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (!std::getline(in, id) || id.empty()) return "unknown";
  return id;
}

Status bpffs_problem(const std::string& root) {
  struct statfs st {};
  if (statfs(root.c_str(), &st) != 0 || st.f_type != BPF_FS_MAGIC)
    return make_error(fmt::format("bpffs is not mounted at {}: mount it with `mount -t bpf bpf {}` (or: kleak start --mount-bpffs)",
                       root, root), 0);
  return {};
}

Status mount_bpffs(const std::string& root) {
  if (bpffs_problem(root)) return {};
  if (mount("bpf", root.c_str(), "bpf", 0, "mode=0700") != 0)
    return make_error("mount -t bpf bpf " + root, errno);
  return {};
}

std::string session_dir(const std::string& root) { return root + "/" + kPinDirName; }

bool session_exists(const std::string& root) {
  struct stat st {};
  return lstat(session_dir(root).c_str(), &st) == 0;
}

size_t remove_stale_sessions(const std::string& root) {
  size_t removed = 0;
  for (const auto& name : list_dir(root)) {
    std::string_view rest;
    if (name.rfind(kNewPrefix, 0) == 0) rest = std::string_view(name).substr(std::strlen(kNewPrefix));
    else if (name.rfind(kOldPrefix, 0) == 0) rest = std::string_view(name).substr(std::strlen(kOldPrefix));
    else continue;
    std::string pid(rest);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (access(("/proc/" + pid).c_str(), F_OK) == 0) continue;  // still being built or removed
    if (auto st = unpin_session(root + "/" + name); st) {
      log_warn("removed {}/{}: left by a kleak start or stop that was killed", root, name);
      ++removed;
    } else {
      log_warn("{}", st.error().message);
    }
  }
  return removed;
}

Status pin_session(const bpf_object_skeleton& skel, const PinMeta& meta, const std::string& root) {
  const std::string staging = fmt::format("{}/{}{}", root, kNewPrefix, getpid());
  const std::string final_dir = session_dir(root);
  auto build = [&]() -> Status {
    for (const char* sub : {"", "/maps", "/progs", "/links"})
      if (auto st = make_dir(staging + sub); !st) return st;
    bpf_object* obj = *skel.obj;
    bpf_map* map;
    bpf_object__for_each_map(map, obj) {
      if (bpf_map__fd(map) < 0) continue;  // not created (autocreate off)
      std::string path = staging + "/maps/" + pin_name(bpf_map__name(map));
      if (int err = bpf_obj_pin(bpf_map__fd(map), path.c_str()); err) return make_error("pin " + path, errno);
    }
    for (int i = 0; i < skel.prog_cnt; ++i) {
      const auto* ps = reinterpret_cast<const bpf_prog_skeleton*>(reinterpret_cast<const char*>(skel.progs) +
                                                                  static_cast<size_t>(i) * skel.prog_skel_sz);
      bpf_program* prog = *ps->prog;
      if (bpf_program__fd(prog) < 0) continue;  // not loaded (autoload off)
      std::string path = staging + "/progs/" + pin_name(ps->name);
      if (bpf_obj_pin(bpf_program__fd(prog), path.c_str()) != 0) return make_error("pin " + path, errno);
      bpf_link* link = *ps->link;
      if (!link) continue;  // loaded, not attached: run on demand (peek)
      path = staging + "/links/" + pin_name(ps->name);
      if (int err = bpf_link__pin(link, path.c_str()); err) return make_error("pin " + path, err);
    }
    if (auto st = pin_meta_map(pin_meta_to_json(meta), staging + "/meta"); !st) return st;
    // RENAME_NOREPLACE: of two starts racing, one wins, the other sees EEXIST.
    if (renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_NOREPLACE) != 0)
      return make_error("move " + staging + " to " + final_dir, errno);
    return {};
  };
  Status st = build();
  if (!st) (void)unpin_session(staging);
  return st;
}

Status unpin_session(const std::string& dir) {
  // bpffs has no regular files: unlinking a pin drops its reference; a link
  // whose last reference goes detaches its program.
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return make_error("remove " + dir, ec.value());
  return {};
}

Result<PinMeta> read_pin_meta(const std::string& dir) {
  const std::string path = dir + "/meta";
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return make_error("open " + path, errno);
  Fd map(fd);
  std::vector<char> value(sizeof(uint32_t) + kPinMetaMaxBytes, 0);
  bpf_map_info info{};
  uint32_t info_len = sizeof(info);
  if (bpf_obj_get_info_by_fd(map.get(), &info, &info_len) != 0) return make_error("inspect " + path, errno);
  if (info.type != BPF_MAP_TYPE_ARRAY || info.key_size != sizeof(uint32_t) || info.value_size != value.size() ||
      std::strcmp(info.name, kMetaMapName) != 0)
    return make_error(path + " is not a kleak_meta map of this kleak", EINVAL);
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(map.get(), &zero, value.data()) != 0) return make_error("read " + path, errno);
  uint32_t len = 0;
  std::memcpy(&len, value.data(), sizeof(len));
  if (len > kPinMetaMaxBytes) return make_error(path + ": metadata length out of range", EINVAL);
  return parse_pin_meta(std::string_view(value.data() + sizeof(len), len));
}

Result<std::unique_ptr<PinnedSession>> PinnedSession::open(const std::string& dir) {
  std::unique_ptr<PinnedSession> s(new PinnedSession());
  s->dir_ = dir;
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error("open " + dir, errno);
  s->lock_ = Fd(fd);
  if (flock(fd, LOCK_EX) != 0) return make_error("lock " + dir, errno);
  // A stop that ran while we waited for the lock has removed the session.
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_nlink == 0 || access(dir.c_str(), F_OK) != 0)
    return make_error("open " + dir, ENOENT);
  auto meta = read_pin_meta(dir);
  if (!meta) return meta.error();
  s->meta_ = std::move(*meta);
  for (auto [sub, out] : {std::pair{"/maps/", &s->maps_}, std::pair{"/progs/", &s->progs_}}) {
    for (const auto& name : list_dir(dir + sub)) {
      std::string path = dir + sub + name;
      int obj = bpf_obj_get(path.c_str());
      if (obj < 0) return make_error("open " + path, errno);
      out->emplace(name, Fd(obj));
    }
  }
  return s;
}

int PinnedSession::map_fd(const std::string& name) const {
  auto it = maps_.find(pin_name(name));
  return it == maps_.end() ? -1 : it->second.get();
}

int PinnedSession::prog_fd(const std::string& name) const {
  auto it = progs_.find(pin_name(name));
  return it == progs_.end() ? -1 : it->second.get();
}

}  // namespace kleak
