// The engine's API is being reworked: OpenVolume gains `writable`,
// ForgetVolume returns a Status, and Allocate replaces the public GrowTo.
// These resolve at compile time to whichever the engine being built has,
// so the stress tool builds (and can be compared) on both sides of the
// change. Drop the older branches once the rework has landed.
#ifndef TIERFS_TOOLS_STRESS_ENGINE_COMPAT_H_
#define TIERFS_TOOLS_STRESS_ENGINE_COMPAT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "src/cache/engine.h"

namespace tierfs::stress {

template <typename Engine>
std::shared_ptr<cache::Volume> OpenVolume(Engine& engine, uint64_t dev,
                                          uint64_t ino,
                                          std::shared_ptr<io::File> origin,
                                          const std::string& name) {
  if constexpr (requires { engine.OpenVolume(dev, ino, origin, true, name); }) {
    return engine.OpenVolume(dev, ino, std::move(origin), true, name);
  } else {
    return engine.OpenVolume(dev, ino, std::move(origin), name);
  }
}

template <typename Engine>
Status ForgetVolume(Engine& engine, uint64_t dev, uint64_t ino) {
  if constexpr (std::is_void_v<decltype(engine.ForgetVolume(dev, ino))>) {
    engine.ForgetVolume(dev, ino);
    return OkStatus();
  } else {
    return engine.ForgetVolume(dev, ino);
  }
}

// fallocate(mode 0) as the FUSE layer issues it.
template <typename Engine, typename Volume>
Status Allocate(Engine& engine, Volume& volume, uint64_t offset,
                uint64_t length) {
  if constexpr (requires { engine.Allocate(volume, offset, length); }) {
    return engine.Allocate(volume, offset, length);
  } else {
    Status st = volume.origin()->Allocate(offset, length);
    if (st.ok()) engine.GrowTo(volume, offset + length);
    return st;
  }
}

}  // namespace tierfs::stress

#endif  // TIERFS_TOOLS_STRESS_ENGINE_COMPAT_H_
