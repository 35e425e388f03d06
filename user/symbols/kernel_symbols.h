// The kernel symbolizer of a whole run: kallsyms as read at start, and the
// modules that came and went since (model/modules.h). A module's symbols
// are read from kallsyms while it is loaded (update()) and kept after it
// is unloaded, so its frames print as `func+0x12 [mod, unloaded]`; each
// load is its own image, so a module loaded again at another address does
// not mix the two. An address no symbol covers says why. With debug info
// (kernel_dwarf.h), frames also get their source lines, a module's from
// the .ko whose build ID it had while loaded.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/modules.h"
#include "symbols/kernel_dwarf.h"
#include "symbols/ksyms.h"
#include "util/result.h"

namespace kleak {

class KernelSymbols : public Symbolizer {
 public:
  // How a fresh kallsyms is read when a new module needs naming.
  using Reader = std::function<Result<Ksyms>()>;
  explicit KernelSymbols(Ksyms at_start, Reader reader = [] { return Ksyms::load(); });

  // Takes the follower's records (all of them, every time): a load not
  // seen before becomes an image, named from one kallsyms read for all
  // new loads that are still loaded; unloads are marked. Returns the
  // number of images named by this call.
  size_t update(const std::vector<ModuleRecord>& records);

  Frame frame(uint64_t addr, uint32_t tgid) override;
  bool addresses_hidden() const override { return core_.addresses_hidden(); }
  // Source lines from now on: the build IDs of the modules loaded now are
  // read at once, so a module unloaded later still gets its lines.
  void set_debug_info(std::unique_ptr<KernelDebugInfo> debug);
  void add_source(Frame& f) override;
  const Ksyms& core() const { return core_; }
  size_t images() const { return images_.size(); }

 private:
  struct Image {
    ModuleRecord rec;
    std::vector<std::pair<uint64_t, std::string>> syms;  // sorted by address
    bool named = false;
    int reads = 0;  // kallsyms reads that tried to name it
    std::string build_id;  // read while loaded, with debug info only
  };
  // A load kallsyms does not list after this many reads (no text symbols,
  // kptr_restrict) stays unnamed: each read costs tens of milliseconds.
  static constexpr int kMaxReads = 3;
  const Image* image_of(uint64_t addr) const;
  // A module of the start-time kallsyms unloaded since (by its unload record).
  bool unloaded_since_start(const std::string& module, uint64_t addr) const;

  Ksyms core_;
  Reader reader_;
  std::map<uint64_t, Image> images_;       // by load_ns: loads seen while tracing
  std::vector<ModuleRecord> unloads_;      // unloads of modules loaded before kleak
  std::unique_ptr<KernelDebugInfo> debug_;
  std::map<std::string, std::string> start_ids_;  // build IDs of the modules loaded before
};

}  // namespace kleak
