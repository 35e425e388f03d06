// One entry point from a Report to the bytes of the format asked for, and to
// where they go. Every command that prints a report (trace, serve, the
// pinned-mode report) goes through here, so each format behaves the same.
#pragma once

#include <optional>
#include <string>

#include "report/report.h"
#include "util/exit_status.h"
#include "util/result.h"
#include "util/sys.h"

namespace kleak {

// text and json (one compact document per line) are the stream formats;
// jsonl names that JSON Lines stream explicitly. folded, pprof and
// prometheus are snapshots: with --output each report replaces the file.
enum class OutputFormat { text, json, jsonl, folded, pprof, prometheus };

// Snapshot formats replace --output with each report instead of appending.
inline bool is_snapshot_format(OutputFormat f) {
  return f == OutputFormat::folded || f == OutputFormat::pprof || f == OutputFormat::prometheus;
}


struct FormatOptions {
  OutputFormat format = OutputFormat::text;
  bool folded_count = false;  // folded: count allocations instead of bytes
};

// Opens --output for `format`: appended to for the stream formats, replaced
// atomically with each report for the snapshot ones (is_snapshot_format).
// The Prometheus textfile is 0644 so node_exporter can read it; everything
// else 0600 (reports name kernel addresses).
Result<Output> open_output(const std::string& path, OutputFormat format);

// The report as `f.format` prints it: text and JSON end with a newline; the
// pprof profile is binary (gzip). An error only when compressing fails.
Result<std::string> render_report(const Report& r, const FormatOptions& f);

// Renders and writes (replaces, for snapshot formats) one report. The error
// keeps errno in Error::err (EPIPE: the reader went away).
Status write_report(const Report& r, const FormatOptions& f, Output& out);

// One periodic report of a run loop, built or not: writes it and returns
// nothing to go on, or the exit status to stop with (kExitOk when the
// reader went away, e.g. `| head`; kExitFailure after logging any other
// error).
std::optional<int> print_report(Result<Report> r, const FormatOptions& f, Output& out);

}  // namespace kleak
