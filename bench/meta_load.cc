// tierfs-bench-meta-load: how long a mount takes to load the metadata of a
// big cache, and how much memory per cache block the loaded state costs
// (issue 6 targets: 1M blocks load in <= 2 s; <= 48 B/block including the
// policy).
//
// Formats metadata for --blocks cache blocks in a temp dir (no cache store),
// fills every block with a mapping (a checkpoint) plus a journal of dirty /
// clean records, then times meta::Load and the policy's LoadMapping loop.
//
// Usage: tierfs-bench-meta-load [--blocks N] [--journal-records N]
//                               [--dir DIR] [--json]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "meta/store.h"
#include "policy/registry.h"

namespace {

using Clock = std::chrono::steady_clock;
using tierfs::CBlock;
using tierfs::OBlock;
using tierfs::VolumeId;
namespace meta = tierfs::meta;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Peak and current resident set (kB) from /proc/self/status.
uint64_t StatusKb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0)
      return std::strtoull(line.c_str() + std::strlen(key) + 1, nullptr, 10);
  }
  return 0;
}

int Usage() {
  std::fprintf(stderr,
               "Usage: tierfs-bench-meta-load [--blocks N] "
               "[--journal-records N] [--dir DIR] [--json]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t blocks = 1000000, journal_records = 100000;
  std::string base = "/tmp";
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      json = true;
    } else if (a == "--blocks" && i + 1 < argc) {
      blocks = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--journal-records" && i + 1 < argc) {
      journal_records = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--dir" && i + 1 < argc) {
      base = argv[++i];
    } else {
      return Usage();
    }
  }
  if (blocks == 0 || blocks > UINT32_MAX) return Usage();
  std::string tmpl = base + "/tierfs-bench-meta-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  tierfs::io::Env* env = tierfs::io::Env::Default();
  constexpr uint64_t kBlockSize = 64 * 1024;
  constexpr uint32_t kVolumes = 16;

  // 1. The metadata of a full cache.
  auto t = Clock::now();
  meta::FormatOptions options;
  options.cache_blocks = blocks;
  options.block_size = kBlockSize;
  std::string error;
  auto store = meta::MetaStore::Format(env, dir, options, &error);
  if (!store.ok()) {
    std::fprintf(stderr, "format: %s\n", error.c_str());
    return 1;
  }
  meta::MetaStore& s = **store;
  std::vector<meta::MappingRecord> table(blocks);
  for (uint32_t v = 1; v <= kVolumes; ++v) {
    meta::VolumeRecord r;
    r.id = s.NewVolumeId();
    r.ino = 1000 + v;
    r.path = "images/vm" + std::to_string(v) + ".img";
    s.AppendVolume(r);
  }
  std::mt19937_64 rng(1);
  for (uint64_t c = 0; c < blocks; ++c) {
    const VolumeId volume(1 + c % kVolumes);
    table[c] = meta::MappingRecord{CBlock(static_cast<uint32_t>(c)),
                                   OBlock{volume, c / kVolumes}, rng() % 8 == 0,
                                   static_cast<uint32_t>(rng() % 64)};
  }
  s.SetSnapshot(
      [&](meta::Checkpoint* cp, const std::function<void()>& capture) {
        cp->mappings = table;
        cp->policy = "smq";
        capture();
      });
  if (!s.Checkpoint(false).ok()) {
    std::fprintf(stderr, "checkpoint failed\n");
    return 1;
  }
  // A journal after the checkpoint: dirty/clean flips, committed in batches.
  for (uint64_t i = 0; i < journal_records; ++i) {
    const uint32_t c = rng() % blocks;
    table[c].dirty = !table[c].dirty;
    table[c].dirty ? s.AppendDirty(CBlock(c)) : s.AppendClean(CBlock(c));
    if (i % 10000 == 9999 && !s.Commit().ok()) return 1;
  }
  if (!s.Commit().ok()) return 1;
  const auto stats = s.GetStats();
  s.SetSnapshot(nullptr);
  store->reset();
  const double setup_seconds = Since(t);
  const uint64_t ckpt_bytes = std::filesystem::file_size(dir + "/ckpt.0");

  // 2. What a mount does: Load (checkpoint + replay + damage scan).
  const uint64_t rss_before = StatusKb("VmRSS:");
  t = Clock::now();
  auto loaded = meta::Load(env, dir, &error);
  const double load_seconds = Since(t);
  if (!loaded.ok() || !loaded->damage.empty()) {
    std::fprintf(stderr, "load: %s\n",
                 loaded.ok() ? loaded->damage.c_str() : error.c_str());
    return 1;
  }
  const uint64_t rss_loaded = StatusKb("VmRSS:");
  const uint64_t state_bytes =
      loaded->mappings.capacity() * sizeof(meta::MappingRecord) +
      loaded->volumes.capacity() * sizeof(meta::VolumeRecord);

  // 3. The policy takes the mappings.
  tierfs::policy::PolicyParams params;
  params.cache_blocks = blocks;
  params.block_size = kBlockSize;
  auto policy = tierfs::policy::CreatePolicy("smq", params, {}, &error);
  if (!policy.ok()) {
    std::fprintf(stderr, "policy: %s\n", error.c_str());
    return 1;
  }
  t = Clock::now();
  for (const meta::MappingRecord& m : loaded->mappings) {
    if (!(*policy)
             ->LoadMapping(m.oblock, m.cblock, m.dirty, m.hint, false)
             .ok()) {
      std::fprintf(stderr, "LoadMapping failed\n");
      return 1;
    }
  }
  const double policy_seconds = Since(t);
  const uint64_t policy_bytes = (*policy)->MemoryBytes();
  const uint64_t mappings = loaded->mappings.size();
  // Steady state: the mapping table lives in the policy; the MetaStore
  // keeps volumes and not-yet-durable records only, and the loaded state is
  // freed once the engine is up.
  loaded->mappings = {};
  const uint64_t rss_end = StatusKb("VmRSS:");
  const double per_block_policy = double(policy_bytes) / blocks;
  const double per_block_transient = double(state_bytes) / blocks;
  std::filesystem::remove_all(dir);

  nlohmann::json out = {
      {"cache_blocks", blocks},
      {"mappings", mappings},
      {"journal_records", journal_records},
      {"journal_batches_replayed", loaded->replayed_batches},
      {"checkpoint_bytes", ckpt_bytes},
      {"journal_bytes", stats.journal_used},
      {"setup_seconds", setup_seconds},
      {"load_seconds", load_seconds},
      {"policy_load_seconds", policy_seconds},
      {"total_load_seconds", load_seconds + policy_seconds},
      {"policy_bytes_per_block", per_block_policy},
      {"loaded_state_bytes_per_block", per_block_transient},
      {"steady_bytes_per_block", per_block_policy},
      {"rss_kb_before_load", rss_before},
      {"rss_kb_after_load", rss_loaded},
      {"rss_kb_end", rss_end},
      {"rss_kb_peak", StatusKb("VmHWM:")},
      {"target_seconds", 2.0},
      {"target_bytes_per_block", 48},
  };
  if (json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf(
        "%llu cache blocks, %llu mapped; checkpoint %.1f MB, journal %llu "
        "records in %llu batches\n"
        "meta::Load            %.3f s\n"
        "policy LoadMapping    %.3f s\n"
        "total                 %.3f s (target <= 2 s)\n"
        "policy memory         %.1f B/block (target <= 48 B/block incl. "
        "policy)\n"
        "loaded state          %.1f B/block (transient, freed after start)\n",
        static_cast<unsigned long long>(blocks),
        static_cast<unsigned long long>(mappings), ckpt_bytes / 1e6,
        static_cast<unsigned long long>(journal_records),
        static_cast<unsigned long long>(loaded->replayed_batches), load_seconds,
        policy_seconds, load_seconds + policy_seconds, per_block_policy,
        per_block_transient);
  }
  return 0;
}
