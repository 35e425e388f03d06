// What `kleak triage` sampled, what grew, and what to run next: the series
// (TriageData) go in, a ranked TriageReport with a next step comes out, and
// is printed as text or JSON. No /proc access here, so all of it is tested on
// synthetic series.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/trend.h"

namespace kleak {

// The meminfo fields triage follows, in report order, and the derived one.
extern const std::vector<std::string> kTriageMeminfoFields;
inline constexpr const char* kUnaccountedSeries = "unaccounted";

struct SlabSeries {
  std::vector<TrendPoint> points;  // bytes = active_objs x objsize
  uint64_t objsize = 0;
};

struct ProcessSeries {
  std::string comm;
  std::vector<TrendPoint> points;  // PSS bytes
  uint64_t last_rss_bytes = 0;
};

// How a source fared over the whole run.
struct SourceStatus {
  bool readable = false;
  std::string error;     // why not, when !readable
  size_t bad_lines = 0;  // skipped while parsing, summed over samples
};

struct TriageData {
  std::string kernel;
  double interval_s = 0;
  double duration_s = 0;  // as requested
  double elapsed_s = 0;   // first to last sample
  size_t samples = 0;
  bool interrupted = false;  // stopped early by SIGINT/SIGTERM
  double last_sample_t_s = 0;

  std::map<std::string, std::vector<TrendPoint>> meminfo;  // field (or "unaccounted") -> bytes
  std::map<std::string, SlabSeries> slab;                  // cache name -> series
  std::map<uint32_t, ProcessSeries> processes;             // pid -> series
  std::map<std::string, std::vector<std::string>> slab_aliases;

  SourceStatus meminfo_status;
  SourceStatus slabinfo_status;
  SourceStatus process_status;
  std::vector<std::string> unaccounted_absent;  // optional meminfo fields this kernel lacks
  size_t processes_unreadable = 0;              // at the last sample
  size_t kernel_threads = 0;                    // at the last sample
};

struct SeriesSummary {
  std::string name;  // meminfo field, cache name, or comm
  Trend trend;
  TrendClass verdict = TrendClass::flat;
  // slab caches
  uint64_t objsize = 0;
  std::optional<uint64_t> kmalloc_size;
  std::vector<std::string> aliases;
  // processes
  uint32_t pid = 0;
  uint64_t rss_end_bytes = 0;
  bool alive_at_end = true;
};

struct Section {
  std::vector<SeriesSummary> series;  // every series: meminfo in field order, slab by name, processes by pid
  std::vector<size_t> growing;        // indexes into series: growing ones, by slope, descending
};

struct NextStep {
  std::string kind;    // kmalloc, slab_cache, slab_unknown, unaccounted, process, none
  std::string series;  // what grew ("kmalloc-4k", "unaccounted", "1234 (comm)"); empty for none
  double slope_bytes_per_s = 0;
  std::string command;          // runnable now; empty when there is none yet
  std::string planned_command;  // the kleak command that will answer it, once it exists
  std::string text;             // one line for people
};

struct TriageReport {
  const TriageData* data = nullptr;
  uint32_t top = 10;
  Section meminfo, slab, processes;
  NextStep next;
};

// Smallest change (bytes over the run) that counts as growth, per section:
// meminfo counters are kB-granular sums of many things and per-process PSS
// moves with shared pages, so they need more than one slab cache does.
inline constexpr double kMinChangeMeminfoBytes = 64 * 1024;
inline constexpr double kMinChangeSlabBytes = 16 * 1024;
inline constexpr double kMinChangeProcessBytes = 64 * 1024;

TriageReport analyze(const TriageData& data, uint32_t top);

// The next step from the ranked sections: the fastest-growing of the growing
// slab caches, unaccounted memory and live processes decides.
NextStep suggest_next_step(const TriageReport& r);

std::string render_triage_text(const TriageReport& r);
nlohmann::json triage_to_json(const TriageReport& r);

}  // namespace kleak
