#include "symbols/usyms.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#ifdef KLEAK_HAVE_LIBDW
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#endif

#include <fmt/format.h>

#include "util/text.h"

namespace kleak {
namespace {


bool parse_hex(std::string_view s, uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

std::string demangle(const char* name) {
  if (name[0] != '_' || name[1] != 'Z') return name;
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || !d) return name;
  std::string out(d);
  std::free(d);
  return out;
}

std::string base_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::vector<MapEntry> parse_proc_maps(std::string_view text) {
  std::vector<MapEntry> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    // start-end perms offset dev inode [path]
    std::string_view range = next_field(line), perms = next_field(line), off = next_field(line);
    std::string_view dev = next_field(line), inode = next_field(line);
    size_t dash = range.find('-');
    MapEntry m;
    if (dash == std::string_view::npos || perms.size() < 4 || dev.empty() ||
        !parse_hex(range.substr(0, dash), m.start) || !parse_hex(range.substr(dash + 1), m.end) ||
        !parse_hex(off, m.offset) || m.end <= m.start)
      continue;
    auto [p, ec] = std::from_chars(inode.data(), inode.data() + inode.size(), m.inode, 10);
    if (ec != std::errc() || p != inode.data() + inode.size()) continue;
    m.exec = perms[2] == 'x';
    size_t path_start = line.find_first_not_of(' ');
    if (path_start != std::string_view::npos) m.path = std::string(line.substr(path_start));
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::unique_ptr<ElfFile>> ElfFile::open(const std::string& path) {
  static const bool versioned = elf_version(EV_CURRENT) != EV_NONE;
  if (!versioned) return make_error("libelf: version mismatch", EINVAL);
  std::unique_ptr<ElfFile> f(new ElfFile());
  f->fd_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!f->fd_.valid()) return make_error("open " + path, errno);
  Elf* elf = elf_begin(f->fd_.get(), ELF_C_READ_MMAP, nullptr);
  if (!elf || elf_kind(elf) != ELF_K_ELF) {
    if (elf) elf_end(elf);
    return make_error(path + ": not an ELF file", ENOEXEC);
  }
  f->elf_ = elf;

  size_t nphdr = 0;
  if (elf_getphdrnum(elf, &nphdr) == 0) {
    for (size_t i = 0; i < nphdr; ++i) {
      GElf_Phdr ph;
      if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD)
        f->segments_.push_back({ph.p_vaddr, ph.p_memsz, ph.p_offset, ph.p_filesz});
    }
  }
  f->read_symbols(elf);

#ifdef KLEAK_HAVE_LIBDW
  Dwarf* dw = dwarf_begin_elf(elf, DWARF_C_READ, nullptr);
  if (!dw) {
    // Debian's -dbgsym packages: /usr/lib/debug/.build-id/ab/cdef....debug
    const void* id = nullptr;
    ssize_t len = dwelf_elf_gnu_build_id(elf, &id);
    if (len > 1) {
      const auto* b = static_cast<const unsigned char*>(id);
      std::string hex;
      for (ssize_t i = 0; i < len; ++i) hex += fmt::format("{:02x}", b[i]);
      std::string dbg = "/usr/lib/debug/.build-id/" + hex.substr(0, 2) + "/" + hex.substr(2) + ".debug";
      f->debug_fd_.reset(::open(dbg.c_str(), O_RDONLY | O_CLOEXEC));
      if (f->debug_fd_.valid()) {
        Elf* de = elf_begin(f->debug_fd_.get(), ELF_C_READ_MMAP, nullptr);
        if (de) {
          f->debug_elf_ = de;
          dw = dwarf_begin_elf(de, DWARF_C_READ, nullptr);
        }
      }
    }
  }
  f->dwarf_ = dw;
  // A separate debug file has the full .symtab (static functions such as
  // glibc's __libc_start_call_main), at the same addresses.
  if (f->debug_elf_) f->read_symbols(static_cast<Elf*>(f->debug_elf_));
#endif
  f->sort_symbols();
  return f;
}

void ElfFile::read_symbols(void* e) {
  // Both tables: .symtab (static functions too) when not stripped, .dynsym
  // (exported ones) always.
  Elf* elf = static_cast<Elf*>(e);
  Elf_Scn* scn = nullptr;
  while ((scn = elf_nextscn(elf, scn)) != nullptr) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) || sh.sh_entsize == 0)
      continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data) continue;
    size_t n = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < n; ++i) {
      GElf_Sym s;
      if (!gelf_getsym(data, static_cast<int>(i), &s)) continue;
      int type = GELF_ST_TYPE(s.st_info);
      if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s.st_shndx == SHN_UNDEF || s.st_value == 0) continue;
      const char* name = elf_strptr(elf, sh.sh_link, s.st_name);
      if (!name || !*name) continue;
      by_name_.emplace(name, s.st_value);  // the first definition wins
      syms_.push_back(Sym{s.st_value, s.st_size, name});
    }
  }
}

void ElfFile::sort_symbols() {
  // By address; at one address prefer the sized, then the shorter (public) name.
  std::sort(syms_.begin(), syms_.end(), [](const Sym& a, const Sym& b) {
    if (a.addr != b.addr) return a.addr < b.addr;
    if ((a.size == 0) != (b.size == 0)) return a.size != 0;
    return a.name.size() < b.name.size();
  });
  syms_.erase(std::unique(syms_.begin(), syms_.end(), [](const Sym& a, const Sym& b) { return a.addr == b.addr; }),
              syms_.end());
}

ElfFile::~ElfFile() {
#ifdef KLEAK_HAVE_LIBDW
  if (dwarf_) dwarf_end(static_cast<Dwarf*>(dwarf_));
#endif
  if (debug_elf_) elf_end(static_cast<Elf*>(debug_elf_));
  if (elf_) elf_end(static_cast<Elf*>(elf_));
}

const ElfFile::Sym* ElfFile::find(uint64_t vaddr) const {
  auto it = std::upper_bound(syms_.begin(), syms_.end(), vaddr, [](uint64_t a, const Sym& s) { return a < s.addr; });
  if (it == syms_.begin()) return nullptr;
  --it;
  // Unsized symbols (hand-written assembly) cover up to the next symbol.
  if (it->size != 0 && vaddr >= it->addr + it->size) return nullptr;
  return &*it;
}

std::optional<uint64_t> ElfFile::symbol_vaddr(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) return std::nullopt;
  return it->second;
}

std::optional<uint64_t> ElfFile::file_offset(uint64_t vaddr) const {
  for (const Segment& s : segments_)
    if (vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz) return vaddr - s.vaddr + s.offset;
  return std::nullopt;
}

uint64_t ElfFile::vaddr_of_offset(uint64_t off) const {
  for (const Segment& s : segments_)
    if (off >= s.offset && off < s.offset + s.filesz) return off - s.offset + s.vaddr;
  return off;  // no program headers: offsets are addresses (ET_REL)
}

std::vector<uint8_t> ElfFile::function_code(uint64_t vaddr) const {
  const Sym* s = find(vaddr);
  auto off = file_offset(vaddr);
  constexpr uint64_t kMaxFunctionBytes = 1 << 20;  // a symbol size past this is not a function
  if (!s || s->addr != vaddr || s->size == 0 || s->size > kMaxFunctionBytes || !off) return {};
  std::vector<uint8_t> code(s->size);
  ssize_t n = pread(fd_.get(), code.data(), code.size(), static_cast<off_t>(*off));
  if (n != static_cast<ssize_t>(code.size())) return {};
  return code;
}

std::string ElfFile::source_line(uint64_t vaddr) const {
#ifdef KLEAK_HAVE_LIBDW
  if (!dwarf_) return {};
  Dwarf_Die cu;
  if (!dwarf_addrdie(static_cast<Dwarf*>(dwarf_), vaddr, &cu)) return {};
  Dwarf_Line* line = dwarf_getsrc_die(&cu, vaddr);
  if (!line) return {};
  const char* file = dwarf_linesrc(line, nullptr, nullptr);
  int lineno = 0;
  if (!file || dwarf_lineno(line, &lineno) != 0) return {};
  return fmt::format("{}:{}", file, lineno);
#else
  (void)vaddr;
  return {};
#endif
}

bool UserSymbolizer::refresh(uint32_t pid) {
  std::ifstream in(fmt::format("/proc/{}/maps", pid));
  if (!in) return false;
  std::ostringstream buf;
  buf << in.rdbuf();
  auto maps = parse_proc_maps(buf.str());
  // A zombie's maps are empty: keep what was read while it lived.
  if (maps.empty()) return false;
  maps_[pid] = std::move(maps);
  return true;
}

const std::vector<MapEntry>& UserSymbolizer::maps(uint32_t pid) const {
  static const std::vector<MapEntry> none;
  auto it = maps_.find(pid);
  return it == maps_.end() ? none : it->second;
}

const ElfFile* UserSymbolizer::file(uint32_t pid, const MapEntry& m) {
  if (m.path.empty() || m.path[0] != '/') return nullptr;
  auto key = std::make_pair(m.path, m.inode);
  if (auto it = files_.find(key); it != files_.end()) return it->second.get();
  // Through the process's root first: the path is as it sees it (containers).
  auto f = ElfFile::open(fmt::format("/proc/{}/root{}", pid, m.path));
  if (!f) f = ElfFile::open(m.path);
  if (!f) {
    unreadable_.push_back(m.path);
    files_[key] = nullptr;
    return nullptr;
  }
  if ((*f)->has_debug_info()) any_debug_info_ = true;
  return (files_[key] = std::move(*f)).get();
}

UserFrame UserSymbolizer::resolve(uint32_t pid, uint64_t ip, bool return_address) {
  UserFrame fr;
  const auto& maps = this->maps(pid);
  auto it = std::upper_bound(maps.begin(), maps.end(), ip, [](uint64_t a, const MapEntry& m) { return a < m.start; });
  if (it == maps.begin()) return fr;
  --it;
  if (ip >= it->end) return fr;
  const MapEntry& m = *it;
  fr.module = m.path.empty() ? "[anon]" : base_name(m.path);
  const uint64_t file_off = ip - m.start + m.offset;
  fr.offset = file_off;
  const ElfFile* f = file(pid, m);
  if (!f) {
    if (m.path.empty() || m.path[0] != '/') fr.offset = ip - m.start;
    return fr;
  }
  const uint64_t vaddr = f->vaddr_of_offset(file_off);
  const uint64_t lookup = return_address && vaddr > 0 ? vaddr - 1 : vaddr;
  if (const ElfFile::Sym* s = f->find(lookup)) {
    fr.symbol = demangle(s->name.c_str());
    fr.offset = vaddr - s->addr;
  }
  fr.source = f->source_line(lookup);
  return fr;
}

Frame UserSymbolizer::frame(uint64_t ip, uint32_t tgid) {
  UserFrame u = resolve(tgid, ip, /*return_address=*/true);
  Frame f;
  f.addr = ip;
  if (!u.symbol.empty()) {
    f.symbol = std::move(u.symbol);
    f.offset = u.offset;
    f.module = std::move(u.module);
  } else if (!u.module.empty()) {
    // Stripped, or not a file: module+offset reads as "libfoo.so+0x1234".
    f.symbol = std::move(u.module);
    f.offset = u.offset;
  }
  f.source = std::move(u.source);
  return f;
}

}  // namespace kleak
