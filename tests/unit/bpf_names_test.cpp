// Tier 2: kleak's BPF objects opened (never loaded): every program and map
// name fits the kernel's 15 characters (BPF_OBJ_NAME_LEN - 1), so `bpftool
// prog` and `bpftool map` show it whole, and starts with kleak_, so they
// show whose it is.
#include <string>
#include <vector>

#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include "kleak.skel.h"
#include "kleak_sc.skel.h"
#include "kleak_user.skel.h"

namespace kleak {
namespace {

struct Object {
  const char* name;
  const void* (*bytes)(size_t*);
};

const Object kObjects[] = {
    {"kleak.bpf.o", kleak_bpf__elf_bytes},
    {"kleak_sc.bpf.o", kleak_sc_bpf__elf_bytes},
    {"kleak_user.bpf.o", kleak_user_bpf__elf_bytes},
};

TEST(BpfNames, EveryProgramAndMapFitsTheKernelsNameAndIsKleaks) {
  for (const Object& o : kObjects) {
    size_t n = 0;
    const void* elf = o.bytes(&n);
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = o.name);
    bpf_object* obj = bpf_object__open_mem(elf, n, &opts);
    ASSERT_NE(obj, nullptr) << o.name;
    size_t progs = 0, maps = 0;
    bpf_program* p;
    bpf_object__for_each_program(p, obj) {
      const std::string name = bpf_program__name(p);
      EXPECT_LE(name.size(), 15u) << o.name << ": program " << name;
      EXPECT_EQ(name.rfind("kleak_", 0), 0u) << o.name << ": program " << name;
      ++progs;
    }
    bpf_map* m;
    bpf_object__for_each_map(m, obj) {
      const std::string name = bpf_map__name(m);
      if (bpf_map__is_internal(m)) continue;  // .rodata, .bss: libbpf names them after the object
      EXPECT_LE(name.size(), 15u) << o.name << ": map " << name;
      EXPECT_EQ(name.rfind("kleak_", 0), 0u) << o.name << ": map " << name;
      ++maps;
    }
    EXPECT_GT(progs, 2u) << o.name;
    EXPECT_GT(maps, 2u) << o.name;
    bpf_object__close(obj);
  }
}

}  // namespace
}  // namespace kleak
