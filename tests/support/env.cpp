#include "env.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

#include "bpf_objects.h"
#include "util/privileges.h"

namespace kleak::test {

namespace {

// Every test process on the machine that links this file takes one lock
// while its tests run (not while ctest lists them), so root tests from
// different builds (worktrees, a bench run under
// `flock /run/lock/kleak-bpf.lock`) never see each other's kleak_* programs.
// Ids of kleak programs loaded when this process took the lock: not the
// tests' (e.g. a long soak run, bench/soak.py, which does not hold the
// lock), so loaded_kleak_programs() leaves them out.
std::set<uint32_t>& foreign_programs() {
  static std::set<uint32_t> ids;
  return ids;
}

template <typename Fn>
void for_each_kleak_program(Fn fn) {
  for_each_bpf_object<bpf_prog_info>(bpf_prog_get_next_id, bpf_prog_get_fd_by_id,
                                     [&fn](uint32_t id, const bpf_prog_info& info) {
                                       if (kleak_named(info.name)) fn(id, info);
                                     });
}

class MachineLock : public ::testing::Environment {
 public:
  void SetUp() override {
    fd_ = open("/run/lock/kleak-bpf.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ >= 0) flock(fd_, LOCK_EX);
    for_each_kleak_program([](uint32_t id, const bpf_prog_info&) { foreign_programs().insert(id); });
  }
  void TearDown() override {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};
[[maybe_unused]] ::testing::Environment* const machine_lock =
    ::testing::AddGlobalTestEnvironment(new MachineLock);

}  // namespace

bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

std::string bpf_unavailable_reason() {
  if (auto why = check_privileges(); !why) return why.error().message;
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) return "no /sys/kernel/btf/vmlinux";
  return {};
}

namespace {

const btf* kernel_btf() {
  static btf* b = btf__load_vmlinux_btf();
  return b;
}

}  // namespace

bool kernel_has_tracepoint(const std::string& name) {
  const btf* b = kernel_btf();
  return b && btf__find_by_name_kind(b, ("btf_trace_" + name).c_str(), BTF_KIND_TYPEDEF) > 0;
}

bool kernel_has_member(const std::string& type, const std::string& member) {
  const btf* b = kernel_btf();
  int id = b ? btf__find_by_name_kind(b, type.c_str(), BTF_KIND_STRUCT) : -1;
  if (id <= 0) return false;
  const btf_type* t = btf__type_by_id(b, static_cast<uint32_t>(id));
  const btf_member* m = btf_members(t);
  for (uint16_t i = 0; i < btf_vlen(t); ++i)
    if (member == btf__name_by_offset(b, m[i].name_off)) return true;
  return false;
}

bool kernel_loads_fentry() {
  static const bool loads = [] {
    int id = libbpf_find_vmlinux_btf_id("kmem_cache_free_bulk", BPF_TRACE_FENTRY);
    if (id <= 0) return false;
    const bpf_insn insns[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .src_reg = 0, .off = 0, .imm = 0},
        {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
    };
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_FENTRY,
                .attach_btf_id = static_cast<uint32_t>(id));
    int fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, "test_fentry", "GPL", insns, std::size(insns), &opts);
    if (fd >= 0) close(fd);
    return fd >= 0;
  }();
  return loads;
}

std::string root_unavailable_reason(const std::string& what) {
  return geteuid() == 0 ? std::string() : "needs root " + what;
}

std::vector<std::string> loaded_kleak_programs() {
  std::vector<std::string> names;
  for_each_kleak_program([&names](uint32_t id, const bpf_prog_info& info) {
    if (!foreign_programs().count(id)) names.emplace_back(info.name);
  });
  return names;
}

bool no_kleak_programs_within(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!loaded_kleak_programs().empty()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

}  // namespace kleak::test
