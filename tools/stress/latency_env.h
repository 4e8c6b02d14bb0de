// An Env decorator that sleeps a random 0..max µs before a random share of
// data IO, so migrations and foreground IO interleave in ever different
// orders. (io::FaultInjector's latency rules add a fixed delay to every
// matching op, which keeps the interleavings too regular for a stress run.)
#ifndef TIERFS_TOOLS_STRESS_LATENCY_ENV_H_
#define TIERFS_TOOLS_STRESS_LATENCY_ENV_H_

#include <memory>
#include <string>

#include "src/io/file.h"

namespace tierfs::stress {

struct LatencyConfig {
  double probability = 0.3;  // of delaying one read/write/sync/punch/truncate
  unsigned max_us = 300;
};

class LatencyEnv final : public io::Env {
 public:
  LatencyEnv(io::Env* base, LatencyConfig config)
      : base_(base), config_(std::make_shared<LatencyConfig>(config)) {}
  Result<std::unique_ptr<io::File>> OpenAt(
      int dirfd, const std::string& path,
      const io::OpenOptions& options) override;

 private:
  io::Env* const base_;
  // Shared with the files, which may outlive this Env.
  const std::shared_ptr<const LatencyConfig> config_;
};

}  // namespace tierfs::stress

#endif  // TIERFS_TOOLS_STRESS_LATENCY_ENV_H_
