// A module the kernel loaded or unloaded while kleak traced, as the module
// follower (bpf/kleak.bpf.c, kleak_modules) recorded it. Pure data: the
// kernel symbolizer names frames from it, pinned sessions carry it.
#pragma once

#include <cstdint>
#include <string>

namespace kleak {

struct ModuleRecord {
  std::string name;
  uint64_t text_base = 0, text_size = 0;  // core text
  uint64_t init_base = 0, init_size = 0;  // init text, freed after init
  uint64_t load_ns = 0;                   // CLOCK_MONOTONIC; 0: loaded before kleak
  uint64_t free_ns = 0;                   // 0 while loaded
  bool loaded() const { return free_ns == 0; }
  bool covers(uint64_t addr) const {
    return (addr >= text_base && addr - text_base < text_size) || (addr >= init_base && addr - init_base < init_size);
  }
  bool in_init(uint64_t addr) const { return addr >= init_base && addr - init_base < init_size; }
};

}  // namespace kleak
