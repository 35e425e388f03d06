// One entry point from a Report to the bytes of the format asked for, and to
// where they go. Every command that prints a report (trace, serve, the
// pinned-mode report) goes through here, so each format behaves the same.
#pragma once

#include <string>

#include "options/options.h"
#include "report/report.h"
#include "util/result.h"
#include "util/sys.h"

namespace kleak {

struct FormatOptions {
  OutputFormat format = OutputFormat::text;
  bool folded_count = false;  // folded: count allocations instead of bytes
};

FormatOptions format_options(const TraceOptions& opts);

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

// One periodic report of a run loop, built or not: writes it and returns -1
// to go on, or the exit status to stop with (kExitOk when the reader went
// away, e.g. `| head`; kExitFailure after logging any other error).
int print_report(Result<Report> r, const FormatOptions& f, Output& out);

}  // namespace kleak
