#include "symbols/kernel_dwarf.h"

#include "util/log.h"
#include "util/sys.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <system_error>

#ifdef KLEAK_HAVE_LIBDW
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#endif

namespace kleak {
namespace {

std::string hex(const unsigned char* bytes, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += fmt::format("{:02x}", bytes[i]);
  return out;
}

// A file's bytes, or none when it cannot be read (a module without notes,
// a machine without /sys/kernel/notes): the callers then have no build ID.
std::string read_or_empty(const std::string& path) {
  auto r = read_text_file(path);
  return r ? std::move(*r) : std::string();
}

// Where sysfs has a loaded module's build ID note.
std::string notes_path(const std::string& module_dir) { return module_dir + "/notes/.note.gnu.build-id"; }

// "a/./b//c" -> "a/b/c": the line tables of Debian's kernels hold "./" parts.
std::string tidy(std::string p) {
  for (size_t at; (at = p.find("/./")) != std::string::npos;) p.erase(at, 2);
  for (size_t at; (at = p.find("//")) != std::string::npos;) p.erase(at, 1);
  return p;
}

std::string normalized(std::string name) {
  for (char& c : name)
    if (c == '-') c = '_';
  return name;
}

#ifdef KLEAK_HAVE_LIBDW
// The file given is the one with DWARF: never a separate debug file, never
// debuginfod (kleak runs where the network may be anything).
int no_separate_debuginfo(Dwfl_Module*, void**, const char*, Dwarf_Addr, const char*, const char*, GElf_Word,
                          char**) {
  return -1;
}

const Dwfl_Callbacks kOffline = {
    .find_elf = nullptr,
    .find_debuginfo = no_separate_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = nullptr,
};

Dwfl* as_dwfl(void* p) { return static_cast<Dwfl*>(p); }
Dwfl_Module* as_module(void* p) { return static_cast<Dwfl_Module*>(p); }

// A unit's DW_AT_comp_dir, or null.
const char* comp_dir(Dwarf_Die* cu) {
  Dwarf_Attribute a;
  return dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &a));
}

// A file name of unit `cu` as the source tree reads it. A build that maps
// its source prefix away (Debian's kernels: -fdebug-prefix-map) leaves a
// relative comp_dir, the object directory ("debian/build/build_amd64_..."),
// which names no source: names relative to it are the tree's own.
std::string tree_path(Dwarf_Die* cu, const char* name) {
  std::string file = tidy(name);
  const char* dir = comp_dir(cu);
  if (!dir || dir[0] == '/') return file;
  const std::string prefix = tidy(std::string(dir) + "/");
  if (file.compare(0, prefix.size(), prefix) == 0) file.erase(0, prefix.size());
  return file;
}

// The file and line of a call site: DW_AT_call_file indexes the unit's
// file table.
bool call_site(Dwarf_Die* cu, Dwarf_Die* inlined, std::string* file, Dwarf_Word* line) {
  Dwarf_Attribute a;
  Dwarf_Word index = 0;
  if (dwarf_formudata(dwarf_attr(inlined, DW_AT_call_file, &a), &index) != 0 ||
      dwarf_formudata(dwarf_attr(inlined, DW_AT_call_line, &a), line) != 0)
    return false;
  Dwarf_Files* files = nullptr;
  size_t n = 0;
  if (dwarf_getsrcfiles(cu, &files, &n) != 0 || index >= n) return false;
  const char* name = dwarf_filesrc(files, index, nullptr, nullptr);
  if (!name) return false;
  const char* dir = comp_dir(cu);
  *file = (name[0] != '/' && dir && dir[0] == '/') ? std::string(dir) + "/" + name : tree_path(cu, name);
  return true;
}
#endif

}  // namespace

std::string build_id_from_notes(std::string_view notes) {
  // Elf{32,64}_Nhdr alike: namesz, descsz, type; name and desc 4-aligned.
  constexpr uint32_t kNtGnuBuildId = 3;
  auto align4 = [](size_t n) { return (n + 3) & ~size_t{3}; };
  size_t at = 0;
  while (at + 12 <= notes.size()) {
    uint32_t h[3];
    std::memcpy(h, notes.data() + at, sizeof h);
    const size_t name_at = at + 12, desc_at = name_at + align4(h[0]);
    if (desc_at + h[1] > notes.size()) break;
    if (h[2] == kNtGnuBuildId && h[0] == 4 && notes.substr(name_at, 4) == std::string_view("GNU\0", 4))
      return hex(reinterpret_cast<const unsigned char*>(notes.data() + desc_at), h[1]);
    at = desc_at + align4(h[1]);
  }
  return {};
}

#ifdef KLEAK_HAVE_LIBDW

Result<std::unique_ptr<DwarfFile>> DwarfFile::open(const std::string& path) {
  std::unique_ptr<DwarfFile> f(new DwarfFile());
  f->path_ = path;
  Dwfl* dwfl = dwfl_begin(&kOffline);
  if (!dwfl) return make_error(path + ": libdwfl: " + dwfl_errmsg(-1), 0);
  f->dwfl_ = dwfl;
  Dwfl_Module* m = dwfl_report_offline(dwfl, "kernel", path.c_str(), -1);
  dwfl_report_end(dwfl, nullptr, nullptr);
  if (!m) return make_error(path + ": " + dwfl_errmsg(-1), 0);
  f->module_ = m;
  Dwarf_Addr bias = 0;
  if (!dwfl_module_getdwarf(m, &bias)) return make_error(path + ": no DWARF debug info", 0);
  const unsigned char* bits = nullptr;
  GElf_Addr vaddr = 0;
  int n = dwfl_module_build_id(m, &bits, &vaddr);
  if (n > 0) f->build_id_ = hex(bits, static_cast<size_t>(n));
  f->find_root();
  return f;
}

DwarfFile::~DwarfFile() {
  if (dwfl_) dwfl_end(as_dwfl(dwfl_));
}

void DwarfFile::find_root() {
  // The longest directory common to every unit's file: the kernel's source
  // tree for vmlinux ("/build/linux-6.1/"), the module's own directory for
  // a one-file module. None when a unit's name is relative to no absolute
  // directory: such names are the tree's already (tree_path).
  std::optional<std::string> common;
  Dwarf_Die* cu = nullptr;
  Dwarf_Addr bias = 0;
  while ((cu = dwfl_module_nextcu(as_module(module_), cu, &bias)) != nullptr) {
    const char* name = dwarf_diename(cu);
    if (!name) continue;
    std::string file = name;
    if (file[0] != '/') {
      const char* dir = comp_dir(cu);
      if (!dir || dir[0] != '/') return;
      file = std::string(dir) + "/" + file;
    }
    file = tidy(file);
    std::string dir = file.substr(0, file.rfind('/') + 1);
    if (!common) {
      common = dir;
      continue;
    }
    size_t same = 0;
    while (same < common->size() && same < dir.size() && (*common)[same] == dir[same]) ++same;
    common->resize(common->rfind('/', same ? same - 1 : 0) + 1);
  }
  if (common && *common != "/") root_ = *common;
}

std::string DwarfFile::relative(const std::string& path) const {
  std::string p = tidy(path);
  if (!root_.empty() && p.compare(0, root_.size(), root_) == 0) p.erase(0, root_.size());
  return p;
}

void DwarfFile::for_each_function(const std::function<bool(const char*, uint64_t)>& fn) const {
  Dwfl_Module* m = as_module(module_);
  const int n = dwfl_module_getsymtab(m);
  for (int i = 1; i < n; ++i) {
    GElf_Sym sym;
    GElf_Addr addr = 0;
    const char* s = dwfl_module_getsym_info(m, i, &sym, &addr, nullptr, nullptr, nullptr);
    const int type = GELF_ST_TYPE(sym.st_info);
    if (!s || !*s || sym.st_shndx == SHN_UNDEF || (type != STT_FUNC && type != STT_NOTYPE)) continue;
    if (!fn(s, addr)) return;
  }
}

std::optional<uint64_t> DwarfFile::function_address(std::string_view name) {
  if (!functions_read_) {
    functions_read_ = true;
    for_each_function([this](const char* s, uint64_t addr) {
      functions_.emplace(s, addr);  // the first definition wins
      return true;
    });
  }
  auto it = functions_.find(std::string(name));
  if (it == functions_.end()) return std::nullopt;
  return it->second;
}

std::optional<uint64_t> DwarfFile::find_function(std::string_view name) const {
  std::optional<uint64_t> at;
  for_each_function([&](const char* s, uint64_t addr) {
    if (name != s) return true;
    at = addr;
    return false;
  });
  return at;
}

const SourceInfo& DwarfFile::lookup(uint64_t addr) {
  auto it = cache_.find(addr);
  if (it == cache_.end()) it = cache_.emplace(addr, compute(addr)).first;
  return it->second;
}

SourceInfo DwarfFile::compute(uint64_t addr) const {
  SourceInfo out;
  Dwfl_Module* m = as_module(module_);
  Dwarf_Addr bias = 0;
  Dwarf_Die* cu = dwfl_module_addrdie(m, addr, &bias);
  if (!cu) return out;
  std::string here;
  if (Dwfl_Line* line = dwfl_module_getsrc(m, addr)) {
    int lineno = 0;
    const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr);
    if (file && lineno > 0) here = fmt::format("{}:{}", relative(tree_path(cu, file)), lineno);
  }
  // The innermost scope at addr, then its parents in the concrete tree:
  // dwarf_getscopes alone goes on into an inlined function's abstract
  // origin after the first one, where its callers are not.
  Dwarf_Die* scopes = nullptr;
  int n = dwarf_getscopes(cu, addr - bias, &scopes);
  if (n > 0) {
    Dwarf_Die innermost = scopes[0];
    free(scopes);
    scopes = nullptr;
    n = dwarf_getscopes_die(&innermost, &scopes);
  }
  for (int i = 0; i < n; ++i) {
    const int tag = dwarf_tag(&scopes[i]);
    if (tag == DW_TAG_subprogram) break;
    if (tag != DW_TAG_inlined_subroutine) continue;  // lexical blocks
    const char* name = dwarf_diename(&scopes[i]);
    out.inlined.push_back({name ? name : "", here});
    std::string file;
    Dwarf_Word line = 0;
    here = call_site(cu, &scopes[i], &file, &line) ? fmt::format("{}:{}", relative(file), line) : std::string();
  }
  free(scopes);
  out.source = here;
  return out;
}

#else  // !KLEAK_HAVE_LIBDW

Result<std::unique_ptr<DwarfFile>> DwarfFile::open(const std::string& path) {
  return make_error(path + ": kleak was built without libdw: no source lines", ENOTSUP);
}
DwarfFile::~DwarfFile() = default;
void DwarfFile::find_root() {}
std::string DwarfFile::relative(const std::string& path) const { return path; }
void DwarfFile::for_each_function(const std::function<bool(const char*, uint64_t)>&) const {}
std::optional<uint64_t> DwarfFile::function_address(std::string_view) { return std::nullopt; }
std::optional<uint64_t> DwarfFile::find_function(std::string_view) const { return std::nullopt; }
const SourceInfo& DwarfFile::lookup(uint64_t addr) { return cache_[addr]; }
SourceInfo DwarfFile::compute(uint64_t) const { return {}; }

#endif

namespace {

// runtime - file address of the first anchor the file has. A scan, not
// function_address(): the core kernel's frames never need vmlinux's whole
// name table (some 150k names) kept in memory.
std::optional<int64_t> kaslr_bias(const DwarfFile& f, const std::vector<std::pair<std::string, uint64_t>>& anchors) {
  for (const auto& [name, runtime] : anchors)
    if (auto at = f.find_function(name)) return static_cast<int64_t>(runtime - *at);
  return std::nullopt;
}

}  // namespace

Result<std::unique_ptr<KernelDebugInfo>> KernelDebugInfo::open(
    const KernelDebugConfig& config, const std::vector<std::pair<std::string, uint64_t>>& anchors) {
  std::unique_ptr<KernelDebugInfo> d(new KernelDebugInfo());
  d->config_ = config;
  const std::string& r = config.release;
  const std::string running = build_id_from_notes(read_or_empty(config.root + "sys/kernel/notes"));
  std::vector<std::string> candidates;
  if (!config.vmlinux.empty()) {
    candidates.push_back(config.vmlinux);
  } else {
    for (const std::string& p : {"usr/lib/debug/boot/vmlinux-" + r, "usr/lib/debug/lib/modules/" + r + "/vmlinux",
                                 "boot/vmlinux-" + r, "lib/modules/" + r + "/build/vmlinux"})
      candidates.push_back(config.root + p);
    if (running.size() > 2)
      candidates.push_back(config.root + "usr/lib/debug/.build-id/" + running.substr(0, 2) + "/" +
                           running.substr(2) + ".debug");
  }
  for (const std::string& path : candidates) {
    std::error_code ec;
    if (config.vmlinux.empty() && !std::filesystem::exists(path, ec)) continue;
    auto f = DwarfFile::open(path);
    std::string why;
    if (!f) why = f.error().message;
    else if (!running.empty() && (*f)->build_id() != running)
      why = fmt::format("{}: build ID {} is not the running kernel's ({})", path,
                        (*f)->build_id().empty() ? "(none)" : (*f)->build_id(), running);
    else if (anchors.empty())
      why = path + ": kallsyms names no _stext or _text (addresses hidden by kptr_restrict?): no KASLR offset";
    else if (auto bias = kaslr_bias(**f, anchors); !bias)
      why = path + ": has none of kallsyms' " + anchors.front().first + " and the like";
    else {
      d->bias_ = *bias;
      d->vmlinux_ = std::move(*f);
      d->notes_.push_back(fmt::format("core kernel lines from {}{}", path,
                                      running.empty() ? " (unchecked: no /sys/kernel/notes)" : ""));
      break;
    }
    if (!config.vmlinux.empty()) return make_error("--vmlinux " + why, 0);
    d->notes_.push_back("not used: " + why);
  }
  if (!d->vmlinux_ && config.vmlinux.empty())
    d->notes_.push_back(fmt::format("no vmlinux with DWARF for {} (linux-image-{}-dbg puts one in "
                                    "/usr/lib/debug/boot/): core kernel frames have no lines",
                                    r, r));
  return d;
}

SourceInfo KernelDebugInfo::core(uint64_t ret_addr) {
  if (!vmlinux_ || ret_addr == 0) return {};
  // A return address: its call is the instruction before it.
  return vmlinux_->lookup(ret_addr - static_cast<uint64_t>(bias_) - 1);
}

std::string KernelDebugInfo::module_build_id(const std::string& name) const {
  const std::string path = notes_path(config_.root + "sys/module/" + name);
  const std::string notes = read_or_empty(path);
  std::string id = build_id_from_notes(notes);
  if (id.empty() && id_misses_.insert(name).second)  // said once: kleak reads again while it is loaded
    log_info("source lines: module {}: no build ID in {} ({} bytes read)", name, path, notes.size());
  else if (!id.empty() && id_misses_.erase(name))
    log_info("source lines: module {}: build ID {} read at a later look", name, id);
  return id;
}

std::map<std::string, std::string> KernelDebugInfo::loaded_module_ids() const {
  std::map<std::string, std::string> ids;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(config_.root + "sys/module", ec), end; !ec && it != end;
       it.increment(ec)) {
    // Built-in "modules" (parameters only) have no notes: not said.
    const std::string name = it->path().filename().string();
    std::string id = build_id_from_notes(read_or_empty(notes_path(it->path().string())));
    if (!id.empty()) ids.emplace(name, std::move(id));
  }
  return ids;
}

void KernelDebugInfo::index_module_dirs() {
  indexed_ = true;
  namespace fs = std::filesystem;
  for (const std::string& dir : {config_.root + "usr/lib/debug/lib/modules/" + config_.release,
                                 config_.root + "lib/modules/" + config_.release}) {
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
      const std::string file = it->path().filename().string();
      for (const char* ext : {".ko", ".ko.xz", ".ko.gz"}) {
        const size_t n = std::strlen(ext);
        if (file.size() > n && file.compare(file.size() - n, n, ext) == 0 && it->is_regular_file(ec))
          module_paths_.emplace(normalized(file.substr(0, file.size() - n)), it->path().string());
      }
    }
  }
}

DwarfFile* KernelDebugInfo::module_file(const std::string& module, const std::string& build_id) {
  // Without the loaded module's build ID no file can be shown to be its.
  if (build_id.empty()) {
    if (no_id_.insert(module).second) log_info("source lines: module {}: its build ID was never read", module);
    return nullptr;
  }
  auto known = module_files_.find(build_id);
  if (known != module_files_.end()) return known->second.get();
  if (!indexed_) index_module_dirs();
  std::unique_ptr<DwarfFile> found;
  auto [from, to] = module_paths_.equal_range(normalized(module));
  for (auto it = from; it != to && !found; ++it) {
    auto f = DwarfFile::open(it->second);
    if (f && (*f)->build_id() == build_id) found = std::move(*f);
  }
  if (found)
    log_info("source lines: module {} from {}", module, found->path());
  else
    log_info("source lines: module {}: no .ko with DWARF and build ID {} among {} named so", module, build_id,
             std::distance(from, to));
  DwarfFile* p = found.get();
  module_files_.emplace(build_id, std::move(found));  // a miss is kept too: looked for once
  return p;
}

SourceInfo KernelDebugInfo::module(const std::string& module, const std::string& build_id, std::string_view func,
                                   uint64_t offset) {
  DwarfFile* f = module_file(module, build_id);
  if (!f || func.empty()) return {};
  auto at = f->function_address(func);
  if (!at || *at + offset == 0) return {};
  return f->lookup(*at + offset - 1);
}

}  // namespace kleak
