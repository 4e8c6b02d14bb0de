// Tests of the metadata layer: format, journal replay with torn tails and
// damage, checkpoints, ring wrap-around, group commit, volume identity and
// behaviour under injected IO faults.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "meta/format.h"
#include "meta/store.h"
#include "meta/tools.h"
#include "meta/volumes.h"
#include "src/io/fault_injection.h"

namespace tierfs::meta {
namespace {

namespace fs = std::filesystem;

// The engine's side of the contract: the mapping table the records
// describe, appended under one lock and handed to checkpoints.
class Model {
 public:
  explicit Model(MetaStore* store) : store_(store) {
    store->SetSnapshot(
        [this](Checkpoint* cp, const std::function<void()>& capture) {
          std::lock_guard<std::mutex> lock(mu_);
          for (const auto& [c, m] : map_) cp->mappings.push_back(m);
          cp->policy = "smq";
          capture();
        });
  }
  // No destructor touching the store: tests reset the store first.
  // Starts from a loaded state.
  void Adopt(const LoadedState& state) {
    std::lock_guard<std::mutex> lock(mu_);
    map_.clear();
    for (const MappingRecord& m : state.mappings) map_[m.cblock.value()] = m;
  }
  uint64_t Map(uint32_t c, uint32_t volume, uint64_t index, bool dirty) {
    std::lock_guard<std::mutex> lock(mu_);
    map_[c] = MappingRecord{CBlock(c), OBlock{VolumeId(volume), index}, dirty};
    return store_->AppendMap(CBlock(c), OBlock{VolumeId(volume), index}, dirty);
  }
  uint64_t Unmap(uint32_t c) {
    std::lock_guard<std::mutex> lock(mu_);
    map_.erase(c);
    return store_->AppendUnmap(CBlock(c));
  }
  uint64_t SetDirty(uint32_t c, bool dirty) {
    std::lock_guard<std::mutex> lock(mu_);
    map_.at(c).dirty = dirty;
    return dirty ? store_->AppendDirty(CBlock(c))
                 : store_->AppendClean(CBlock(c));
  }
  bool Mapped(uint32_t c) {
    std::lock_guard<std::mutex> lock(mu_);
    return map_.count(c) != 0;
  }
  // What Load should return (mappings sorted by cblock, hints zero).
  std::vector<MappingRecord> Expected() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<MappingRecord> out;
    for (const auto& [c, m] : map_) out.push_back(m);
    return out;
  }

 private:
  MetaStore* store_;
  std::mutex mu_;
  std::map<uint32_t, MappingRecord> map_;  // guarded by mu_
};

bool SameMappings(const std::vector<MappingRecord>& a,
                  const std::vector<MappingRecord>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].cblock != b[i].cblock || a[i].oblock != b[i].oblock ||
        a[i].dirty != b[i].dirty) {
      return false;
    }
  }
  return true;
}

class MetaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // No "meta" in the name: fault rules match paths by substring.
    char tmpl[] = "/tmp/tierfs-md-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<MetaStore> Format(uint64_t blocks = 1000,
                                    uint64_t journal = 0,
                                    io::Env* env = io::Env::Default()) {
    FormatOptions o;
    o.cache_blocks = blocks;
    o.journal_size = journal;
    std::string error;
    auto store = MetaStore::Format(env, dir_, o, &error);
    EXPECT_TRUE(store.ok()) << error;
    return store.ok() ? std::move(store).value() : nullptr;
  }
  LoadedState MustLoad() {
    std::string error;
    auto state = Load(io::Env::Default(), dir_, &error);
    EXPECT_TRUE(state.ok()) << error;
    return state.ok() ? std::move(state).value() : LoadedState{};
  }
  std::unique_ptr<MetaStore> Open(const LoadedState& state,
                                  io::Env* env = io::Env::Default()) {
    std::string error;
    auto store = MetaStore::Open(env, dir_, state, &error);
    EXPECT_TRUE(store.ok()) << error;
    return store.ok() ? std::move(store).value() : nullptr;
  }
  // A volume record for id (no real file behind it).
  static VolumeRecord Volume(uint32_t id) {
    VolumeRecord v;
    v.id = VolumeId(id);
    v.ino = 1000 + id;
    v.path = "vol" + std::to_string(id) + ".img";
    return v;
  }
  void Poke(const std::string& name, uint64_t offset, uint8_t xor_with) {
    int fd = ::open((dir_ + "/" + name).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t b = 0;
    ASSERT_EQ(::pread(fd, &b, 1, offset), 1);
    b ^= xor_with;
    ASSERT_EQ(::pwrite(fd, &b, 1, offset), 1);
    ::close(fd);
  }
  void Zero(const std::string& name, uint64_t offset, uint64_t length) {
    int fd = ::open((dir_ + "/" + name).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    std::vector<char> zeros(length);
    ASSERT_EQ(::pwrite(fd, zeros.data(), length, offset),
              static_cast<ssize_t>(length));
    ::close(fd);
  }

  std::string dir_;
};

TEST_F(MetaTest, FormatThenLoadRoundTrips) {
  auto store = Format(1234);
  ASSERT_TRUE(store);
  const Superblock sb = store->super();
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_EQ(s.super.uuid, sb.uuid);
  EXPECT_EQ(s.super.block_size, 64u * 1024);
  EXPECT_EQ(s.super.cache_blocks, 1234u);
  EXPECT_EQ(s.super.policy, "tinylfu");
  // 1234 blocks * 64 bytes is below the 1 MiB floor (4 largest batches).
  EXPECT_EQ(s.super.journal_size, 1u << 20);
  EXPECT_FALSE(s.clean_shutdown);
  EXPECT_TRUE(s.has_checkpoint);
  EXPECT_EQ(s.checkpoint_sequence, 1u);
  EXPECT_TRUE(s.mappings.empty());
  EXPECT_TRUE(s.volumes.empty());
  EXPECT_EQ(s.next_seq, 1u);
  EXPECT_EQ(s.superblock_damage[0], "");
  EXPECT_EQ(s.superblock_damage[1], "");
}

TEST_F(MetaTest, FormatRejectsBadGeometry) {
  FormatOptions o;
  o.cache_blocks = 10;
  o.block_size = 3000;
  std::string error;
  EXPECT_FALSE(MetaStore::Format(io::Env::Default(), dir_, o, &error).ok());
  EXPECT_NE(error.find("geometry"), std::string::npos) << error;
}

TEST_F(MetaTest, JournalReplayRestoresMappingsDirtyBitsAndVolumes) {
  auto store = Format();
  Model model(store.get());
  store->AppendVolume(Volume(1));
  store->AppendVolume(Volume(2));
  store->AppendVolume(Volume(3));
  EXPECT_EQ(store->NewVolumeId().value(), 4u);  // above every recorded id
  for (uint32_t c = 0; c < 50; ++c) model.Map(c, 1 + c % 2, c * 7, c % 3 == 0);
  model.SetDirty(1, true);
  model.SetDirty(3, false);
  model.Unmap(10);
  store->AppendVolumeGone(VolumeId(3));
  ASSERT_TRUE(store->WaitDurable(store->last_seq()).ok());
  const uint64_t records = store->last_seq();
  EXPECT_FALSE(store->HasPending());
  store.reset();

  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_TRUE(SameMappings(s.mappings, model.Expected()));
  ASSERT_EQ(s.volumes.size(), 2u);
  EXPECT_EQ(s.volumes[0].path, "vol1.img");
  EXPECT_EQ(s.volumes[1].id, VolumeId(2));
  EXPECT_EQ(s.next_volume_id, 4u);
  EXPECT_EQ(s.replayed_records, records);
  EXPECT_EQ(s.next_seq, records + 1);
  EXPECT_FALSE(s.hints_valid);

  // A second mount continues the journal where the first stopped.
  store = Open(s);
  ASSERT_TRUE(store);
  Model again(store.get());
  again.Adopt(s);
  again.Unmap(0);
  again.SetDirty(2, true);
  ASSERT_TRUE(store->Commit().ok());
  store.reset();
  s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_TRUE(SameMappings(s.mappings, again.Expected()));
  EXPECT_EQ(s.replayed_records, records + 2);
}

TEST_F(MetaTest, SectorMasksSurviveTheJournalAndCheckpoints) {
  auto store = Format();  // 64 KiB blocks: 16 sectors of 4 KiB
  store->AppendVolume(Volume(1));
  store->AppendMap(CBlock(4), OBlock{VolumeId(1), 7}, true, 0xfff0);
  // The same mapping again: the cache took more sectors (no warning).
  store->AppendMap(CBlock(4), OBlock{VolumeId(1), 7}, true, 0xff00);
  store->AppendMap(CBlock(5), OBlock{VolumeId(1), 8}, false);
  ASSERT_TRUE(store->Commit().ok());
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_TRUE(s.warnings.empty());
  ASSERT_EQ(s.mappings.size(), 2u);
  EXPECT_EQ(s.mappings[0].invalid, 0xff00);
  EXPECT_TRUE(s.mappings[0].dirty);
  EXPECT_EQ(s.mappings[1].invalid, 0);
  // Through a checkpoint; the superblock says version 2 from the mount on.
  store = Open(s);
  EXPECT_EQ(store->super().version, 2u);
  const std::vector<MappingRecord> mappings = s.mappings;
  store->SetSnapshot([&](Checkpoint* cp, const std::function<void()>& capture) {
    cp->mappings = mappings;
    cp->policy = "smq";
    capture();
  });
  ASSERT_TRUE(store->Checkpoint(true).ok());
  store.reset();
  s = MustLoad();
  EXPECT_EQ(s.replayed_records, 0u);
  ASSERT_EQ(s.mappings.size(), 2u);
  EXPECT_EQ(s.mappings[0].invalid, 0xff00);
  // A block with no sector in the cache cannot be: damage.
  store = Open(s);
  store->AppendMap(CBlock(6), OBlock{VolumeId(1), 9}, true, 0xffff);
  ASSERT_TRUE(store->Commit().ok());
  store.reset();
  EXPECT_NE(MustLoad().damage, "");
}

TEST_F(MetaTest, WaitDurableOfAFutureRecordFailsInsteadOfSpinning) {
  auto store = Format();
  EXPECT_TRUE(store->Commit().ok());  // nothing appended: nothing to wait for
  const uint64_t seq = store->AppendUnmap(CBlock(1));
  EXPECT_FALSE(store->WaitDurable(seq + 1).ok());
  EXPECT_TRUE(store->WaitDurable(seq).ok());
}

TEST_F(MetaTest, CleanShutdownCheckpointKeepsHints) {
  auto store = Format();
  Model model(store.get());
  store->AppendVolume(Volume(1));
  model.Map(5, 1, 9, true);
  ASSERT_TRUE(store->Checkpoint(true).ok());
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_TRUE(s.clean_shutdown);
  EXPECT_TRUE(s.hints_valid);
  EXPECT_EQ(s.hints_policy, "smq");
  EXPECT_EQ(s.replayed_records, 0u);
  EXPECT_TRUE(SameMappings(s.mappings, model.Expected()));
  // Opening for a mount clears the flag on disk at once.
  store = Open(s);
  store.reset();
  EXPECT_FALSE(MustLoad().clean_shutdown);
}

// Writes two batches; returns the logical journal position of the second.
uint64_t TwoBatches(MetaStore* store, Model* model) {
  store->AppendVolume(VolumeRecord{VolumeId(1), 1, 0, 0, 0, 0, "a"});
  model->Map(1, 1, 1, true);
  EXPECT_TRUE(store->Commit().ok());
  const uint64_t second = store->GetStats().journal_bytes;
  model->Map(2, 1, 2, true);
  model->Map(3, 1, 3, false);
  EXPECT_TRUE(store->Commit().ok());
  return second;
}

TEST_F(MetaTest, TornLastBatchIsDroppedWithoutDamage) {
  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant);
    auto store = Format();
    Model model(store.get());
    const uint64_t second = TwoBatches(store.get(), &model);
    store.reset();
    const uint64_t at = kJournalOffset + second;
    if (variant == 0) Poke(kMetaFileName, at + kBatchHeaderBytes + 3, 0x40);
    if (variant == 1) Poke(kMetaFileName, at + 20, 0x01);  // header
    if (variant == 2) Zero(kMetaFileName, at, kPage);      // never written
    LoadedState s = MustLoad();
    EXPECT_EQ(s.damage, "");
    EXPECT_EQ(s.replayed_batches, 1u);
    ASSERT_EQ(s.mappings.size(), 1u);
    EXPECT_EQ(s.mappings[0].cblock, CBlock(1));
    EXPECT_EQ(s.journal_end, second);
    EXPECT_EQ(s.next_seq, 3u);

    // The next mount overwrites the torn batch and replays cleanly.
    store = Open(s);
    Model again(store.get());
    again.Adopt(s);
    again.Map(7, 1, 70, true);
    ASSERT_TRUE(store->Commit().ok());
    store.reset();
    s = MustLoad();
    EXPECT_EQ(s.damage, "");
    EXPECT_TRUE(SameMappings(s.mappings, again.Expected()));
  }
}

TEST_F(MetaTest, DamagedBatchFollowedByValidOneIsDamage) {
  auto store = Format();
  Model model(store.get());
  const uint64_t second = TwoBatches(store.get(), &model);
  model.Map(4, 1, 4, true);
  ASSERT_TRUE(store->Commit().ok());
  store.reset();
  Poke(kMetaFileName, kJournalOffset + second + kBatchHeaderBytes + 1, 0x10);
  LoadedState s = MustLoad();
  EXPECT_NE(s.damage.find("journal damaged"), std::string::npos) << s.damage;
  // The state up to the damage is still there (for check --repair).
  ASSERT_EQ(s.mappings.size(), 1u);
  EXPECT_EQ(s.journal_seq_limit, 6u);
  std::string error;
  EXPECT_FALSE(MetaStore::Open(io::Env::Default(), dir_, s, &error).ok());
  EXPECT_NE(error.find("damaged"), std::string::npos);
}

TEST_F(MetaTest, SuperblockCopyFallbackAndBothBad) {
  auto store = Format();
  store.reset();
  Poke(kMetaFileName, 40, 0x01);  // copy 0
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_NE(s.superblock_damage[0], "");
  EXPECT_EQ(s.superblock_damage[1], "");
  EXPECT_EQ(s.super.cache_blocks, 1000u);
  Poke(kMetaFileName, kPage + 40, 0x01);  // copy 1
  std::string error;
  auto loaded = Load(io::Env::Default(), dir_, &error);
  EXPECT_FALSE(loaded.ok());
  EXPECT_NE(error.find("no valid superblock"), std::string::npos) << error;
}

TEST_F(MetaTest, NewerSuperblockCopyWins) {
  auto store = Format();
  store->MarkNeedsCheck("test reason");
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_TRUE(s.needs_check);
  EXPECT_NE(s.damage.find("test reason"), std::string::npos);
  // The copy just written is bad: the previous one (without the flag) wins.
  Poke(kMetaFileName, (s.super.generation % 2) * kPage + 30, 0x02);
  s = MustLoad();
  EXPECT_FALSE(s.needs_check);
  EXPECT_EQ(s.damage, "");
}

TEST_F(MetaTest, MissingMetaFileIsAnError) {
  std::string error;
  EXPECT_FALSE(Load(io::Env::Default(), dir_, &error).ok());
  EXPECT_NE(error.find("cannot open"), std::string::npos);
}

TEST_F(MetaTest, CheckpointSlotsAlternateAndTheNewerValidWins) {
  auto store = Format();
  Model model(store.get());
  store->AppendVolume(Volume(1));
  model.Map(1, 1, 10, true);
  ASSERT_TRUE(store->Commit().ok());
  ASSERT_TRUE(store->Checkpoint(false).ok());  // seq 2 -> ckpt.0
  model.Map(2, 1, 20, false);
  ASSERT_TRUE(store->Checkpoint(false).ok());  // seq 3 -> ckpt.1
  model.Map(3, 1, 30, true);
  ASSERT_TRUE(store->Commit().ok());
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_EQ(s.checkpoint_sequence, 3u);
  EXPECT_EQ(s.replayed_records, 1u);
  EXPECT_TRUE(SameMappings(s.mappings, model.Expected()));

  // The newer slot bad: the older one plus the journal since it. The record
  // folded into checkpoint 3 without ever reaching the journal (cblock 2) is
  // lost, and the newer batch after the gap says so.
  Poke(kCheckpointNames[1], 60, 0x08);
  s = MustLoad();
  EXPECT_EQ(s.checkpoint_sequence, 2u);
  EXPECT_NE(s.checkpoint_damage[1], "");
  EXPECT_NE(s.damage.find("journal damaged"), std::string::npos) << s.damage;

  // Both bad: nothing to start from.
  Poke(kCheckpointNames[0], 200, 0x08);
  s = MustLoad();
  EXPECT_FALSE(s.has_checkpoint);
  EXPECT_NE(s.damage.find("no valid checkpoint"), std::string::npos);
}

TEST_F(MetaTest, OlderCheckpointPlusJournalGivesTheSameState) {
  auto store = Format();
  Model model(store.get());
  store->AppendVolume(Volume(1));
  model.Map(1, 1, 10, true);
  ASSERT_TRUE(store->Commit().ok());
  model.Map(2, 1, 20, true);
  ASSERT_TRUE(store->Commit().ok());
  ASSERT_TRUE(store->Checkpoint(false).ok());  // everything was journaled
  store.reset();
  Poke(kCheckpointNames[0], 10, 0x01);
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_EQ(s.checkpoint_sequence, 1u);
  EXPECT_TRUE(SameMappings(s.mappings, model.Expected()));
}

TEST_F(MetaTest, TwoCacheBlocksForOneOriginBlockIsDamage) {
  auto store = Format();
  store->AppendVolume(Volume(1));
  store->AppendMap(CBlock(7), OBlock{VolumeId(1), 5}, true);
  store->AppendMap(CBlock(3), OBlock{VolumeId(1), 5}, false);
  store->AppendMap(CBlock(4), OBlock{VolumeId(2), 1}, false);  // no volume 2
  store->AppendMap(CBlock(9), OBlock{VolumeId(1), 6}, false);
  ASSERT_TRUE(store->Commit().ok());
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_NE(s.damage, "");
  // The lower cblock of the pair is kept, the unknown volume's is dropped.
  ASSERT_EQ(s.mappings.size(), 2u);
  EXPECT_EQ(s.mappings[0].cblock, CBlock(3));
  EXPECT_EQ(s.mappings[1].cblock, CBlock(9));
}

TEST_F(MetaTest, SmallJournalWrapsAndForcesCheckpoints) {
  const uint64_t ring = 4 * kMaxBatchBytes;  // the smallest allowed
  auto store = Format(64, ring);
  ASSERT_TRUE(store);
  auto model = std::make_unique<Model>(store.get());
  store->AppendVolume(Volume(1));
  std::mt19937 rng(7);
  uint64_t index = 0;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 350; ++i) {  // 4 KiB a commit: > 1 lap
      const uint32_t c = rng() % 64;
      if (!model->Mapped(c)) {
        model->Map(c, 1, index++, rng() % 2);
      } else if (rng() % 4 == 0) {
        model->Unmap(c);
      } else {
        model->SetDirty(c, rng() % 2);
      }
      ASSERT_TRUE(store->Commit().ok());
    }
    const MetaStore::Stats st = store->GetStats();
    EXPECT_GT(st.checkpoints, 0u);
    EXPECT_LE(st.journal_used, ring);
    EXPECT_GT(st.journal_bytes, ring);
    const auto expected = model->Expected();
    model.reset();
    store.reset();
    LoadedState s = MustLoad();
    ASSERT_EQ(s.damage, "");
    ASSERT_TRUE(SameMappings(s.mappings, expected)) << "round " << round;
    EXPECT_GT(s.journal_end, ring);  // a logical position past one lap
    store = Open(s);
    model = std::make_unique<Model>(store.get());
    model->Adopt(s);
  }
  model.reset();
}

TEST_F(MetaTest, GroupCommitSharesWritesAmongThreads) {
  auto store = Format(100000);
  Model model(store.get());
  store->AppendVolume(Volume(1));
  constexpr int kThreads = 8, kPerThread = 150;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const uint32_t c = t * kPerThread + i;
        const uint64_t seq = model.Map(c, 1, c, true);
        if (!store->WaitDurable(seq).ok()) ++failures;
        // Durable means durable: no record at or before seq is pending.
        if (store->PendingDirty(CBlock(c)).has_value()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_FALSE(store->HasPending());
  const auto stats = store->GetStats();
  EXPECT_LT(stats.commits, static_cast<uint64_t>(kThreads * kPerThread));
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_EQ(s.mappings.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_TRUE(SameMappings(s.mappings, model.Expected()));
}

TEST_F(MetaTest, BigBatchesSplitAtTheBatchLimit) {
  auto store = Format(100000);
  Model model(store.get());
  store->AppendVolume(Volume(1));
  for (uint32_t c = 0; c < 30000; ++c) model.Map(c, 1, c, c % 2);
  ASSERT_TRUE(store->Commit().ok());
  EXPECT_GE(store->GetStats().commits, 3u);  // 24 bytes a record, 256K batch
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_TRUE(SameMappings(s.mappings, model.Expected()));
}

// --- Volume identity, on real files.

class VolumesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tierfs-vol-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    dirfd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
    ASSERT_GE(dirfd_, 0);
  }
  void TearDown() override {
    ::close(dirfd_);
    fs::remove_all(dir_);
  }
  void Write(const std::string& name, const std::string& data) {
    std::ofstream(dir_ + "/" + name) << data;
  }
  VolumeRecord Record(uint32_t id, const std::string& name) {
    io::OpenOptions o;
    o.write = false;
    auto f = io::Env::Default()->OpenAt(dirfd_, name, o);
    EXPECT_TRUE(f.ok());
    auto st = (*f)->Stat();
    EXPECT_TRUE(st.ok());
    return RecordFor(VolumeId(id), *st, name);
  }
  std::vector<ResolvedVolume> Resolve(const std::vector<VolumeRecord>& r,
                                      bool check_changes) {
    return ResolveVolumes(io::Env::Default(), dirfd_, r, check_changes);
  }
  std::string dir_;
  int dirfd_ = -1;
};

TEST_F(VolumesTest, RenameKeepsTheIdAndFindsTheNewPath) {
  fs::create_directory(dir_ + "/sub");
  Write("a.img", "aaaa");
  Write("b.img", "bb");
  std::vector<VolumeRecord> records = {Record(1, "a.img"), Record(2, "b.img")};
  fs::rename(dir_ + "/a.img", dir_ + "/sub/renamed.img");
  auto v = Resolve(records, true);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].state, VolumeState::kAttached);
  EXPECT_EQ(v[0].record.id, VolumeId(1));
  EXPECT_EQ(v[0].record.path, "sub/renamed.img");
  EXPECT_TRUE(v[0].origin);
  EXPECT_EQ(v[1].state, VolumeState::kAttached);
  EXPECT_EQ(v[1].record.path, "b.img");
}

TEST_F(VolumesTest, DeleteAndRecreateUnderTheSameNameIsMissing) {
  Write("a.img", "aaaa");
  std::vector<VolumeRecord> records = {Record(1, "a.img")};
  // Recreate a few times so that an inode number gets reused if the
  // filesystem reuses them at all.
  for (int i = 0; i < 5; ++i) {
    fs::remove(dir_ + "/a.img");
    Write("a.img", "aaaa");
    auto v = Resolve(records, false);
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].state, VolumeState::kMissing)
        << "same ino: " << (Record(9, "a.img").ino == records[0].ino);
    EXPECT_FALSE(v[0].origin);
  }
}

TEST_F(VolumesTest, SizeOrMtimeChangeIsChangedOnlyWhenChecked) {
  Write("a.img", "aaaa");
  std::vector<VolumeRecord> records = {Record(1, "a.img")};
  {
    std::ofstream f(dir_ + "/a.img", std::ios::app);
    f << "more";
  }
  EXPECT_EQ(Resolve(records, true)[0].state, VolumeState::kChanged);
  EXPECT_EQ(Resolve(records, false)[0].state, VolumeState::kAttached);
}

TEST_F(VolumesTest, NeverFollowsASymlinkOutOfTheSlowDir) {
  char tmpl[] = "/tmp/tierfs-out-XXXXXX";
  const std::string outside = ::mkdtemp(tmpl);
  std::ofstream(outside + "/x.img") << "x";
  ASSERT_EQ(::symlink((outside + "/x.img").c_str(), (dir_ + "/x.img").c_str()),
            0);
  struct stat st;
  ASSERT_EQ(::stat((outside + "/x.img").c_str(), &st), 0);
  VolumeRecord r;
  r.id = VolumeId(1);
  r.ino = st.st_ino;
  r.path = "x.img";
  auto v = Resolve({r}, false);
  EXPECT_EQ(v[0].state, VolumeState::kMissing);
  fs::remove_all(outside);
}

// --- Faults on the metadata path.

class FaultTest : public MetaTest {
 protected:
  void SetUp() override {
    MetaTest::SetUp();
    injector_ = std::make_shared<io::FaultInjector>(3);
    env_ =
        std::make_unique<io::FaultInjectingEnv>(io::Env::Default(), injector_);
  }
  // A store whose cache data file (cache.data) goes through the injector.
  std::unique_ptr<MetaStore> FormatWithCacheStore() {
    auto store = Format(1000, 0, env_.get());
    io::OpenOptions o;
    o.create = true;
    auto cache = env_->OpenAt(AT_FDCWD, dir_ + "/cache.data", o);
    EXPECT_TRUE(cache.ok());
    if (!store || !cache.ok()) return nullptr;
    cache_ = std::move(cache).value();
    store->SetCacheStore(cache_.get());
    return store;
  }
  std::shared_ptr<io::FaultInjector> injector_;
  std::unique_ptr<io::FaultInjectingEnv> env_;
  std::unique_ptr<io::File> cache_;
};

TEST_F(FaultTest, WriteOrSyncErrorsFailTheStoreForGood) {
  struct Case {
    uint32_t ops;
    int error;
    const char* path;
  };
  for (const Case& c :
       {Case{io::kFaultWrite, EIO, "/meta"}, Case{io::kFaultSync, EIO, "/meta"},
        Case{io::kFaultWrite, ENOSPC, "/meta"},
        Case{io::kFaultSync, ENOSPC, "/ckpt."}}) {
    SCOPED_TRACE(std::to_string(c.ops) + " " + c.path);
    injector_->ClearRules();
    auto store = Format(1000, 0, env_.get());
    ASSERT_TRUE(store);
    Model model(store.get());
    store->AppendVolume(Volume(1));
    model.Map(1, 1, 1, true);
    ASSERT_TRUE(store->Commit().ok());
    injector_->AddRule(
        io::FaultRule{.ops = c.ops, .path_contains = c.path, .error = c.error});
    model.Map(2, 1, 2, true);
    // A checkpoint for the "/ckpt." case, a journal commit otherwise.
    Status st = std::string(c.path) == "/ckpt." ? store->Checkpoint(false)
                                                : store->Commit();
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().value(), c.error);
    injector_->ClearRules();  // the device recovers; the store stays failed
    model.Map(3, 1, 3, true);
    EXPECT_FALSE(store->Commit().ok());
    EXPECT_FALSE(store->Checkpoint(false).ok());
    EXPECT_FALSE(store->WaitDurable(store->last_seq()).ok());
    EXPECT_FALSE(store->failure().ok());
    // What was durable before the failure is still reported so.
    EXPECT_TRUE(store->WaitDurable(1).ok());
    store.reset();
    // Nothing that was reported durable is lost.
    LoadedState s = MustLoad();
    EXPECT_EQ(s.damage, "");
    bool has1 = false;
    for (const auto& m : s.mappings) has1 |= m.cblock == CBlock(1);
    EXPECT_TRUE(has1);
  }
}

TEST_F(FaultTest, CacheStoreSyncFailureKeepsMappingsOffTheJournal) {
  auto store = FormatWithCacheStore();
  ASSERT_TRUE(store);
  Model model(store.get());
  store->AppendVolume(Volume(1));
  injector_->AddRule(
      io::FaultRule{.ops = io::kFaultSync, .path_contains = "cache.data"});
  model.Map(1, 1, 1, true);
  EXPECT_FALSE(store->Commit().ok());
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_TRUE(s.mappings.empty());
  EXPECT_EQ(s.replayed_records, 0u);
}

// WaitWritten puts records in the journal file without a sync: a daemon
// that dies then (kill -9) leaves them for the next load; the cache store
// is synced before the sync that makes their mappings durable.
TEST_F(FaultTest, WrittenRecordsOutliveTheDaemonAndSyncLater) {
  auto store = FormatWithCacheStore();
  ASSERT_TRUE(store);
  Model model(store.get());
  store->AppendVolume(Volume(1));
  ASSERT_TRUE(store->Commit().ok());
  // No sync may happen: a written record needs none.
  injector_->AddRule(io::FaultRule{.ops = io::kFaultSync});
  model.Map(1, 1, 1, true);
  model.Map(2, 1, 2, false);
  ASSERT_TRUE(store->WaitWritten(store->last_seq()).ok());
  EXPECT_TRUE(store->HasPending());  // written, not durable
  EXPECT_EQ(store->PendingNewDirty(CBlock(1)), store->last_seq() - 1);
  // The sync that makes them durable fails at the cache store first.
  injector_->ClearRules();
  injector_->AddRule(
      io::FaultRule{.ops = io::kFaultSync, .path_contains = "cache.data"});
  EXPECT_FALSE(store->Commit().ok());
  store.reset();  // the daemon dies
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_TRUE(SameMappings(s.mappings, model.Expected()));

  // Written, then made durable by a later commit of more records.
  injector_->ClearRules();
  store = Open(s);
  ASSERT_TRUE(store);
  Model again(store.get());
  again.Adopt(s);
  again.Map(3, 1, 3, true);
  ASSERT_TRUE(store->WaitWritten(store->last_seq()).ok());
  again.Unmap(1);
  ASSERT_TRUE(store->Commit().ok());
  EXPECT_FALSE(store->HasPending());
  EXPECT_FALSE(store->PendingNewDirty(CBlock(3)));
  store.reset();
  s = MustLoad();
  EXPECT_TRUE(SameMappings(s.mappings, again.Expected()));
}

// A commit whose journal write succeeds and whose sync fails leaves its
// records written: a writer waiting only for "written" (queued behind that
// commit) succeeds, one waiting for "durable" fails, and so does any wait
// for a record appended after the failure.
TEST_F(FaultTest, RecordsWrittenBeforeAFailedSyncCountAsWritten) {
  auto store = Format(1000, 0, env_.get());
  ASSERT_TRUE(store);
  Model model(store.get());
  store->AppendVolume(Volume(1));
  ASSERT_TRUE(store->Commit().ok());
  injector_->AddRule(io::FaultRule{
      .ops = io::kFaultSync, .path_contains = "/meta", .error = EIO});
  model.Map(1, 1, 1, true);
  const uint64_t seq = store->last_seq();
  EXPECT_FALSE(store->Commit().ok());
  EXPECT_TRUE(store->WaitWritten(seq).ok());
  EXPECT_FALSE(store->WaitDurable(seq).ok());
  model.Map(2, 1, 2, true);
  EXPECT_FALSE(store->WaitWritten(store->last_seq()).ok());
  store.reset();  // the daemon dies: the written batch loads
  injector_->ClearRules();
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  ASSERT_EQ(s.mappings.size(), 1u);
  EXPECT_EQ(s.mappings[0].cblock, CBlock(1));
}

TEST_F(FaultTest, TornJournalWriteIsATornTail) {
  auto store = Format(1000, 0, env_.get());
  Model model(store.get());
  store->AppendVolume(Volume(1));
  model.Map(1, 1, 1, true);
  ASSERT_TRUE(store->Commit().ok());
  injector_->AddRule(io::FaultRule{
      .ops = io::kFaultWrite, .path_contains = "/meta", .short_io = true});
  for (uint32_t c = 2; c < 600; ++c) model.Map(c, 1, c, true);  // 4 pages
  EXPECT_FALSE(store->Commit().ok());
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_EQ(s.mappings.size(), 1u);
}

TEST_F(FaultTest, TornCheckpointFallsBackToTheOtherSlot) {
  auto store = Format(1000, 0, env_.get());
  Model model(store.get());
  store->AppendVolume(Volume(1));
  for (uint32_t c = 0; c < 400; ++c) model.Map(c, 1, c, true);
  ASSERT_TRUE(store->Commit().ok());
  injector_->AddRule(io::FaultRule{
      .ops = io::kFaultWrite, .path_contains = "/ckpt.", .short_io = true});
  EXPECT_FALSE(store->Checkpoint(false).ok());
  store.reset();
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_EQ(s.checkpoint_sequence, 1u);
  EXPECT_TRUE(SameMappings(s.mappings, model.Expected()));
}

TEST_F(FaultTest, FailedSuperblockWriteAtOpenFailsTheOpen) {
  auto store = Format(1000, 0, env_.get());
  store.reset();
  LoadedState s = MustLoad();
  injector_->AddRule(io::FaultRule{
      .ops = io::kFaultSync, .path_contains = "/meta", .error = EIO});
  std::string error;
  EXPECT_FALSE(MetaStore::Open(env_.get(), dir_, s, &error).ok());
  EXPECT_NE(error.find("superblock"), std::string::npos) << error;
}

// --- The offline tools.

class ToolsTest : public MetaTest {
 protected:
  void SetUp() override {
    MetaTest::SetUp();
    char tmpl[] = "/tmp/tierfs-slow-XXXXXX";
    slow_ = ::mkdtemp(tmpl);
    slow_fd_ = ::open(slow_.c_str(), O_RDONLY | O_DIRECTORY);
  }
  void TearDown() override {
    ::close(slow_fd_);
    fs::remove_all(slow_);
    MetaTest::TearDown();
  }
  // A formatted cache of 16 blocks of 64K with `file` (4 blocks of 'o') in
  // the slow dir as volume 1, and cblocks 0..3 mapping its blocks, the
  // even ones dirty with 'a' + index in the cache store.
  void MakeCache() {
    FormatOptions o;
    o.cache_blocks = 16;
    std::unique_ptr<io::File> cache;
    std::string error;
    auto store = FormatCache(io::Env::Default(), dir_, dir_, o, &cache, &error);
    ASSERT_TRUE(store.ok()) << error;
    std::ofstream(slow_ + "/file.img") << std::string(4 * kBs, 'o');
    io::OpenOptions ro;
    ro.write = false;
    auto f = io::Env::Default()->OpenAt(slow_fd_, "file.img", ro);
    ASSERT_TRUE(f.ok());
    Model model(store->get());
    (*store)->AppendVolume(RecordFor(VolumeId(1), *(*f)->Stat(), "file.img"));
    for (uint32_t c = 0; c < 4; ++c) {
      std::vector<std::byte> data(kBs, std::byte('a' + c));
      ASSERT_TRUE(cache->WriteAt(c * kBs, data).ok());
      model.Map(c, 1, c, c % 2 == 0);
    }
    ASSERT_TRUE((*store)->Commit().ok());
  }
  std::string SlowFile() {
    std::ifstream in(slow_ + "/file.img");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static constexpr uint64_t kBs = 64 * 1024;
  std::string slow_;
  int slow_fd_ = -1;
};

TEST_F(ToolsTest, FormatCacheCreatesAPreallocatedStore) {
  MakeCache();
  EXPECT_EQ(fs::file_size(dir_ + "/" + kCacheStoreName), 16 * kBs);
  CheckReport r = Check(io::Env::Default(), dir_, CheckOptions{});
  EXPECT_TRUE(r.problems.empty()) << CheckText(r);
  EXPECT_EQ(r.state.mappings.size(), 4u);
  EXPECT_EQ(r.dirty, 2u);
  const std::string text = CheckText(r);
  EXPECT_EQ(text.substr(text.size() - 6), "clean\n") << text;
}

TEST_F(ToolsTest, AThinCacheHasASparseStoreAndLoadsItsBudget) {
  FormatOptions o;
  o.block_size = kBs;
  o.cache_blocks = 64;
  o.budget_blocks = 16;
  std::unique_ptr<io::File> store;
  std::string error;
  auto meta = FormatCache(io::Env::Default(), dir_, dir_, o, &store, &error);
  ASSERT_TRUE(meta.ok()) << error;
  meta->reset();
  const std::string path = dir_ + "/" + kCacheStoreName;
  EXPECT_EQ(fs::file_size(path), 64 * kBs);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kBs);  // no slot yet
  CheckReport r = Check(io::Env::Default(), dir_, CheckOptions{});
  EXPECT_TRUE(r.problems.empty()) << CheckText(r);
  EXPECT_EQ(r.state.super.version, 3u);
  EXPECT_EQ(r.state.super.budget_blocks, 16u);
  EXPECT_NE(CheckText(r).find("thin: holds up to 1 MiB"), std::string::npos)
      << CheckText(r);
  // Through a dump and a restore.
  const nlohmann::json dump = Dump(r.state);
  EXPECT_EQ(dump["superblock"]["budget_blocks"], 16u);
}

TEST_F(ToolsTest, DroppingACacheIsRefusedWhileItMayHoldDataUnlessForced) {
  io::Env* env = io::Env::Default();
  std::string error;
  ExistingCache none = FindExistingCache(env, dir_);
  EXPECT_FALSE(none.exists);
  EXPECT_TRUE(RefuseToDrop(none, "FAST", false, "--x", "--y", &error).ok());

  MakeCache();  // 2 of its 4 blocks dirty
  ExistingCache dirty = FindExistingCache(env, dir_);
  ASSERT_TRUE(dirty.exists && dirty.state);
  EXPECT_EQ(dirty.dirty, 2u);
  Status st = RefuseToDrop(dirty, "FAST", false, "--x", "--y", &error);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().value(), EBUSY);
  EXPECT_EQ(error,
            "--x would drop 2 dirty blocks not yet written to the slow dir; "
            "run 'tierfs writeback --fast FAST --slow DIR' first, or add --y");
  EXPECT_TRUE(RefuseToDrop(dirty, "FAST", true, "--x", "--y", &error).ok());

  Poke(kCheckpointNames[1], 100, 0xff);  // the only checkpoint written
  ExistingCache damaged = FindExistingCache(env, dir_);
  ASSERT_TRUE(damaged.exists);
  EXPECT_FALSE(damaged.state);
  EXPECT_EQ(damaged.error, EUCLEAN);
  EXPECT_EQ(damaged.uuid, dirty.uuid);
  EXPECT_FALSE(RefuseToDrop(damaged, "FAST", false, "--x", "--y", &error).ok());
  EXPECT_NE(error.find("cannot be read"), std::string::npos) << error;
  EXPECT_TRUE(RefuseToDrop(damaged, "FAST", true, "--x", "--y", &error).ok());
}

TEST_F(ToolsTest, FastDirLockIsExclusiveAndNamesItsHolder) {
  std::string error;
  auto first = FastDirLock::AcquireOffline(dir_, &error);
  ASSERT_TRUE(first.ok()) << error;
  auto second = FastDirLock::AcquireOffline(dir_, &error);
  EXPECT_FALSE(second.ok());
  EXPECT_NE(error.find("in use"), std::string::npos) << error;
  ASSERT_TRUE((*first)->RecordHolder("/mnt/tier"));
  FastDirLock::Holder holder;
  auto third = FastDirLock::Acquire(dir_, &holder, &error);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().value(), EBUSY);
  EXPECT_EQ(holder.pid, std::to_string(::getpid()));
  EXPECT_EQ(holder.mountpoint, "/mnt/tier");
  EXPECT_FALSE(
      FastDirLock::WaitUntilFree(dir_, std::chrono::steady_clock::now()));
  first->reset();
  EXPECT_TRUE(
      FastDirLock::WaitUntilFree(dir_, std::chrono::steady_clock::now()));
  EXPECT_TRUE(FastDirLock::AcquireOffline(dir_, &error).ok());
}

TEST_F(ToolsTest, CheckResolvesVolumesAndReportsMissingDirtyOnes) {
  MakeCache();
  CheckOptions o;
  o.slow_dirfd = slow_fd_;
  CheckReport r = Check(io::Env::Default(), dir_, o);
  ASSERT_EQ(r.volumes.size(), 1u);
  EXPECT_EQ(r.volumes[0].state, "attached");
  EXPECT_EQ(r.volumes[0].dirty, 2u);
  fs::remove(slow_ + "/file.img");
  r = Check(io::Env::Default(), dir_, o);
  EXPECT_EQ(r.volumes[0].state, "missing");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].find("2 dirty blocks"), std::string::npos);
  EXPECT_FALSE(CheckJson(r)["ok"].get<bool>());
}

TEST_F(ToolsTest, RepairRewritesABadSuperblockCopyAndKeepsTheState) {
  MakeCache();
  Poke(kMetaFileName, 50, 0x01);
  CheckReport r = Check(io::Env::Default(), dir_, CheckOptions{});
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].find("superblock copy 0"), std::string::npos);
  CheckOptions repair;
  repair.repair = true;
  r = Check(io::Env::Default(), dir_, repair);
  EXPECT_TRUE(r.problems.empty()) << CheckText(r);
  EXPECT_FALSE(r.repairs.empty());
  EXPECT_EQ(r.state.mappings.size(), 4u);
  EXPECT_EQ(r.dirty, 2u);
  // And the repaired metadata opens for a mount and journals on.
  LoadedState s = MustLoad();
  auto store = Open(s);
  ASSERT_TRUE(store);
  Model model(store.get());
  model.Adopt(s);
  model.Map(9, 1, 5, true);
  ASSERT_TRUE(store->Commit().ok());
  store.reset();
  EXPECT_EQ(MustLoad().mappings.size(), 5u);
}

TEST_F(ToolsTest, RepairOfADamagedJournalKeepsTheStateUpToTheDamage) {
  MakeCache();
  LoadedState before = MustLoad();
  auto store = Open(before);
  Model model(store.get());
  model.Adopt(before);
  const uint64_t second = before.journal_end;
  model.SetDirty(1, true);
  ASSERT_TRUE(store->Commit().ok());
  model.SetDirty(3, true);
  ASSERT_TRUE(store->Commit().ok());
  store->MarkNeedsCheck("test");
  store.reset();
  Poke(kMetaFileName, kJournalOffset + second + kBatchHeaderBytes, 0x04);
  CheckReport r = Check(io::Env::Default(), dir_, CheckOptions{});
  EXPECT_FALSE(r.problems.empty());
  CheckOptions repair;
  repair.repair = true;
  r = Check(io::Env::Default(), dir_, repair);
  EXPECT_TRUE(r.problems.empty()) << CheckText(r);
  EXPECT_EQ(r.dirty, 2u);  // the records after the damage are gone
  LoadedState s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_FALSE(s.needs_check);
  EXPECT_GE(s.next_seq, before.next_seq + 2);  // above every stale batch
  EXPECT_EQ(s.replayed_records, 0u);
}

TEST_F(ToolsTest, RepairWithoutACheckpointNeedsForce) {
  MakeCache();
  Zero(kCheckpointNames[0], 0, 64);
  Zero(kCheckpointNames[1], 0, 64);
  CheckOptions repair;
  repair.repair = true;
  CheckReport r = Check(io::Env::Default(), dir_, repair);
  EXPECT_TRUE(r.repair_refused);
  EXPECT_FALSE(r.problems.empty());
  EXPECT_NE(CheckText(r).find("--force"), std::string::npos);
  repair.force = true;
  r = Check(io::Env::Default(), dir_, repair);
  EXPECT_TRUE(r.problems.empty()) << CheckText(r);
  EXPECT_TRUE(r.state.mappings.empty());
}

TEST_F(ToolsTest, DumpRestoreDumpRoundTrips) {
  MakeCache();
  const nlohmann::json dump = Dump(MustLoad());
  EXPECT_EQ(dump["mappings"].size(), 4u);
  EXPECT_EQ(dump["mappings"][2]["dirty"], true);
  char tmpl[] = "/tmp/tierfs-rs-XXXXXX";
  const std::string other = ::mkdtemp(tmpl);
  std::string error;
  ASSERT_TRUE(Restore(io::Env::Default(), other, dump, &error).ok()) << error;
  auto again = Load(io::Env::Default(), other, &error);
  ASSERT_TRUE(again.ok()) << error;
  EXPECT_EQ(again->damage, "");
  EXPECT_EQ(Dump(*again), dump);
  // Over the cache it came from, too.
  ASSERT_TRUE(Restore(io::Env::Default(), dir_, dump, &error).ok()) << error;
  EXPECT_EQ(Dump(MustLoad()), dump);
  fs::remove_all(other);
  // A malformed dump is refused.
  nlohmann::json bad = dump;
  bad["mappings"].push_back(bad["mappings"][0]);
  EXPECT_FALSE(Restore(io::Env::Default(), dir_, bad, &error).ok());
  EXPECT_NE(error.find("twice"), std::string::npos) << error;
  bad = dump;
  bad["superblock"].erase("uuid");
  EXPECT_FALSE(Restore(io::Env::Default(), dir_, bad, &error).ok());
}

TEST_F(ToolsTest, WritebackCopiesDirtyBlocksAndRecordsThemClean) {
  MakeCache();
  std::vector<uint64_t> progress;
  WritebackOptions o;
  o.slow_dirfd = slow_fd_;
  o.progress = [&](uint64_t done, uint64_t) { progress.push_back(done); };
  std::string error;
  auto r = Writeback(io::Env::Default(), dir_, o, &error);
  ASSERT_TRUE(r.ok()) << error;
  EXPECT_EQ(r->dirty, 2u);
  EXPECT_EQ(r->written, 2u);
  EXPECT_TRUE(r->problems.empty());
  EXPECT_EQ(progress, (std::vector<uint64_t>{1, 2}));
  const std::string want = std::string(kBs, 'a') + std::string(kBs, 'o') +
                           std::string(kBs, 'c') + std::string(kBs, 'o');
  EXPECT_TRUE(SlowFile() == want);
  LoadedState s = MustLoad();
  EXPECT_EQ(s.mappings.size(), 4u);
  for (const auto& m : s.mappings) EXPECT_FALSE(m.dirty);
  // The volume record matches the file as written: no "changed" later.
  CheckOptions c;
  c.slow_dirfd = slow_fd_;
  EXPECT_EQ(Check(io::Env::Default(), dir_, c).volumes[0].state, "attached");
}

TEST_F(ToolsTest, WritebackKeepsDirtyBlocksOfMissingVolumes) {
  MakeCache();
  fs::rename(slow_ + "/file.img", slow_ + "/renamed.img");
  WritebackOptions o;
  o.slow_dirfd = slow_fd_;
  std::string error;
  auto r = Writeback(io::Env::Default(), dir_, o, &error);
  ASSERT_TRUE(r.ok()) << error;
  EXPECT_EQ(r->written, 2u);  // found under its new name
  MakeCache();
  fs::remove(slow_ + "/file.img");
  std::ofstream(slow_ + "/file.img") << "a new file under the old name";
  r = Writeback(io::Env::Default(), dir_, o, &error);
  ASSERT_TRUE(r.ok()) << error;
  EXPECT_EQ(r->written, 0u);
  ASSERT_EQ(r->problems.size(), 1u);
  EXPECT_NE(r->problems[0].find("not in the slow dir"), std::string::npos);
  uint64_t dirty = 0;
  for (const auto& m : MustLoad().mappings) dirty += m.dirty;
  EXPECT_EQ(dirty, 2u);
  EXPECT_EQ(SlowFile(), "a new file under the old name");
}

TEST_F(FaultTest, TornSuperblockWriteLeavesAValidCopy) {
  auto store = Format(1000, 0, env_.get());
  const uint64_t generation = store->super().generation;
  store.reset();
  LoadedState s = MustLoad();
  injector_->AddRule(io::FaultRule{
      .ops = io::kFaultWrite, .path_contains = "/meta", .short_io = true});
  std::string error;
  EXPECT_FALSE(MetaStore::Open(env_.get(), dir_, s, &error).ok());
  // The torn prefix holds the whole superblock (a few hundred bytes, one
  // sector) or not: either copy is valid, never both lost.
  s = MustLoad();
  EXPECT_EQ(s.damage, "");
  EXPECT_GE(s.super.generation, generation);
  EXPECT_LE(s.super.generation, generation + 1);
}

// --- Encoding edge cases.

TEST(FormatTest, RecordsRoundTripAndRejectGarbage) {
  std::vector<std::byte> payload;
  Record map{RecordType::kMap, CBlock(5), OBlock{VolumeId(2), 99}, true};
  Record vol;
  vol.type = RecordType::kVolume;
  vol.volume = VolumeRecord{VolumeId(2), 7, 8, 9, 10, 11, "dir/file.img"};
  EncodeRecord(map, &payload);
  EncodeRecord(vol, &payload);
  auto back = DecodeRecords(payload, 2);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)[0].oblock.index, 99u);
  EXPECT_TRUE((*back)[0].dirty);
  EXPECT_EQ((*back)[1].volume.path, "dir/file.img");
  EXPECT_EQ((*back)[0].invalid, 0);
  EXPECT_FALSE(DecodeRecords(payload, 3).ok());
  EXPECT_FALSE(DecodeRecords(payload, 1).ok());  // bytes left over
  // A sector mask rides in the record's spare word; nothing else may.
  std::vector<std::byte> masked;
  Record partial = map;
  partial.invalid = 0x8001;
  EncodeRecord(partial, &masked);
  back = DecodeRecords(masked, 1);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)[0].invalid, 0x8001);
  masked[14] = std::byte{1};  // bit 16 of the mask word
  EXPECT_FALSE(DecodeRecords(masked, 1).ok());
  // A count no payload could hold is refused before anything is reserved.
  EXPECT_FALSE(DecodeRecords(payload, UINT32_MAX).ok());
  for (const char* bad : {"/abs", "../up", "a/../b", "a//b", "."}) {
    std::vector<std::byte> p;
    Record v = vol;
    v.volume.path = bad;
    EncodeRecord(v, &p);
    EXPECT_FALSE(DecodeRecords(p, 1).ok()) << bad;
  }
}

TEST(FormatTest, SuperblockOfVersion1IsReadAndOfANewerOneRefused) {
  Superblock sb;
  sb.block_size = 64 * 1024;
  sb.cache_blocks = 16;
  sb.journal_size = 4 * kMaxBatchBytes;
  std::string why;
  for (uint32_t version : {1u, 2u}) {
    sb.version = version;
    EXPECT_TRUE(DecodeSuperblock(EncodeSuperblock(sb), &why)) << why;
  }
  sb.version = 4;
  EXPECT_FALSE(DecodeSuperblock(EncodeSuperblock(sb), &why));
  EXPECT_EQ(why, "unsupported metadata format version 4");
}

// Version 3 is a thin cache's: it carries the budget, below the slots.
TEST(FormatTest, AThinSuperblockCarriesItsBudget) {
  Superblock sb;
  sb.block_size = 64 * 1024;
  sb.cache_blocks = 16;
  sb.journal_size = 4 * kMaxBatchBytes;
  sb.budget_blocks = 4;
  sb.version = VersionFor(sb.budget_blocks);
  EXPECT_EQ(sb.version, 3u);
  std::string why;
  std::optional<Superblock> back = DecodeSuperblock(EncodeSuperblock(sb), &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(back->budget_blocks, 4u);
  EXPECT_EQ(back->cache_blocks, 16u);
  // A thick cache stays version 2, which older tierfs reads.
  EXPECT_EQ(VersionFor(0), 2u);
  // No budget in version 3, or one not below the slots: damage.
  for (uint64_t budget : {0u, 16u, 17u}) {
    sb.budget_blocks = budget;
    EXPECT_FALSE(DecodeSuperblock(EncodeSuperblock(sb), &why)) << budget;
    EXPECT_EQ(why, "superblock field out of range");
  }
}

}  // namespace
}  // namespace tierfs::meta
