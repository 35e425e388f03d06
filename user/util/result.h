// Result<T>: the one error model for recoverable failures.
//
// libbpf 1.x reports errors as NULL + errno or as -errno; callers capture the
// value at once and return an Error naming the object and the errno, e.g.
// "attach kmem/kfree: No such file or directory (-ENOENT)".
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace kleak {

struct Error {
  std::string message;
  int err = 0;  // positive errno, or 0 when none applies
};

// "what: strerror (-ENAME)". `err` may be given as -errno or errno.
Error make_error(std::string what, int err);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace kleak
