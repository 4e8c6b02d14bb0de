// Simulator-only models of published replacement policies, for comparing
// them with the live policies (policy/) on the same traces. A model sees
// each block access once, decides hit or miss, and on a miss admits the
// block at once (a promotion) or not. Evicting a block is a demotion;
// evicting a dirty one also costs a writeback. These models have no
// background work, no free-target or dirty-target, and no memory budget:
// they are the algorithms as published, not candidates for the engine.
//
//   arc       Megiddo & Modha, FAST'03 (T1/T2 + ghosts B1/B2, adaptive p);
//             arc-streams: a sequential stream's misses past 4 MiB get in
//             only when a count-min sketch says they beat ARC's victim
//   2q        Johnson & Shasha, VLDB'94, full version (Kin 25%, Kout 50%)
//   s3fifo    Yang et al., SOSP'23 (small 10%, main, ghost of main's size)
//   sieve     Zhang et al., NSDI'24
//   wtinylfu  Einziger et al., TOS'17 (window LRU 1%, SLRU main 20/80,
//             count-min sketch admission); wtinylfu-hc: the window size
//             tuned by hill climbing, as Caffeine does; awtinylfu: the
//             window tuned by ghosts as ARC tunes T1 (a hit on a ghost of
//             a block refused at the window's exit grows it, one of a
//             block evicted from main shrinks it, by ARC's ratio steps);
//             awtinylfu-gN: ARC's steps, each ghost list the last N% of
//             the cache's worth of victims; awtinylfu-sym: steps of one
//             block either way;
//             awtinylfu-sym-gN: and each ghost list holds the last N% of
//             the cache's worth of its segment's victims (g25 is the model
//             of the live policy "tinylfu")
//   lirs      Jiang & Zhang, SIGMETRICS'02 (HIR resident 1%, stack of at
//             most 3x the cache)
#ifndef TIERFS_BENCH_POLICY_SIM_MODELS_H_
#define TIERFS_BENCH_POLICY_SIM_MODELS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "src/util/ids.h"

namespace tierfs::policy::sim {

struct ModelCounts {
  uint64_t promotions = 0, demotions = 0, writebacks = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  // One access to `oblock`; true on a hit. A write dirties the block if
  // it is (or becomes) cached.
  virtual bool Access(OBlock oblock, bool write) = 0;
  const ModelCounts& counts() const { return counts_; }

 protected:
  void Promoted() { ++counts_.promotions; }
  void Evicted(bool dirty) {
    ++counts_.demotions;
    if (dirty) ++counts_.writebacks;
  }

 private:
  ModelCounts counts_;
};

// nullptr for an unknown name.
std::unique_ptr<Model> NewModel(std::string_view name, uint64_t cache_blocks);
std::vector<std::string> ModelNames();

}  // namespace tierfs::policy::sim

#endif  // TIERFS_BENCH_POLICY_SIM_MODELS_H_
