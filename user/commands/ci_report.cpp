#include "commands/ci_report.h"

#include <cerrno>

#include <fmt/format.h>

#include "util/log.h"

namespace kleak {

int write_ci_verdict(const Report& r, const Verdict& v, const TraceOptions& opts, const CiRun& run, Output& out) {
  const CiOptions& ci = opts.ci;
  nlohmann::json j = to_json(r);
  j["ci"] = verdict_json(v, ci, ci.command);
  j["ci"]["command_status"] = run.command_status ? nlohmann::json(*run.command_status) : nlohmann::json(nullptr);
  j["ci"]["traced_s"] = run.traced_s;
  const std::string json_line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::string text = render_text(r);
  text += fmt::format("\n{}: {}", run.tool, v.summary);
  if (v.suppressed_baseline + v.suppressed_ignored + v.suppressed_reclaimable + v.suppressed_unverified +
          v.suppressed_known_cache >
      0)
    text += fmt::format(
        " (not judged: {} baseline, {} ignored, {} reclaimable-cache, {} unverified, {} known-cache stacks)",
        v.suppressed_baseline, v.suppressed_ignored, v.suppressed_reclaimable, v.suppressed_unverified,
        v.suppressed_known_cache);
  if (v.reclaim.ran)
    text += fmt::format("; reclaim freed {} bytes in {} allocations at {} stacks (cache-owned, not judged)",
                        v.reclaim.freed_bytes, v.reclaim.freed_count, v.reclaim.freed_stacks);
  else if (!v.reclaim.skipped.empty())
    text += fmt::format("; no reclaim: {}", v.reclaim.skipped);
  if (run.command_status) text += fmt::format("; command exited {}", *run.command_status);
  text += "\n";

  const bool as_json = opts.format == OutputFormat::json || opts.format == OutputFormat::jsonl;
  if (!out.write(as_json ? json_line : text) && errno != EPIPE) {
    const int err = errno;  // before anything else can change it
    const std::string where = out.path().empty() ? "" : " to " + out.path();
    log_error("{}", make_error("write report" + where, err).message);
    return kCiIncomplete;
  }
  for (const auto& [path, body] : {std::pair{ci.report_json_path, json_line},
                                   std::pair{ci.junit_path, junit_xml(v, text, run.elapsed_s, run.testcase)},
                                   std::pair{ci.ktap_path, ktap(v, text, run.testcase)}}) {
    if (path.empty()) continue;
    if (auto why = write_file(path, body); !why) {
      log_error("{}", why.error().message);
      return kCiIncomplete;
    }
  }
  if (as_json && !opts.quiet) fmt::print(stderr, "{}: {}\n", run.tool, v.summary);
  return v.status;
}

int judge_final_report(Pipeline& pipeline, const TraceOptions& opts, const std::set<std::string>& baseline,
                       Verdict& v, CiRun run, Output& out) {
  auto select = [&](const Aggregate& all, const SnapshotInfo& snap, Symbolizer& syms, const StackSource& stacks) {
    return judged_groups(all, snap, opts.ci, baseline, syms, stacks, v);
  };
  auto r = pipeline.next(ReportRequest{true, select});
  if (!r) {
    log_error("{}", r.error().message);
    return kCiIncomplete;
  }
  v.complete = r->complete;
  decide(v, opts.ci);
  run.elapsed_s = static_cast<double>(monotonic_ns() - pipeline.start_ns()) / 1e9;
  if (run.traced_s == 0) run.traced_s = run.elapsed_s;
  return write_ci_verdict(*r, v, opts, run, out);
}

}  // namespace kleak
