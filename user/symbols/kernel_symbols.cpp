#include "symbols/kernel_symbols.h"

#include <algorithm>

namespace kleak {

KernelSymbols::KernelSymbols(Ksyms at_start, Reader reader) : core_(std::move(at_start)), reader_(std::move(reader)) {}

size_t KernelSymbols::update(const std::vector<ModuleRecord>& records) {
  std::vector<Image*> to_name;
  for (const ModuleRecord& r : records) {
    if (r.load_ns == 0) {  // loaded before kleak: its unload alone
      bool known = std::any_of(unloads_.begin(), unloads_.end(),
                               [&](const ModuleRecord& u) { return u.free_ns == r.free_ns; });
      if (!known) unloads_.push_back(r);
      continue;
    }
    auto [it, added] = images_.try_emplace(r.load_ns, Image{r, {}, false, 0, {}});
    Image& img = it->second;
    img.rec.free_ns = r.free_ns;
    // The build ID at first sight of the load, before the kallsyms read
    // below (tens of milliseconds; far more in an emulated guest) lets an
    // unload take sysfs away; and again at each look while it is loaded
    // and sysfs had none.
    if (debug_ && img.build_id.empty() && img.rec.loaded()) img.build_id = debug_->module_build_id(img.rec.name);
    if (!img.named && img.rec.loaded() && img.reads < kMaxReads) to_name.push_back(&img);
  }
  // Hidden addresses (kptr_restrict): kallsyms would name nothing.
  if (to_name.empty() || core_.addresses_hidden()) return 0;
  auto now = reader_();
  if (!now) return 0;  // named at a later update, if the module is still there
  size_t named = 0;
  for (Image* img : to_name) {
    ++img->reads;
    for (auto& [addr, name] : now->module_symbols(img->rec.name))
      if (img->rec.covers(addr)) img->syms.emplace_back(addr, std::move(name));
    // An image kallsyms does not list (yet) stays unnamed: tried again.
    if (img->syms.empty()) continue;
    img->named = true;
    ++named;
  }
  return named;
}

const KernelSymbols::Image* KernelSymbols::image_of(uint64_t addr) const {
  const Image* best = nullptr;
  for (const auto& [load_ns, img] : images_) {
    if (!img.rec.covers(addr)) continue;
    // The one loaded now, else the latest to be unloaded.
    if (!best || (img.rec.loaded() && !best->rec.loaded()) ||
        (img.rec.loaded() == best->rec.loaded() && img.rec.load_ns > best->rec.load_ns))
      best = &img;
  }
  return best;
}

bool KernelSymbols::unloaded_since_start(const std::string& module, uint64_t addr) const {
  return std::any_of(unloads_.begin(), unloads_.end(),
                     [&](const ModuleRecord& u) { return u.name == module && u.covers(addr); });
}

Frame KernelSymbols::frame(uint64_t addr, uint32_t tgid) {
  if (const Image* img = image_of(addr)) {
    Frame f;
    f.addr = addr;
    f.module = img->rec.name;
    f.unloaded = !img->rec.loaded();
    auto it = std::upper_bound(img->syms.begin(), img->syms.end(), addr,
                               [](uint64_t a, const std::pair<uint64_t, std::string>& s) { return a < s.first; });
    // A symbol of the same section: init text has its own.
    if (it != img->syms.begin() && img->rec.in_init(std::prev(it)->first) == img->rec.in_init(addr)) {
      f.symbol = std::prev(it)->second;
      f.offset = addr - std::prev(it)->first;
      return f;
    }
    const bool init = img->rec.in_init(addr);
    f.offset = addr - (init ? img->rec.init_base : img->rec.text_base);
    f.unknown = init ? "module init text" : "module text not in kallsyms";
    return f;
  }
  Frame f = core_.frame(addr, tgid);
  if (!f.module.empty() && unloaded_since_start(f.module, addr)) f.unloaded = true;
  return f;
}

void KernelSymbols::set_debug_info(std::unique_ptr<KernelDebugInfo> debug) {
  debug_ = std::move(debug);
  start_ids_.clear();
  if (debug_) start_ids_ = debug_->loaded_module_ids();
}

void KernelSymbols::add_source(Frame& f) {
  if (!debug_ || f.addr == 0) return;
  SourceInfo s;
  if (f.module.empty()) {
    s = debug_->core(f.addr);
  } else if (!f.symbol.empty()) {
    const Image* img = image_of(f.addr);
    std::string id;
    if (img) {
      id = img->build_id;
    } else if (auto it = start_ids_.find(f.module); it != start_ids_.end()) {
      id = it->second;
    }
    s = debug_->module(f.module, id, f.symbol, f.offset);
  }
  f.source = std::move(s.source);
  f.inlined = std::move(s.inlined);
}

}  // namespace kleak
