// For unit tests: a small cache engine (no persistent metadata) over a
// cache store in a temp dir of its own, removed with it.
#ifndef TIERFS_SRC_CACHE_TEMP_ENGINE_H_
#define TIERFS_SRC_CACHE_TEMP_ENGINE_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "src/cache/engine.h"

namespace tierfs::cache {

class TempEngine {
 public:
  // `options` with cache_blocks 0 gets 16 blocks. On failure the test fails
  // and engine() is null.
  explicit TempEngine(EngineOptions options = {}) {
    char tmpl[] = "/tmp/tierfs-engine-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    if (options.cache_blocks == 0) options.cache_blocks = 16;
    io::OpenOptions o;
    o.create = true;
    auto cache = io::Env::Default()->OpenAt(AT_FDCWD, dir_ + "/cache", o);
    EXPECT_TRUE(cache.ok());
    if (!cache.ok()) return;
    EXPECT_TRUE(
        (*cache)->Truncate(options.cache_blocks * options.block_size).ok());
    std::string error;
    auto engine =
        CacheEngine::Create(options, std::move(cache).value(), &error);
    EXPECT_TRUE(engine.ok()) << error;
    if (engine.ok()) engine_ = std::move(engine).value();
  }
  ~TempEngine() {
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }
  TempEngine(const TempEngine&) = delete;
  TempEngine& operator=(const TempEngine&) = delete;

  CacheEngine* engine() { return engine_.get(); }

 private:
  std::string dir_;
  std::unique_ptr<CacheEngine> engine_;
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_TEMP_ENGINE_H_
