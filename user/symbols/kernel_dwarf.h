// Source lines of kernel frames, from DWARF: the running kernel's vmlinux
// (Debian's linux-image-*-dbg puts it in /usr/lib/debug/boot/) and each
// module's own .ko, both read through elfutils' libdwfl, which lays out and
// relocates a module's sections itself (a .ko is relocatable: its DWARF
// means nothing until that is done). A file is used only when its build ID
// is the running kernel's, or the module's as the kernel loaded it: a line
// from another build points at the wrong code, which is worse than none.
//
// Lookups follow `addr2line -i`: the line of the code at an address, then,
// for each function inlined there, innermost first, the line of its call.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "symbols/symbolizer.h"
#include "util/result.h"

namespace kleak {

// What DWARF says of one code address.
struct SourceInfo {
  std::string source;                // "mm/slub.c:4321", in the frame's own function
  std::vector<InlinedCall> inlined;  // the functions inlined at the address, innermost first
  bool empty() const { return source.empty() && inlined.empty(); }
};

// One ELF file with DWARF (vmlinux or a .ko), opened once.
class DwarfFile {
 public:
  static Result<std::unique_ptr<DwarfFile>> open(const std::string& path);
  ~DwarfFile();
  DwarfFile(const DwarfFile&) = delete;
  DwarfFile& operator=(const DwarfFile&) = delete;

  const std::string& path() const { return path_; }
  // Lower-case hex; empty when the file has no build ID note.
  const std::string& build_id() const { return build_id_; }
  // The address of function `name` in the file's own layout (a .ko: as
  // libdwfl placed its sections), the first when the name repeats. Keeps
  // a table of every name: for the many lookups of a module's frames.
  std::optional<uint64_t> function_address(std::string_view name);
  // The same by one walk of the symbols, keeping nothing: for a lookup or
  // two in a large file (vmlinux's KASLR anchor).
  std::optional<uint64_t> find_function(std::string_view name) const;
  // What DWARF says of `addr`, a code address in that layout (cached).
  const SourceInfo& lookup(uint64_t addr);
 private:
  DwarfFile() = default;
  // Calls fn(name, address) for each defined function (or untyped text
  // symbol, as _stext is) until it returns false.
  void for_each_function(const std::function<bool(const char*, uint64_t)>& fn) const;
  SourceInfo compute(uint64_t addr) const;
  std::string relative(const std::string& path) const;
  void find_root();

  std::string path_;
  std::string build_id_;
  // The directory every compile unit's file is in (the source tree), to
  // which lines are shown relative. Ends in '/'; empty if none is common.
  std::string root_;
  void* dwfl_ = nullptr;    // Dwfl*
  void* module_ = nullptr;  // Dwfl_Module*
  bool functions_read_ = false;
  std::unordered_map<std::string, uint64_t> functions_;
  std::unordered_map<uint64_t, SourceInfo> cache_;
};

// The build ID in a file of ELF notes, as /sys/kernel/notes and
// /sys/module/NAME/notes/.note.gnu.build-id hold them; empty if none.
std::string build_id_from_notes(std::string_view notes);

// Where the kernel's DWARF is looked for, and how it is checked.
struct KernelDebugConfig {
  std::string vmlinux;     // --vmlinux FILE; empty: the usual places for `release`
  std::string release;     // uname -r
  std::string root = "/";  // prefix of every path below (tests)
};

// Source lines for a running kernel's frames: vmlinux for the core kernel,
// a .ko for each module, found by name under the module directories and
// checked against the build ID the module had while loaded.
class KernelDebugInfo {
 public:
  // `anchors`: kernel text symbols with their runtime address (kallsyms),
  // the first the file also has giving the KASLR offset (_stext, or _text:
  // kallsyms keeps one name an address has). None (kptr_restrict): no
  // core kernel lines. A --vmlinux that is not there, has no DWARF or is
  // another build's is an error; a vmlinux found in the usual places is
  // skipped with a note if it does not match.
  static Result<std::unique_ptr<KernelDebugInfo>> open(const KernelDebugConfig& config,
                                                       const std::vector<std::pair<std::string, uint64_t>>& anchors);

  // A core-kernel return address.
  SourceInfo core(uint64_t ret_addr);
  // A return address in module `module`, as func+offset of kallsyms;
  // `build_id`: the loaded module's (module_build_id), empty if unknown.
  SourceInfo module(const std::string& module, const std::string& build_id, std::string_view func,
                    uint64_t offset);
  // The build ID of module `name` while it is loaded, from sysfs; empty if
  // not loaded.
  std::string module_build_id(const std::string& name) const;
  // Every loaded module's build ID, by name (/sys/module/*/notes).
  std::map<std::string, std::string> loaded_module_ids() const;

  const DwarfFile* vmlinux() const { return vmlinux_.get(); }
  // What was used and what was not, one line each, for `-v`.
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  KernelDebugInfo() = default;
  DwarfFile* module_file(const std::string& module, const std::string& build_id);
  void index_module_dirs();

  KernelDebugConfig config_;
  std::unique_ptr<DwarfFile> vmlinux_;
  int64_t bias_ = 0;  // runtime address - file address, core kernel
  bool indexed_ = false;
  std::multimap<std::string, std::string> module_paths_;  // name ('_' for '-') -> .ko path
  std::map<std::string, std::unique_ptr<DwarfFile>> module_files_;  // by build ID
  std::set<std::string> no_id_;  // modules said to have no build ID
  mutable std::set<std::string> id_misses_;  // modules whose sysfs notes had none, said once
  std::vector<std::string> notes_;
};

}  // namespace kleak
