#include "model/family.h"

namespace kleak {

bool FamilySet::has(uint32_t family) const {
  switch (family) {
    case KLEAK_FAMILY_KMALLOC:
    case KLEAK_FAMILY_KMEM_CACHE: return slab;
    case KLEAK_FAMILY_PAGE: return page;
    case KLEAK_FAMILY_PERCPU: return percpu;
    case KLEAK_FAMILY_VMALLOC: return vmalloc;
    default: return false;
  }
}

Status parse_families(std::string_view list, FamilySet& out) {
  FamilySet set{false, false, false, false};
  if (list.empty()) return make_error("--family wants a list such as slab,page", 0);
  for (;;) {
    size_t comma = list.find(',');
    std::string_view name = list.substr(0, comma);
    if (name.empty()) return make_error("--family: an empty name in the list (slab, page, percpu, vmalloc, all)", 0);
    if (name == "slab") set.slab = true;
    else if (name == "page") set.page = true;
    else if (name == "percpu") set.percpu = true;
    else if (name == "vmalloc") set.vmalloc = true;
    else if (name == "all") set = FamilySet{true, true, true, true};
    else return make_error("--family: unknown family '" + std::string(name) + "' (slab, page, percpu, vmalloc, all)", 0);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  out = set;
  return {};
}

FamilySet named_families(std::string_view list) {
  FamilySet set{false, false, false, false};
  for (;;) {
    size_t comma = list.find(',');
    std::string_view name = list.substr(0, comma);
    set.slab |= name == "slab";
    set.page |= name == "page";
    set.percpu |= name == "percpu";
    set.vmalloc |= name == "vmalloc";
    if (comma == std::string_view::npos) return set;
    list.remove_prefix(comma + 1);
  }
}

std::string families_text(const FamilySet& set) {
  std::string s;
  auto add = [&s](bool on, const char* name) {
    if (on) s += (s.empty() ? "" : ",") + std::string(name);
  };
  add(set.slab, "slab");
  add(set.page, "page");
  add(set.percpu, "percpu");
  add(set.vmalloc, "vmalloc");
  return s;
}

uint32_t family_part(uint32_t family) {
  switch (family) {
    case KLEAK_FAMILY_KMEM_CACHE: return KLEAK_PART_KMEM_CACHE;
    case KLEAK_FAMILY_PAGE: return KLEAK_PART_PAGE;
    case KLEAK_FAMILY_PERCPU: return KLEAK_PART_PERCPU;
    case KLEAK_FAMILY_VMALLOC: return KLEAK_PART_VMALLOC;
    default: return KLEAK_PART_CORE;
  }
}

const char* family_name(uint32_t family) {
  switch (family) {
    case KLEAK_FAMILY_KMALLOC:
    case KLEAK_FAMILY_KMEM_CACHE: return "slab";
    case KLEAK_FAMILY_PAGE: return "page";
    case KLEAK_FAMILY_PERCPU: return "percpu";
    case KLEAK_FAMILY_VMALLOC: return "vmalloc";
    default: return "unknown";
  }
}

}  // namespace kleak
