// Errors inside the daemon are values. Result<T> holds either a T or a
// std::error_code; Status is Result<void>.
#ifndef TIERFS_SRC_UTIL_RESULT_H_
#define TIERFS_SRC_UTIL_RESULT_H_

#include <cassert>
#include <cerrno>
#include <system_error>
#include <utility>
#include <variant>

namespace tierfs {

// Converts an errno value into an error_code of the system category.
inline std::error_code ErrnoCode(int err) {
  return std::error_code(err, std::system_category());
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(runtime/explicit)
  Result(std::error_code ec) : v_(ec) {      // NOLINT(runtime/explicit)
    assert(ec);
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  // REQUIRES: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // Returns the error, or a default (success) code when ok().
  std::error_code error() const {
    return ok() ? std::error_code() : std::get<std::error_code>(v_);
  }

 private:
  std::variant<T, std::error_code> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(std::error_code ec) : ec_(ec) {}  // NOLINT(runtime/explicit)

  bool ok() const { return !ec_; }
  explicit operator bool() const { return ok(); }
  std::error_code error() const { return ec_; }

 private:
  std::error_code ec_;
};

using Status = Result<void>;

inline Status OkStatus() { return Status(); }

}  // namespace tierfs

#endif  // TIERFS_SRC_UTIL_RESULT_H_
