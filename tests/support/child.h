// A child process driven over pipes: lines to its stdin, lines from its
// stdout (and optionally stderr), with timeouts so a stuck child fails the
// test instead of hanging it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace kleak::test {

class Child {
 public:
  struct Options {
    bool capture_stderr = false;
    bool drop_privileges = false;  // setuid(65534) before exec
  };
  // Starts argv[0] with the given arguments. Throws std::runtime_error on failure.
  explicit Child(const std::vector<std::string>& argv);
  Child(const std::vector<std::string>& argv, Options options);
  // Closes the child's stdin and waits up to 3 s for it to exit, then kills it.
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  void send_line(const std::string& line);
  void close_stdin();
  // Next line of stdout without the newline; nullopt on EOF or timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Reads stdout until EOF (or timeout) and returns it, with what was
  // buffered but not yet returned by read_line.
  std::string read_all(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  std::string read_stderr(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Next line of stderr (capture_stderr), like read_line.
  std::optional<std::string> read_err_line(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  void kill(int sig);
  // Sends `sig`, reads stdout to EOF and reaps the child. Its last line of
  // output when it exited with status 0, else nullopt (kleak's final report
  // after SIGINT, for instance).
  std::optional<std::string> last_line_after(int sig);
  // Exit status (0-255), 128+signal if killed; nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));

 private:
  bool fill(int fd, std::string& buf, std::chrono::steady_clock::time_point deadline);
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string out_buf_, err_buf_;
  bool reaped_ = false;
  int status_ = 0;
};

// Runs argv to completion and returns {exit status, stdout, stderr}.
struct RunResult {
  int status = -1;
  std::string out;
  std::string err;
};
RunResult run(const std::vector<std::string>& argv, Child::Options options = {});

}  // namespace kleak::test
