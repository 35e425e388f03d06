#include "model/pin_meta.h"

#include <limits>

#include <nlohmann/json.hpp>

namespace kleak {
namespace {

using nlohmann::json;

constexpr const char* kSchema = "kleak/pin/v1";

// Reads field `key` of object `j` into `out`; false (and `why` set) when it
// is missing or of another type. Unsigned fields must fit their type.
template <typename T>
bool get_field(const json& j, const char* key, T& out, std::string& why) {
  auto it = j.find(key);
  if (it == j.end()) {
    why = std::string("no field ") + key;
    return false;
  }
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) {
      why = std::string(key) + " is not a string";
      return false;
    }
    out = it->template get<std::string>();
  } else {
    if (!it->is_number_unsigned() ||
        it->template get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      why = std::string(key) + " is not an unsigned integer of its range";
      return false;
    }
    out = static_cast<T>(it->template get<uint64_t>());
  }
  return true;
}

bool get_strings(const json& j, const char* key, std::vector<std::string>& out, std::string& why) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) {
    why = std::string(key) + " is not a list";
    return false;
  }
  for (const auto& s : *it) {
    if (!s.is_string()) {
      why = std::string(key) + " holds a non-string";
      return false;
    }
    out.push_back(s.get<std::string>());
  }
  return true;
}

}  // namespace

std::string pin_meta_to_json(const PinMeta& m) {
  json degraded = json::array();
  for (const Degraded& d : m.degraded) degraded.push_back({{"part", d.part}, {"reason", d.reason}});
  json j = {{"schema", kSchema},
            {"version", m.version},
            {"abi", m.abi},
            {"boot_id", m.boot_id},
            {"kernel", m.kernel},
            {"start_mono_ns", m.start_mono_ns},
            {"start_unix_ns", m.start_unix_ns},
            {"start_pid", m.start_pid},
            {"args", m.args},
            {"min_size_bytes", m.min_size_bytes},
            {"max_size_bytes", m.max_size_bytes},
            {"pid", m.pid},
            {"cache", m.cache},
            {"max_allocs", m.max_allocs},
            {"stack_storage_size", m.stack_storage_size},
            {"stack_sample_every", m.stack_sample_every},
            {"attached", m.attached},
            {"missing", m.missing},
            {"degraded", degraded},
            {"meminfo", m.meminfo}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<PinMeta> parse_pin_meta(std::string_view text) {
  if (text.size() > kPinMetaMaxBytes) return make_error("session metadata larger than 16 KiB", 0);
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return make_error("session metadata is not a JSON object", 0);
  PinMeta m;
  std::string schema, why;
  if (!get_field(j, "schema", schema, why)) return make_error("session metadata: " + why, 0);
  if (schema != kSchema) return make_error("session metadata has schema " + schema + ", not " + kSchema, 0);
  bool ok = get_field(j, "version", m.version, why) && get_field(j, "abi", m.abi, why) &&
            get_field(j, "boot_id", m.boot_id, why) && get_field(j, "kernel", m.kernel, why) &&
            get_field(j, "start_mono_ns", m.start_mono_ns, why) && get_field(j, "start_unix_ns", m.start_unix_ns, why) &&
            get_field(j, "start_pid", m.start_pid, why) && get_strings(j, "args", m.args, why) &&
            get_field(j, "min_size_bytes", m.min_size_bytes, why) &&
            get_field(j, "max_size_bytes", m.max_size_bytes, why) && get_field(j, "pid", m.pid, why) &&
            get_field(j, "cache", m.cache, why) && get_field(j, "max_allocs", m.max_allocs, why) &&
            get_field(j, "stack_storage_size", m.stack_storage_size, why) &&
            get_field(j, "stack_sample_every", m.stack_sample_every, why) &&
            get_strings(j, "attached", m.attached, why) && get_strings(j, "missing", m.missing, why);
  if (!ok) return make_error("session metadata: " + why, 0);
  // Optional: metadata written before kleak dropped refused parts has none.
  if (auto d = j.find("degraded"); d != j.end()) {
    if (!d->is_array()) return make_error("session metadata: degraded is not a list", 0);
    for (const auto& x : *d) {
      Degraded one;
      if (!x.is_object() || !get_field(x, "part", one.part, why) || !get_field(x, "reason", one.reason, why))
        return make_error("session metadata: degraded holds a malformed entry", 0);
      m.degraded.push_back(std::move(one));
    }
  }
  auto mi = j.find("meminfo");
  if (mi == j.end() || !mi->is_object()) return make_error("session metadata: meminfo is not an object", 0);
  for (auto it = mi->begin(); it != mi->end(); ++it) {
    if (!it.value().is_number_unsigned()) return make_error("session metadata: meminfo holds a non-count", 0);
    m.meminfo[it.key()] = it.value().get<uint64_t>();
  }
  if (m.min_size_bytes > m.max_size_bytes) return make_error("session metadata: min_size_bytes > max_size_bytes", 0);
  if (m.max_allocs == 0 || m.stack_storage_size == 0)
    return make_error("session metadata: a map size is 0", 0);
  if (m.stack_sample_every == 0) return make_error("session metadata: stack_sample_every is 0", 0);
  return m;
}

Status pin_incompatibility(const PinMeta& m, const std::string& version, const std::string& abi,
                           const std::string& boot_id) {
  if (m.boot_id != boot_id)
    return make_error("the pinned session is from another boot (" + m.boot_id + "); this is " + boot_id, 0);
  if (m.version != version) return make_error("the pinned session was started by kleak " + m.version + ", this is " + version, 0);
  if (m.abi != abi) return make_error("the pinned session's maps have another layout (ABI " + m.abi + ", this kleak has " + abi + ")", 0);
  return {};
}

}  // namespace kleak
