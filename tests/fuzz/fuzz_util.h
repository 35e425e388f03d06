// Helpers shared by the fuzz targets: the input as text, as argv words, and
// a stream that discards what it is given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace kleak::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// argv[0] "kleak", then one word per NUL- or newline-separated piece, empty
// words kept (CLI11 must cope with them too). Capped: a command line has
// few words, and CLI11's cost grows with their number.
inline std::vector<std::string> argv_words(std::string_view text, size_t max_words = 64) {
  std::vector<std::string> args{"kleak"};
  while (!text.empty() && args.size() <= max_words) {
    size_t end = text.find_first_of(std::string_view("\0\n", 2));
    args.emplace_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return args;
}

// An ostream without a buffer: writes set badbit and go nowhere, but the
// text (help, errors) is still formatted.
class NullStream : public std::ostream {
 public:
  NullStream() : std::ostream(nullptr) {}
};

}  // namespace kleak::fuzz
