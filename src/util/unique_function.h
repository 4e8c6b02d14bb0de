// A move-only std::function replacement (std::move_only_function is C++23).
// Continuations capture move-only FUSE reply handles, so they must not copy.
#ifndef TIERFS_SRC_UTIL_UNIQUE_FUNCTION_H_
#define TIERFS_SRC_UTIL_UNIQUE_FUNCTION_H_

#include <memory>
#include <type_traits>
#include <utility>

namespace tierfs {

template <typename Signature>
class UniqueFunction;

template <typename R, typename... Args>
class UniqueFunction<R(Args...)> {
 public:
  UniqueFunction() = default;
  UniqueFunction(std::nullptr_t) {}  // NOLINT(google-explicit-constructor)

  template <typename F, typename = std::enable_if_t<
                            !std::is_same_v<std::decay_t<F>, UniqueFunction> &&
                            std::is_invocable_r_v<R, F&, Args...>>>
  UniqueFunction(F&& f)  // NOLINT(google-explicit-constructor)
      : impl_(std::make_unique<Model<std::decay_t<F>>>(std::forward<F>(f))) {}

  UniqueFunction(UniqueFunction&&) noexcept = default;
  UniqueFunction& operator=(UniqueFunction&&) noexcept = default;

  explicit operator bool() const { return impl_ != nullptr; }

  // REQUIRES: *this holds a callable.
  R operator()(Args... args) {
    return impl_->Call(std::forward<Args>(args)...);
  }

 private:
  struct Concept {
    virtual ~Concept() = default;
    virtual R Call(Args... args) = 0;
  };
  template <typename F>
  struct Model final : Concept {
    explicit Model(F&& f) : fn(std::move(f)) {}
    explicit Model(const F& f) : fn(f) {}
    R Call(Args... args) override { return fn(std::forward<Args>(args)...); }
    F fn;
  };

  std::unique_ptr<Concept> impl_;
};

}  // namespace tierfs

#endif  // TIERFS_SRC_UTIL_UNIQUE_FUNCTION_H_
