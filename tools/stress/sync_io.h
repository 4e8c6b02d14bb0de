// Synchronous wrappers over the engine's callback IO, and the payload
// generator every write uses.
#ifndef TIERFS_TOOLS_STRESS_SYNC_IO_H_
#define TIERFS_TOOLS_STRESS_SYNC_IO_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "src/cache/engine.h"

namespace tierfs::stress {

// Each waits for the engine's callback, which may run on another thread.
Result<std::vector<std::byte>> ReadSync(cache::CacheEngine& engine,
                                        const std::shared_ptr<cache::Volume>& v,
                                        uint64_t offset, size_t length);
Status WriteSync(cache::CacheEngine& engine,
                 const std::shared_ptr<cache::Volume>& v, uint64_t offset,
                 std::span<const std::byte> data);

// Payloads from a seed, so the writer's generator stays the only source of
// what is written (splitmix64: fast, and no two blocks alike).
void Fill(std::span<std::byte> out, uint64_t seed);

}  // namespace tierfs::stress

#endif  // TIERFS_TOOLS_STRESS_SYNC_IO_H_
