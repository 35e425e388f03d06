// Allocator families kleak traces (--family slab,page,percpu,vmalloc): the
// set chosen, parsing the option, and names for reports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "model/abi.h"
#include "util/result.h"

namespace kleak {

// slab = kmalloc + kmem_cache (the default: what kleak always traced, at
// the same cost); the others are opt-in, each with its own programs and map.
struct FamilySet {
  bool slab = true;
  bool page = false;
  bool percpu = false;
  bool vmalloc = false;

  // Whether records of `family` (enum kleak_family) are traced.
  bool has(uint32_t family) const;
  bool only_slab() const { return slab && !page && !percpu && !vmalloc; }
  bool operator==(const FamilySet&) const = default;
};

// "slab,page" -> the set; "all" is every family. The error says in one
// line why the list is bad.
Status parse_families(std::string_view list, FamilySet& out);

// The families a valid --family list names one by one ("all" names none):
// those the user asked for by name.
FamilySet named_families(std::string_view list);

// "slab,page": the --family spelling of a set.
std::string families_text(const FamilySet& set);

// The --family name of a record's family: kmalloc and kmem_cache are "slab".
const char* family_name(uint32_t family);

// The part (enum kleak_part) a family's programs make up: kmalloc is the
// core, kmem_cache and the families beyond slab can be dropped.
uint32_t family_part(uint32_t family);

// The families beyond slab, each with its own live map and counters.
constexpr uint32_t kExtraFamilies[] = {KLEAK_FAMILY_PAGE, KLEAK_FAMILY_PERCPU, KLEAK_FAMILY_VMALLOC};

}  // namespace kleak
