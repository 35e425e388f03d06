// pprof's profile.proto, gzipped: `go tool pprof -top kleak.pb.gz`.
//
// Two sample types, inuse_objects/count and inuse_space/bytes (the default),
// as Go's heap profiles name what is still allocated. Kernel frames become
// Functions and Locations in one Mapping named [kernel.kallsyms], with
// has_functions set: kleak resolved the names, pprof cannot (it symbolizes
// no kernel mappings). Built with Debian's protobuf-lite from user/
// profile.proto, compressed with zlib.
#pragma once

#include <string>

#include "report/report.h"
#include "util/result.h"

namespace kleak {

// Every stack of the report, one Sample each, labelled with its stack_hash.
Result<std::string> render_pprof(const Report& r);

// The serialized, uncompressed profile (render_pprof gzips this).
std::string pprof_profile_bytes(const Report& r);

// gzip (RFC 1952) of `data`, as pprof reads it.
Result<std::string> gzip(const std::string& data);

}  // namespace kleak
