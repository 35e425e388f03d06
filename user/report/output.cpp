#include "report/output.h"

#include <cerrno>

#include "report/folded.h"
#include "report/pprof.h"
#include "report/prometheus.h"
#include "util/log.h"

namespace kleak {

Result<Output> open_output(const std::string& path, OutputFormat format) {
  if (!is_snapshot_format(format)) return Output::open(path);
  return Output::open_replacing(path, format == OutputFormat::prometheus ? 0644 : 0600);
}

Result<std::string> render_report(const Report& r, const FormatOptions& f) {
  switch (f.format) {
    case OutputFormat::text:
      return render_text(r) + "\n";
    case OutputFormat::json:
    case OutputFormat::jsonl:
      // Compact: one document per line. Bytes that are not UTF-8 (a comm,
      // a peeked string) become U+FFFD instead of failing the report.
      return to_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    case OutputFormat::folded:
      return render_folded(r, f.folded_count ? FoldedValue::count : FoldedValue::bytes);
    case OutputFormat::pprof:
      return render_pprof(r);
    case OutputFormat::prometheus:
      return render_prometheus(r);
  }
  return render_text(r) + "\n";
}

Status write_report(const Report& r, const FormatOptions& f, Output& out) {
  auto bytes = render_report(r, f);
  if (!bytes) return bytes.error();
  if (!out.write(*bytes)) {
    int err = errno;
    return make_error(out.path().empty() ? "write report" : "write report to " + out.path(), err);
  }
  return {};
}

std::optional<int> print_report(Result<Report> r, const FormatOptions& f, Output& out) {
  if (!r) {
    log_error("{}", r.error().message);
    return kExitFailure;
  }
  if (auto st = write_report(*r, f, out); !st) {
    if (st.error().err == EPIPE) return kExitOk;
    log_error("{}", st.error().message);
    return kExitFailure;
  }
  return std::nullopt;
}

}  // namespace kleak
