// User-space symbolizer: /proc/PID/maps plus each binary's ELF symbol tables
// (libelf), and file:line from DWARF (libdw) when debug info is there. PIE
// and ASLR are handled through the maps entry's file offset and the ELF
// program headers; addresses in stripped binaries read as module+offset.
// Binaries are opened once and cached; a process's maps are kept after it
// exits, so its stacks still symbolize.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "symbols/symbolizer.h"
#include "util/fd.h"
#include "util/result.h"

namespace kleak {

// One line of /proc/PID/maps.
struct MapEntry {
  uint64_t start = 0;
  uint64_t end = 0;  // exclusive
  uint64_t offset = 0;  // file offset of `start`
  uint64_t inode = 0;
  bool exec = false;
  std::string path;  // empty for anonymous memory; "[heap]", "[vdso]", ...
};

// Parses the text of /proc/PID/maps. Lines that do not parse are skipped.
std::vector<MapEntry> parse_proc_maps(std::string_view text);

// A resolved user address.
struct UserFrame {
  std::string symbol;  // function (demangled); empty if unknown
  uint64_t offset = 0;  // from the symbol, else from the start of the file
  std::string module;  // file name of the binary, "[vdso]", ...; empty if unmapped
  std::string source;  // "path/file.c:42" when DWARF knows the line
};

// One ELF file, opened once: function symbols sorted by address, PT_LOAD
// segments, and DWARF when the file (or /usr/lib/debug/.build-id) has it.
class ElfFile {
 public:
  static Result<std::unique_ptr<ElfFile>> open(const std::string& path);
  ~ElfFile();
  ElfFile(const ElfFile&) = delete;
  ElfFile& operator=(const ElfFile&) = delete;

  struct Sym {
    uint64_t addr;
    uint64_t size;
    std::string name;
  };
  // The function covering vaddr (ELF virtual address), if any.
  const Sym* find(uint64_t vaddr) const;
  // A function's ELF virtual address, by exact name (first definition).
  std::optional<uint64_t> symbol_vaddr(std::string_view name) const;
  // ELF virtual address <-> file offset, through the PT_LOAD segments.
  std::optional<uint64_t> file_offset(uint64_t vaddr) const;
  uint64_t vaddr_of_offset(uint64_t file_offset) const;
  // The bytes of the function that starts at vaddr (its symbol's size), as
  // the file holds them; empty when no sized symbol starts there.
  std::vector<uint8_t> function_code(uint64_t vaddr) const;
  // "dir/file.c:42", or empty without debug info for vaddr.
  std::string source_line(uint64_t vaddr) const;
  bool has_debug_info() const { return dwarf_ != nullptr; }
  size_t symbol_count() const { return syms_.size(); }

 private:
  ElfFile() = default;
  void read_symbols(void* elf);  // Elf*: appends its function symbols
  void sort_symbols();
  struct Segment {
    uint64_t vaddr, memsz, offset, filesz;
  };
  std::vector<Sym> syms_;  // one per address
  std::unordered_map<std::string, uint64_t> by_name_;  // every name, aliases too
  std::vector<Segment> segments_;
  // The files' descriptors outlive their Elf handles: closed after the
  // destructor's elf_end().
  Fd fd_;
  void* elf_ = nullptr;  // Elf*
  Fd debug_fd_;
  void* debug_elf_ = nullptr;  // separate debug file's Elf*, if used
  void* dwarf_ = nullptr;  // Dwarf*
};

class UserSymbolizer : public Symbolizer {
 public:
  // Reads /proc/PID/maps. When it cannot (the process is gone), the last
  // maps read for PID stay in use. Returns whether it read them.
  bool refresh(uint32_t pid);
  // Resolves ip in PID's address space. Return addresses (every frame of a
  // stack taken at a return probe) are looked up at ip-1, inside the call.
  UserFrame resolve(uint32_t pid, uint64_t ip, bool return_address = true);
  // A report's frame of return address ip in process tgid: function+offset,
  // module+offset in a stripped file, the address alone when unmapped.
  Frame frame(uint64_t ip, uint32_t tgid) override;
  // The binary mapped at `path` (as in the maps), opened through PID's root
  // while it lives; cached.
  const ElfFile* file(uint32_t pid, const MapEntry& m);
  // The maps last read for PID (empty if never).
  const std::vector<MapEntry>& maps(uint32_t pid) const;
  // Binaries whose symbols could not be read, for a note in reports.
  const std::vector<std::string>& unreadable() const { return unreadable_; }
  // Binaries without DWARF, for a note.
  bool any_debug_info() const { return any_debug_info_; }

 private:
  std::unordered_map<uint32_t, std::vector<MapEntry>> maps_;
  std::map<std::pair<std::string, uint64_t>, std::unique_ptr<ElfFile>> files_;  // (path, inode)
  std::vector<std::string> unreadable_;
  bool any_debug_info_ = false;
};

}  // namespace kleak
