// tierfs-stress: a seeded, model-checked stress run of the cache engine,
// in-process and without FUSE. See harness.h for how it checks, and
// --help for the flags. Exit: 0 clean, 1 mismatch or engine error, 2 usage.

#include <pthread.h>
#include <signal.h>

#include "src/util/log.h"
#include "tools/stress/harness.h"
#include "tools/stress/options.h"

int main(int argc, char** argv) {
  tierfs::stress::Options options;
  if (!tierfs::stress::ParseOptions(argc, argv, &options)) return 2;
  // The engine's info lines (per promotion failure, per start) are noise
  // here; warnings and errors still show.
  tierfs::SetLogLevel(options.verbose ? tierfs::LogLevel::kInfo
                                      : tierfs::LogLevel::kWarning);
  const sigset_t signals = tierfs::stress::StopSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  tierfs::stress::Harness harness(options);
  return harness.Run();
}
