// Prometheus text exposition format (0.0.4): what node_exporter's textfile
// collector reads and what `kleak serve` answers on /metrics.
//
// No timestamps (the scraper stamps samples). Label sets stay bounded: one
// series per reported stack (the top -T, default 10), labelled by the
// stack's stable hash (stack_hash_hex, the same across boots and hosts) and
// the function that called the allocator. Stacks whose symbolic keys are
// equal are one series. kleak's own counters are metrics too, so lost
// allocations show next to the numbers they make incomplete.
#pragma once

#include <string>
#include <string_view>

#include "report/report.h"

namespace kleak {

std::string render_prometheus(const Report& r);

// A label value with \, " and newline escaped as the format requires.
std::string prometheus_label_value(std::string_view v);

}  // namespace kleak
