// --peek in a report: the samples of every reported stack (its oldest
// allocations) and --peek-addr, read by the kernel's peek program.
#pragma once

#include "report/report.h"
#include "util/result.h"

namespace kleak {

Status add_peeks(Report& r, int prog_fd, int map_fd);

}  // namespace kleak
