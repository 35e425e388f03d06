#include "report/pprof.h"

#include <fmt/format.h>
#include <zlib.h>

#include <cstdlib>
#include <map>
#include <unordered_map>

#include "profile.pb.h"

namespace kleak {
namespace {

namespace pp = perftools::profiles;

// Interns strings into the profile's string table (index 0 is "").
class Strings {
 public:
  explicit Strings(pp::Profile& p) : p_(p) { id(""); }
  int64_t id(const std::string& s) {
    auto [it, fresh] = ids_.try_emplace(s, static_cast<int64_t>(p_.string_table_size()));
    if (fresh) p_.add_string_table(s);
    return it->second;
  }

 private:
  pp::Profile& p_;
  std::unordered_map<std::string, int64_t> ids_;
};

constexpr uint64_t kMappingId = 1;

// "mm/slub.c:4321" -> {"mm/slub.c", 4321}; {"", 0} without a line.
std::pair<std::string, int64_t> file_and_line(const std::string& source) {
  const size_t colon = source.rfind(':');
  if (colon == std::string::npos) return {"", 0};
  return {source.substr(0, colon), std::strtoll(source.c_str() + colon + 1, nullptr, 10)};
}

// One Function per name and file, one Location per distinct frame: its
// name, line and inlined functions. pprof wants a location's lines
// innermost first, the function they were inlined into last.
class Frames {
 public:
  Frames(pp::Profile& p, Strings& strings) : p_(p), strings_(strings) {}
  uint64_t location(const Frame& f) {
    std::string name = f.symbol.empty() ? (f.addr ? fmt::format("0x{:x}", f.addr) : std::string("?")) : f.symbol;
    if (!f.module.empty()) name += " [" + f.module + "]";
    std::string key = name + "\n" + f.source;
    for (const InlinedCall& c : f.inlined) key += "\n" + c.symbol + "\n" + c.source;
    auto [it, fresh] = locations_.try_emplace(key, locations_.size() + 1);
    if (fresh) {
      pp::Location* loc = p_.add_location();
      loc->set_id(it->second);
      loc->set_mapping_id(kMappingId);
      loc->set_address(f.addr);  // 0 when hidden (--hide-addresses) or unknown
      for (const InlinedCall& c : f.inlined) add_line(loc, c.symbol.empty() ? "?" : c.symbol, c.symbol, c.source);
      add_line(loc, name, f.symbol.empty() ? name : f.symbol, f.source);
    }
    return it->second;
  }

 private:
  void add_line(pp::Location* loc, const std::string& name, const std::string& system_name, const std::string& source) {
    auto [file, line] = file_and_line(source);
    auto [it, fresh] = functions_.try_emplace(name + "\n" + file, functions_.size() + 1);
    if (fresh) {
      pp::Function* fn = p_.add_function();
      fn->set_id(it->second);
      fn->set_name(strings_.id(name));
      fn->set_system_name(strings_.id(system_name));
      fn->set_filename(strings_.id(file));
    }
    pp::Line* l = loc->add_line();
    l->set_function_id(it->second);
    l->set_line(line);
  }

  pp::Profile& p_;
  Strings& strings_;
  std::map<std::string, uint64_t> locations_;
  std::map<std::string, uint64_t> functions_;
};

}  // namespace

std::string pprof_profile_bytes(const Report& r) {
  pp::Profile p;
  Strings strings(p);
  auto* objects = p.add_sample_type();
  objects->set_type(strings.id("inuse_objects"));
  objects->set_unit(strings.id("count"));
  auto* space = p.add_sample_type();
  space->set_type(strings.id("inuse_space"));
  space->set_unit(strings.id("bytes"));
  p.set_default_sample_type(strings.id("inuse_space"));
  pp::Mapping* m = p.add_mapping();
  m->set_id(kMappingId);
  m->set_memory_start(0);
  m->set_memory_limit(~0ull);
  m->set_filename(strings.id("[kernel.kallsyms]"));
  m->set_has_functions(true);
  p.set_time_nanos(static_cast<int64_t>(r.time_unix_ns));
  p.set_duration_nanos(static_cast<int64_t>(r.elapsed_s * 1e9));
  p.add_comment(strings.id(fmt::format("kleak report #{} on kernel {}: allocations older than {} ms", r.ctx.seq,
                                       r.ctx.kernel, r.opts ? r.opts->min_age_ms : 0)));
  const int64_t hash_key = strings.id("stack_hash");
  Frames frames(p, strings);
  for (const StackReport& s : r.stacks) {
    pp::Sample* smp = p.add_sample();
    if (!s.stack_error.empty()) {
      smp->add_location_id(frames.location(s.call_site));
    } else {
      for (const Frame& f : s.frames) smp->add_location_id(frames.location(f));  // innermost first, as pprof wants
    }
    smp->add_value(static_cast<int64_t>(s.count));
    smp->add_value(static_cast<int64_t>(s.bytes));
    pp::Label* l = smp->add_label();
    l->set_key(hash_key);
    l->set_str(strings.id(stack_hash_hex(s.stack_hash)));
  }
  return p.SerializeAsString();
}

Result<std::string> gzip(const std::string& data) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return make_error("gzip: deflateInit2 failed", 0);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return make_error(fmt::format("gzip: deflate returned {}", rc), 0);
  return out;
}

Result<std::string> render_pprof(const Report& r) { return gzip(pprof_profile_bytes(r)); }

}  // namespace kleak
