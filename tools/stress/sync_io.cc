#include "tools/stress/sync_io.h"

#include <algorithm>
#include <cstring>
#include <future>

namespace tierfs::stress {

// Payloads from a seed, so the writer's generator stays the only source of
// what is written (splitmix64: fast, and no two blocks alike).
void Fill(std::span<std::byte> out, uint64_t seed) {
  for (size_t i = 0; i < out.size(); i += 8) {
    uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::memcpy(out.data() + i, &z, std::min<size_t>(8, out.size() - i));
  }
}

Result<std::vector<std::byte>> ReadSync(cache::CacheEngine& engine,
                                        const std::shared_ptr<cache::Volume>& v,
                                        uint64_t offset, size_t length) {
  std::promise<Result<std::vector<std::byte>>> done;
  engine.Read(v, offset, length, [&done](Result<std::span<const std::byte>> r) {
    if (!r.ok()) {
      done.set_value(r.error());
    } else {
      done.set_value(std::vector<std::byte>(r->begin(), r->end()));
    }
  });
  return done.get_future().get();
}

Status WriteSync(cache::CacheEngine& engine,
                 const std::shared_ptr<cache::Volume>& v, uint64_t offset,
                 std::span<const std::byte> data) {
  std::promise<Status> done;
  engine.Write(v, offset, data, [&done](Status st) { done.set_value(st); });
  return done.get_future().get();
}

}  // namespace tierfs::stress
