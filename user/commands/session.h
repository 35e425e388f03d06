// One report after another from a LiveSource, written where --output says:
// what `kleak` (KernelSource) and `kleak user` (UserSource) run between
// their setup and their final report.
#pragma once

#include <optional>
#include <utility>

#include "options/options.h"
#include "pipeline/pipeline.h"
#include "report/output.h"

namespace kleak {

template <class Source>
class Session {
 public:
  // The source is built in place from `source_args`: the pipeline holds a
  // reference to it, so it never moves.
  template <class... SourceArgs>
  Session(const TraceOptions& opts, PipelineStages stages, std::optional<TraceStart> start, Output output,
          SourceArgs&&... source_args)
      : source_(std::forward<SourceArgs>(source_args)...),
        pipeline_(opts, source_, stages, std::move(start)),
        format_(format_options(opts)),
        output_(std::move(output)) {}
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Source& source() { return source_; }
  Pipeline& pipeline() { return pipeline_; }
  Output& output() { return output_; }

  // Prints one report. Returns an exit status to stop with, or nothing to go on.
  std::optional<int> report(bool final_report) { return print_report(pipeline_.next(final_report), format_, output_); }

 private:
  Source source_;
  Pipeline pipeline_;
  FormatOptions format_;
  Output output_;
};

}  // namespace kleak
