// Distinct integer types for distinct index spaces, so that an origin block
// index can never be passed where a cache block index is expected (the
// dm_oblock_t / dm_cblock_t idea from dm-cache).
#ifndef TIERFS_SRC_UTIL_STRONG_ID_H_
#define TIERFS_SRC_UTIL_STRONG_ID_H_

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace tierfs {

template <typename Tag, typename Rep>
class StrongId {
 public:
  using rep_type = Rep;

  constexpr StrongId() = default;
  constexpr explicit StrongId(Rep value) : value_(value) {}

  constexpr Rep value() const { return value_; }

  friend constexpr auto operator<=>(StrongId, StrongId) = default;

 private:
  Rep value_{};
};

}  // namespace tierfs

template <typename Tag, typename Rep>
struct std::hash<tierfs::StrongId<Tag, Rep>> {
  size_t operator()(tierfs::StrongId<Tag, Rep> id) const noexcept {
    return std::hash<Rep>{}(id.value());
  }
};

#endif  // TIERFS_SRC_UTIL_STRONG_ID_H_
