// Helpers shared by the cache engine's unit tests.
#ifndef TIERFS_SRC_CACHE_ENGINE_TEST_UTIL_H_
#define TIERFS_SRC_CACHE_ENGINE_TEST_UTIL_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "src/io/file.h"

namespace tierfs::cache {

inline constexpr uint64_t kBlock = 64 * 1024;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tierfs-engine-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::unique_ptr<io::File> OpenFile(const std::string& path,
                                          uint64_t size) {
  io::OpenOptions o;
  o.create = true;
  auto f = io::Env::Default()->OpenAt(AT_FDCWD, path, o);
  EXPECT_TRUE(f.ok()) << path;
  if (size != 0) {
    EXPECT_TRUE((*f)->Truncate(size).ok());
  }
  return std::move(f).value();
}

inline std::vector<std::byte> Pattern(size_t size, uint32_t seed) {
  std::vector<std::byte> v(size);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_ENGINE_TEST_UTIL_H_
