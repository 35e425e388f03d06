// The kernel source-line reader against binutils' addr2line, on DWARF
// fixtures built with the tests (tests/progs/dwarfy.c, -O2 -g): a linked
// program standing in for vmlinux and a relocatable object with a build ID
// standing in for a .ko. For each address both must give the same
// functions, inlined ones included, and the same file:line.
#include "symbols/kernel_dwarf.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "symbols/kernel_symbols.h"

namespace kleak {
namespace {

const std::string kDir = KLEAK_DWARFY_DIR;
const std::string kVmlinux = kDir + "/vmlinux";
const std::string kModule = kDir + "/dwarfy_mod.ko";

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// addr2line -f -i: a function line, then its file:line, innermost first.
std::vector<std::pair<std::string, std::string>> addr2line(const std::string& file, uint64_t addr, bool relocatable) {
  std::string out = run(fmt::format("addr2line -f -i {} -e {} 0x{:x}", relocatable ? "-j .text" : "", file, addr));
  std::vector<std::pair<std::string, std::string>> calls;
  std::istringstream in(out);
  std::string fn, where;
  while (std::getline(in, fn) && std::getline(in, where)) {
    if (auto d = where.find(" (discriminator"); d != std::string::npos) where.resize(d);
    calls.emplace_back(fn, where);
  }
  return calls;
}

// Ours in the same shape: the inlined functions, then the frame's own.
std::vector<std::pair<std::string, std::string>> ours(const SourceInfo& s, const std::string& function) {
  std::vector<std::pair<std::string, std::string>> calls;
  for (const InlinedCall& c : s.inlined) calls.emplace_back(c.symbol, c.source);
  calls.emplace_back(function, s.source);
  return calls;
}

void expect_same(const std::vector<std::pair<std::string, std::string>>& want,
                 const std::vector<std::pair<std::string, std::string>>& got, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first) << what << " #" << i;
    // addr2line prints the full path; ours is relative to the source tree.
    const std::string& full = want[i].second;
    const std::string& rel = got[i].second;
    ASSERT_FALSE(rel.empty()) << what << " #" << i;
    EXPECT_TRUE(full == rel || (full.size() > rel.size() && full.compare(full.size() - rel.size(), rel.size(), rel) == 0 &&
                                full[full.size() - rel.size() - 1] == '/'))
        << what << " #" << i << ": addr2line " << full << ", kleak " << rel;
  }
}

// nm's value of a function (in the .ko, its offset in .text) and its size.
uint64_t nm_value(const std::string& file, const std::string& fn, uint64_t* size = nullptr) {
  std::string out = run(fmt::format("nm -S {} | awk '$4 == \"{}\" {{ print $1, $2 }}'", file, fn));
  if (out.empty()) return 0;
  std::istringstream in(out);
  std::string value, sz;
  in >> value >> sz;
  if (size) *size = std::stoull(sz, nullptr, 16);
  return std::stoull(value, nullptr, 16);
}

TEST(DwarfFile, LinesAndInlinesMatchAddr2lineInALinkedProgram) {
  auto f = DwarfFile::open(kVmlinux);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ((*f)->build_id().size(), 40u);
  size_t inlined = 0;
  for (const char* fn : {"outer_alloc", "plain_alloc", "main"}) {
    auto start = (*f)->function_address(fn);
    ASSERT_TRUE(start) << fn;
    uint64_t size = 0;
    EXPECT_EQ(*start, nm_value(kVmlinux, fn, &size));
    ASSERT_GT(size, 0u) << fn;
    for (uint64_t off = 0; off < size; off += 3) {
      const SourceInfo& s = (*f)->lookup(*start + off);
      inlined += s.inlined.size();
      expect_same(addr2line(kVmlinux, *start + off, false), ours(s, fn), fmt::format("{}+0x{:x}", fn, off));
    }
  }
  // outer_alloc holds middle_inline holds inner_inline: the walk saw them.
  EXPECT_GT(inlined, 0u);
}

TEST(DwarfFile, LinesAndInlinesMatchAddr2lineInARelocatableModule) {
  auto f = DwarfFile::open(kModule);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ((*f)->build_id().size(), 40u);
  size_t inlined = 0;
  for (const char* fn : {"outer_alloc", "plain_alloc"}) {
    auto start = (*f)->function_address(fn);
    ASSERT_TRUE(start) << fn;
    uint64_t size = 0;
    const uint64_t in_text = nm_value(kModule, fn, &size);
    ASSERT_GT(size, 0u) << fn;
    for (uint64_t off = 0; off < size; off += 3) {
      const SourceInfo& s = (*f)->lookup(*start + off);
      inlined += s.inlined.size();
      expect_same(addr2line(kModule, in_text + off, true), ours(s, fn), fmt::format("{}+0x{:x}", fn, off));
    }
  }
  EXPECT_GT(inlined, 0u);
}

TEST(DwarfFile, NoDwarfAndNoFileAreErrors) {
  EXPECT_FALSE(DwarfFile::open(kDir + "/no-such-file").ok());
  // A stripped copy: an ELF file without DWARF.
  const std::string stripped = kDir + "/vmlinux.stripped";
  ASSERT_EQ(std::system(fmt::format("strip -g -o {} {}", stripped, kVmlinux).c_str()), 0);
  auto f = DwarfFile::open(stripped);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("no DWARF"), std::string::npos) << f.error().message;
}

TEST(BuildId, NotesAsSysfsHoldThemReadAsLibdwflReadsTheFile) {
  const std::string notes = kDir + "/notes.bin";
  ASSERT_EQ(std::system(fmt::format("objcopy -O binary --only-section=.note.gnu.build-id {} {}", kModule, notes).c_str()),
            0);
  std::ifstream in(notes, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto f = DwarfFile::open(kModule);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(build_id_from_notes(bytes), (*f)->build_id());
  EXPECT_EQ(build_id_from_notes(""), "");
  EXPECT_EQ(build_id_from_notes(bytes.substr(0, 14)), "");  // truncated
}

// A machine root with the fixtures where the kernel's would be.
class FakeRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fmt::format("{}/root-{}-{}/", kDir, getpid(), ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    auto f = DwarfFile::open(kVmlinux);
    ASSERT_TRUE(f.ok());
    vmlinux_id_ = (*f)->build_id();
    auto m = DwarfFile::open(kModule);
    ASSERT_TRUE(m.ok());
    module_id_ = (*m)->build_id();
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void put(const std::string& path, const std::string& bytes) {
    std::filesystem::create_directories(std::filesystem::path(root_ + path).parent_path());
    std::ofstream(root_ + path, std::ios::binary) << bytes;
  }
  void copy(const std::string& from, const std::string& path) {
    std::filesystem::create_directories(std::filesystem::path(root_ + path).parent_path());
    std::filesystem::copy_file(from, root_ + path);
  }
  static std::string note(const std::string& id_hex) {
    std::string n(12, '\0');
    const uint32_t h[3] = {4, static_cast<uint32_t>(id_hex.size() / 2), 3};
    std::memcpy(n.data(), h, sizeof h);
    n += std::string("GNU\0", 4);
    for (size_t i = 0; i < id_hex.size(); i += 2) n += static_cast<char>(std::stoi(id_hex.substr(i, 2), nullptr, 16));
    return n;
  }
  KernelDebugConfig config() const { return {"", "9.9.9-test", root_}; }
  // A kernel whose kallsyms lists dwarfy_mod's functions at `base` once it
  // is loaded, with source lines from this root.
  KernelSymbols symbols_with(uint64_t base) {
    kallsyms_ = fmt::format("{:x} t outer_alloc\t[dwarfy_mod]\n{:x} t plain_alloc\t[dwarfy_mod]\n", base, base + 0x50);
    KernelSymbols ks(Ksyms::parse("ffffffff81000000 T _stext\n"), [this]() -> Result<Ksyms> { return Ksyms::parse(kallsyms_); });
    auto d = KernelDebugInfo::open(config(), {});
    EXPECT_TRUE(d.ok());
    if (d.ok()) ks.set_debug_info(std::move(*d));
    return ks;
  }
  static ModuleRecord module_at(uint64_t base, uint64_t load_ns) {
    ModuleRecord rec;
    rec.name = "dwarfy_mod";
    rec.text_base = base;
    rec.text_size = 0x1000;
    rec.load_ns = load_ns;
    return rec;
  }
  std::string kallsyms_;
  std::string root_, vmlinux_id_, module_id_;
};

TEST_F(FakeRoot, FindsTheRunningKernelsVmlinuxAndUndoesKaslr) {
  copy(kVmlinux, "usr/lib/debug/boot/vmlinux-9.9.9-test");
  put("sys/kernel/notes", note(vmlinux_id_));
  auto file = DwarfFile::open(kVmlinux);
  const uint64_t file_stext = *(*file)->function_address("_stext");
  const uint64_t slide = 0x3e000000;  // KASLR
  // kallsyms kept _text for that address, not _stext (x86: the same).
  auto d = KernelDebugInfo::open(config(), {{"_text", file_stext + slide + 0x40}, {"_stext", file_stext + slide}});
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_NE((*d)->vmlinux(), nullptr) << (*d)->notes().front();
  // A return address 0x14 into outer_alloc: the line of the byte before it.
  const uint64_t outer = *(*file)->function_address("outer_alloc");
  SourceInfo s = (*d)->core(outer + 0x14 + slide);
  expect_same(addr2line(kVmlinux, outer + 0x13, false), ours(s, "outer_alloc"), "core frame");
}

TEST_F(FakeRoot, AnotherBuildsVmlinuxIsNotUsed) {
  copy(kVmlinux, "usr/lib/debug/boot/vmlinux-9.9.9-test");
  put("sys/kernel/notes", note(module_id_));  // the running kernel is another build
  auto d = KernelDebugInfo::open(config(), {{"_stext", 0xffffffff81000000}});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->vmlinux(), nullptr);
  EXPECT_NE((*d)->notes().front().find("is not the running kernel's"), std::string::npos) << (*d)->notes().front();
  // Named with --vmlinux, the same file is an error.
  KernelDebugConfig named = config();
  named.vmlinux = root_ + "usr/lib/debug/boot/vmlinux-9.9.9-test";
  auto e = KernelDebugInfo::open(named, {{"_stext", 0xffffffff81000000}});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("--vmlinux"), std::string::npos);
}

TEST_F(FakeRoot, ModulesAreFoundByNameAndBuildId) {
  copy(kModule, "lib/modules/9.9.9-test/extra/dwarfy-mod.ko");  // '-' in the file, '_' in the kernel
  put("sys/module/dwarfy_mod/notes/.note.gnu.build-id", note(module_id_));
  auto d = KernelDebugInfo::open(config(), {});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->vmlinux(), nullptr);  // none there: no core lines, modules still
  const std::string id = (*d)->module_build_id("dwarfy_mod");
  EXPECT_EQ(id, module_id_);
  SourceInfo s = (*d)->module("dwarfy_mod", id, "outer_alloc", 0x1d);
  expect_same(addr2line(kModule, nm_value(kModule, "outer_alloc") + 0x1c, true), ours(s, "outer_alloc"), "module frame");
  // Another build of the module (its ID as kleak saw it loaded): no lines.
  EXPECT_TRUE((*d)->module("dwarfy_mod", vmlinux_id_, "outer_alloc", 0x1d).empty());
  EXPECT_TRUE((*d)->module("dwarfy_mod", "", "outer_alloc", 0x1d).empty());
  EXPECT_TRUE((*d)->module("dwarfy_mod", id, "no_such_function", 4).empty());
}

// The whole path of a CI job's module: loaded after kleak started (its
// build ID read as kleak names it), unloaded before the report (sysfs has
// nothing then), and its frame still gets the .ko's lines.
TEST_F(FakeRoot, AnUnloadedModulesFramesGetTheLinesOfTheBuildThatWasLoaded) {
  copy(kModule, "lib/modules/9.9.9-test/extra/dwarfy_mod.ko");
  put("sys/module/dwarfy_mod/notes/.note.gnu.build-id", note(module_id_));
  const uint64_t base = 0xffffffffc0100000;
  ModuleRecord rec = module_at(base, 3);
  KernelSymbols ks = symbols_with(base);
  ASSERT_EQ(ks.update({rec}), 1u);
  rec.free_ns = 9;
  ks.update({rec});
  std::filesystem::remove_all(root_ + "sys/module/dwarfy_mod");
  Frame f = ks.frame(base + 0x1d, 0);
  ASSERT_EQ(f.symbol, "outer_alloc");
  EXPECT_TRUE(f.unloaded);
  ks.add_source(f);
  SourceInfo got{f.source, f.inlined};
  expect_same(addr2line(kModule, nm_value(kModule, "outer_alloc") + 0x1c, true), ours(got, "outer_alloc"),
              "unloaded module frame");
  // A core frame without a vmlinux: named, no line.
  Frame core = ks.frame(0xffffffff81000010, 0);
  ks.add_source(core);
  EXPECT_EQ(core.symbol, "_stext");
  EXPECT_TRUE(core.source.empty());
}

// A build ID sysfs did not have at the first look is read at a later one
// while the module is loaded.
TEST_F(FakeRoot, ABuildIdNotYetInSysfsIsReadAtALaterLook) {
  copy(kModule, "lib/modules/9.9.9-test/extra/dwarfy_mod.ko");
  const uint64_t base = 0xffffffffc0200000;
  ModuleRecord rec = module_at(base, 5);
  KernelSymbols ks = symbols_with(base);
  ASSERT_EQ(ks.update({rec}), 1u);  // named; sysfs has no notes yet
  put("sys/module/dwarfy_mod/notes/.note.gnu.build-id", note(module_id_));
  ks.update({rec});  // the next look: still loaded, its notes are there now
  rec.free_ns = 9;
  ks.update({rec});
  std::filesystem::remove_all(root_ + "sys/module/dwarfy_mod");
  Frame f = ks.frame(base + 0x1d, 0);
  ks.add_source(f);
  EXPECT_FALSE(f.source.empty());
  EXPECT_TRUE(f.unloaded);
}

// An unload while kallsyms is read (a slow read in an emulated guest)
// takes sysfs away: the build ID was read at first sight of the load.
TEST_F(FakeRoot, TheBuildIdIsReadBeforeTheSlowKallsymsRead) {
  copy(kModule, "lib/modules/9.9.9-test/extra/dwarfy_mod.ko");
  put("sys/module/dwarfy_mod/notes/.note.gnu.build-id", note(module_id_));
  const uint64_t base = 0xffffffffc0300000;
  ModuleRecord rec = module_at(base, 7);
  KernelSymbols ks(Ksyms::parse("ffffffff81000000 T _stext\n"), [&]() -> Result<Ksyms> {
    std::filesystem::remove_all(root_ + "sys/module/dwarfy_mod");  // rmmod meanwhile
    return Ksyms::parse(fmt::format("{:x} t outer_alloc\t[dwarfy_mod]\n", base));
  });
  auto d = KernelDebugInfo::open(config(), {});
  ASSERT_TRUE(d.ok());
  ks.set_debug_info(std::move(*d));
  ASSERT_EQ(ks.update({rec}), 1u);
  rec.free_ns = 9;
  ks.update({rec});
  Frame f = ks.frame(base + 0x1d, 0);
  ks.add_source(f);
  EXPECT_FALSE(f.source.empty());
}

}  // namespace
}  // namespace kleak
