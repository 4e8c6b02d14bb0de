// Helpers shared by the prison's tests.
#ifndef TIERFS_SRC_PRISON_PRISON_TEST_UTIL_H_
#define TIERFS_SRC_PRISON_PRISON_TEST_UTIL_H_

#include <vector>

#include "src/prison/prison.h"

namespace tierfs::prison {

inline constexpr int kWrite = 0;
inline constexpr int kRead = 1;

inline Key Block(uint32_t volume, uint64_t index) {
  return Key{VolumeId(volume), index, index + 1};
}

inline Continuation Count(int* n) {
  return [n] { ++*n; };
}

// Runs every continuation, as the engine's dispatcher would.
inline void RunAll(std::vector<Continuation> continuations) {
  for (Continuation& k : continuations) k();
}

}  // namespace tierfs::prison

#endif  // TIERFS_SRC_PRISON_PRISON_TEST_UTIL_H_
