#include "pipeline/pipeline.h"

#include <malloc.h>

#include <cerrno>
#include <cstdio>
#include <fstream>

#include <string_view>

#include "pipeline/map_reader.h"
#include "pipeline/peeks.h"
#include "probe/modules.h"
#include "util/log.h"
#include "util/sys.h"

namespace kleak {

Status LiveSource::read(Aggregator& a) { return aggregate_maps(handles().live_fds(), a); }

// glibc keeps the freed chunks in its heap, so without this the RSS stays
// at the largest live set ever seen. malloc_trim also hands back whole free
// pages inside the heap (glibc 2.8+), not only its top.
void return_freed_heap() {
  const uint64_t t0 = monotonic_ns();
  malloc_trim(0);
  log_debug("malloc_trim: {:.1f} ms", static_cast<double>(monotonic_ns() - t0) / 1e6);
}

void describe_filters(const LoaderConfig& config, ReportContext& ctx) {
  ctx.min_size_bytes = config.min_size_bytes;
  ctx.max_size_bytes = config.max_size_bytes;
  ctx.cache = config.cache_label;
}

Pipeline::Pipeline(const TraceOptions& opts, LiveSource& source, PipelineStages stages,
                   std::optional<TraceStart> start)
    : opts_(opts), source_(source), stages_(stages) {
  if (stages_.min_age_ms) opts_.min_age_ms = *stages_.min_age_ms;
  const BpfHandles& h = source.handles();
  ctx_.kernel = kernel_release();
  ctx_.interval_s = opts.interval_s;
  ctx_.start_mono_ns = start ? start->mono_ns : monotonic_ns();
  ctx_.live_capacity = h.live_capacity();
  ctx_.stack_capacity = h.stack_capacity();
  ctx_.stack_sample_every = h.stack_sample_every();
  ctx_.attached = h.attached();
  ctx_.missing = h.missing();
  ctx_.degraded = h.degraded();
  ctx_.families = h.families();
  ctx_.traced_families = h.traced_families();
  if (!stages_.reconcile) return;
  if (start) start_meminfo_ = start->meminfo;
  else if (auto m = load_meminfo()) start_meminfo_ = std::move(*m);
}

void Pipeline::describe(const LoaderConfig& cfg) { describe_filters(cfg, ctx_); }

void Pipeline::describe(uint64_t min_size_bytes, uint64_t max_size_bytes, const std::string& cache) {
  ctx_.min_size_bytes = min_size_bytes;
  ctx_.max_size_bytes = max_size_bytes;
  ctx_.cache = cache;
}

// The kernel's slab counters now against when kleak started.
Reconciliation Pipeline::reconcile(const Aggregate& agg) const {
  Reconciliation rc;
  auto now = load_meminfo();
  if (!start_meminfo_ || !now) return rc;
  auto delta = [&](std::string_view field) -> std::optional<int64_t> {
    auto a = start_meminfo_->get(field), b = now->get(field);
    if (!a || !b) return std::nullopt;
    return static_cast<int64_t>(*b) - static_cast<int64_t>(*a);
  };
  auto slab = delta("Slab"), unrec = delta("SUnreclaim"), rec = delta("SReclaimable");
  if (!slab || !unrec || !rec) return rc;
  rc.available = true;
  rc.slab_delta = *slab;
  rc.sunreclaim_delta = *unrec;
  rc.sreclaimable_delta = *rec;
  rc.tracked_unreclaimable = agg.live_unreclaimable_bytes;
  rc.tracked_reclaimable = agg.live_reclaimable_bytes;
  rc.tracked_large_kmalloc = agg.live_large_kmalloc_bytes;
  return rc;
}

// A failure is a warning: reports stay right, the store may fill (counted
// as stack ENOMEM).
void Pipeline::sweep(const std::unordered_set<uint64_t>& referenced) {
  last_sweep_ns_ = monotonic_ns();
  const BpfHandles& h = source_.handles();
  auto r = reclaimer_.sweep(h.stacks_fd(), h.sites_fd(), referenced);
  if (!r) {
    log_warn("stack store sweep: {}", r.error().message);
    return;
  }
  ctx_.stacks_stored = reclaimer_.stored();
  ctx_.stacks_reclaimed = reclaimer_.reclaimed_total();
  if (r->reclaimed) log_info("stack store: {} stacks, {} reclaimed", r->stored, r->reclaimed);
}

void Pipeline::maintain() {
  if (monotonic_ns() - last_sweep_ns_ < static_cast<uint64_t>(kReclaimPeriodS * 1e9)) return;
  Aggregator referenced(monotonic_ns(), 0, false);
  if (auto read = source_.read(referenced); !read) {
    log_warn("stack store sweep: {}", read.error().message);
    last_sweep_ns_ = monotonic_ns();
    return;
  }
  sweep(std::move(referenced).finish().referenced_stacks);
  return_freed_heap();
}

Result<Report> Pipeline::next(const ReportRequest& req) {
  Result<Report> r = build(req);
  // After build's tables are gone, before the report is printed: whoever
  // reads kleak's RSS when a report appears (bench/soak.py) sees it
  // without them.
  return_freed_heap();
  return r;
}

Result<Pipeline::LiveSet> Pipeline::read_live_set(bool keep_allocs) {
  if (auto st = source_.prepare(); !st) return st.error();
  auto snap = snapshot_info(source_.handles().fds());
  if (!snap) return snap.error();
  Aggregator aggregator(snap->mono_ns, opts_.min_age_ms * 1000000ull, keep_allocs);
  if (auto read = source_.read(aggregator); !read) return read.error();
  return LiveSet{std::move(*snap), std::move(aggregator).finish()};
}

Status KernelSource::poll_modules() {
  auto records = read_modules(handles_.map_fd("kleak_modules"));
  if (!records) return records.error();
  if (size_t named = ksyms_.update(*records)) log_debug("named {} module(s) loaded since the last look", named);
  return {};
}

std::function<std::optional<std::string>()> kernel_tick(KernelSource& source, GrowthSampler* sampler) {
  return [&source, sampler]() -> std::optional<std::string> {
    if (auto st = source.poll_modules(); !st) log_debug("modules: {}", st.error().message);
    if (sampler) sampler->due();
    return std::nullopt;
  };
}

Status KernelSource::prepare() {
  if (auto st = poll_modules(); !st) log_warn("modules: {}: frames of modules loaded since are not named", st.error().message);
  return {};
}

Status Pipeline::load_history(const std::string& path, const std::string& tag) {
  std::ifstream in(path);
  if (!in) return errno == ENOENT ? Status{} : make_error("read " + path, errno);
  std::string head;
  if (!std::getline(in, head) || head != tag) return {};  // another session's: start afresh
  if (!growth_.load(in)) return make_error(path + ": not a kleak growth history", EINVAL);
  return {};
}

Status Pipeline::save_history(const std::string& path, const std::string& tag) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return make_error("write " + tmp, errno);
    out << tag << '\n';
    growth_.save(out);
    out.flush();
    if (!out) return make_error("write " + tmp, errno);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return make_error("rename " + tmp, errno);
  return {};
}

void Pipeline::observe(const LiveSet& live) {
  growth_.observe(static_cast<double>(live.snap.mono_ns - ctx_.start_mono_ns) / 1e9, live.agg);
}

Status Pipeline::sample() {
  if (!stages_.growth) return {};
  auto live = read_live_set(false);
  if (!live) return live.error();
  observe(*live);
  return_freed_heap();
  return {};
}

void GrowthSampler::due() {
  const uint64_t now = monotonic_ns(), start = p_.start_ns();
  if (!last_ns_) last_ns_ = start;
  const double span = duration_ns_ > 0 ? duration_ns_ : static_cast<double>(now - start);
  if (static_cast<double>(now - last_ns_) < std::max(static_cast<double>(kTickNs), span / kPoints)) return;
  if (auto st = p_.sample(); !st) log_warn("growth sample: {}", st.error().message);
  last_ns_ = now;
}

Result<Report> Pipeline::build(const ReportRequest& req) {
  ++ctx_.seq;
  ctx_.final_report = req.final_report;
  const uint64_t t0 = monotonic_ns();
  auto live = read_live_set(opts_.show_allocs || opts_.peek_bytes > 0);
  if (!live) return live.error();
  const uint64_t t1 = monotonic_ns();
  const BpfHandles& h = source_.handles();
  const SnapshotInfo& snap = live->snap;
  Aggregate& agg = live->agg;
  if (stages_.sweep) sweep(agg.referenced_stacks);
  if (stages_.growth) observe(*live);
  rank_groups(agg, opts_.sort, growth_);
  const uint64_t t2 = monotonic_ns();
  const int fd = h.stacks_fd();
  const StackSource stacks = [fd](uint64_t id) { return read_stack(fd, id); };
  Symbolizer& syms = source_.symbolizer();
  if (req.select) agg = req.select(agg, snap, syms, stacks);
  Report r = build_report(snap, agg, opts_, ctx_, syms, stacks, stages_.growth ? &growth_ : nullptr);
  if (stages_.reconcile) r.reconciliation = reconcile(agg);
  if (auto st = add_peeks(r, h.peek_prog_fd(), h.peek_map_fd()); !st) log_warn("--peek: {}", st.error().message);
  if (auto st = source_.annotate(r); !st) return st.error();
  const uint64_t t3 = monotonic_ns();
  auto ms = [](uint64_t a, uint64_t b) { return static_cast<double>(b - a) / 1e6; };
  log_info("report #{}: {} live allocations, {} stacks in {:.1f} ms (read+group {:.1f}, rank {:.1f}, "
           "symbolize {:.1f})",
           ctx_.seq, agg.live_count, agg.groups.size(), ms(t0, t3), ms(t0, t1), ms(t1, t2), ms(t2, t3));
  return r;
}

}  // namespace kleak
