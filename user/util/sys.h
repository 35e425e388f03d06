// Small OS helpers shared by the run loops (trace, ci).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "util/fd.h"
#include "util/result.h"

namespace kleak {

std::string kernel_release();

// The whole file (/proc, /sys and the like: read to EOF, no size trusted).
// Errors name the path and the errno (ENOENT, EACCES, ...).
Result<std::string> read_text_file(const std::string& path);

// Writes all of `s` to stdout and flushes. False on error (errno set), e.g.
// EPIPE when the reader went away.
bool write_stdout(const std::string& s);

// Where reports go: stdout, or a file kept private (reports hold kernel
// addresses): created 0600, a symlink at its path refused, an existing
// regular file made 0600 before it is truncated, or refused (untouched) when
// another user owns it. Other file types (/dev/null, a FIFO) are used as is.
class Output {
 public:
  // Empty path: stdout. The error names the path.
  static Result<Output> open(const std::string& path);
  // For snapshot formats: each replace() swaps in a new whole file, so a
  // reader (node_exporter's textfile collector) never sees half of one.
  // Nothing is created now, but a symlink at `path` or a directory kleak
  // cannot create files in is refused at once. Empty path: stdout.
  static Result<Output> open_replacing(const std::string& path, mode_t mode);
  Output(Output&& o) noexcept = default;
  Output& operator=(Output&&) = delete;
  // Writes all of `s`. False on error, with errno set (EPIPE, ENOSPC, ...).
  bool write(const std::string& s);
  // Writes `s` to a temporary file beside path() (mode as opened), then
  // renames it over path(): rename(2) replaces a symlink planted meanwhile
  // instead of following it. On stdout, the same as write(). False on
  // error, errno set, the temporary file removed.
  bool replace(const std::string& s);
  // Whether this Output was opened with open_replacing().
  bool replacing() const { return replacing_; }
  const std::string& path() const { return path_; }

 private:
  Output(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  Fd fd_;  // none: stdout, or a replacing Output (no fd held)
  std::string path_;
  bool replacing_ = false;
  mode_t mode_ = 0600;
};

// Writes `s` to `path` through an Output; the error is a one-line reason.
Status write_file(const std::string& path, const std::string& s);

// Writes `value` to a /proc/sys or /sys knob (open, one write, close: no
// temporary file, no mode change).
Status write_knob(const std::string& path, const std::string& value);

// Blocks SIGINT and SIGTERM (and `extra`, e.g. SIGCHLD) so they are taken
// synchronously with wait_until, and ignores SIGPIPE. Returns the set.
sigset_t block_stop_signals(int extra = 0);

// Waits until `deadline_ns` (CLOCK_MONOTONIC; 0 = forever) or a signal in
// `set` arrives. Returns the signal, or 0 on timeout. A passed deadline
// still returns a signal already pending.
int wait_until(const sigset_t& set, uint64_t deadline_ns);

// After the first stop signal: a second one ends the process at once
// (fd-based BPF links detach with it).
void release_stop_signals();

}  // namespace kleak
