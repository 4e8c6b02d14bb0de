// The engine over persistent metadata: restarts (clean and after a crash)
// keep the cache warm and every dirty block, volumes changed or gone while
// unmounted are handled, and metadata that cannot be written or read ends
// in a read-only cache or a refusal, never in silent loss.

#include "src/cache/persistent.h"

#include "src/cache/persistent_fixture.h"
#include "src/io/fault_injection.h"
#include "src/util/sync_point.h"

namespace tierfs::cache {
namespace {

TEST_F(PersistentTest, CleanRestartIsWarmAndKeepsDirtyBlocks) {
  StartOk();
  EXPECT_TRUE(report_.formatted);
  std::vector<std::byte> data = Populate("vm.img");
  const EngineSnapshot before = engine_->Snapshot();
  ASSERT_TRUE(engine_->CloseCleanly().ok());
  engine_.reset();
  // Dirty data lives only in the cache until written back.
  EXPECT_NE(OriginBytes("vm.img", 2 * kBlock, kBlock),
            std::vector<std::byte>(data.begin() + 2 * kBlock,
                                   data.begin() + 3 * kBlock));

  StartOk();
  EXPECT_FALSE(report_.formatted);
  EXPECT_TRUE(report_.clean_shutdown);
  EXPECT_EQ(report_.mappings, before.used_blocks);
  EXPECT_EQ(report_.dirty, before.dirty_blocks);
  EXPECT_EQ(report_.replayed_records, 0u);
  auto v = Open("vm.img");
  EXPECT_EQ(Read(v, 0, 16 * kBlock), data);
  EXPECT_GE(engine_->Snapshot().read_hits, before.used_blocks);
  ASSERT_TRUE(engine_->Flush(std::chrono::seconds(30)).ok());
  // Flush returns once nothing is dirty; the last writeback counts itself
  // just after that, as it finishes.
  WaitIdle();
  EXPECT_EQ(engine_->Snapshot().writebacks, before.dirty_blocks);
  EXPECT_EQ(OriginBytes("vm.img", 0, 16 * kBlock), data);
}

TEST_F(PersistentTest, CrashAfterFsyncKeepsEveryMappingAndOnlyRealDirty) {
  StartOk();
  std::vector<std::byte> data = Populate("vm.img");
  auto v = Open("vm.img");
  ASSERT_TRUE(engine_->Fsync(*v).ok());
  const EngineSnapshot before = engine_->Snapshot();
  engine_->CloseVolume(v, false);
  v.reset();
  engine_.reset();  // no final checkpoint: what a kill -9 leaves

  StartOk();
  EXPECT_FALSE(report_.clean_shutdown);
  EXPECT_GT(report_.replayed_records, 0u);
  EXPECT_EQ(report_.mappings, before.used_blocks);
  // dm-cache would call all of them dirty; only the rewritten ones are.
  EXPECT_EQ(report_.dirty, before.dirty_blocks);
  EXPECT_LT(report_.dirty, report_.mappings);
  v = Open("vm.img");
  EXPECT_EQ(Read(v, 0, 16 * kBlock), data);
  EXPECT_GT(engine_->Snapshot().read_hits, 0u);
}

TEST_F(PersistentTest, RenamedVolumeKeepsItsBlocks) {
  StartOk();
  std::vector<std::byte> data = Populate("vm.img");
  ASSERT_TRUE(engine_->CloseCleanly().ok());
  engine_.reset();
  ASSERT_EQ(::rename(SlowPath("vm.img").c_str(), SlowPath("moved.img").c_str()),
            0);
  StartOk();
  EXPECT_EQ(report_.dropped_clean, 0u);
  auto v = Open("moved.img");
  EXPECT_EQ(Read(v, 0, 16 * kBlock), data);
  EXPECT_GT(engine_->Snapshot().read_hits, 0u);
}

TEST_F(PersistentTest, FileChangedWhileUnmountedDropsCleanKeepsDirty) {
  StartOk();
  std::vector<std::byte> data = Populate("vm.img");
  const uint64_t dirty = engine_->Snapshot().dirty_blocks;
  ASSERT_TRUE(engine_->CloseCleanly().ok());
  engine_.reset();
  // Someone rewrites block 0 of the origin behind tierfs's back.
  std::vector<std::byte> other = Pattern(kBlock, 9);
  int fd = ::open(SlowPath("vm.img").c_str(), O_WRONLY);
  ASSERT_EQ(::pwrite(fd, other.data(), kBlock, 0),
            static_cast<ssize_t>(kBlock));
  ::close(fd);
  std::copy(other.begin(), other.end(), data.begin());

  StartOk();
  EXPECT_GT(report_.dropped_clean, 0u);
  EXPECT_EQ(report_.dirty, dirty);
  ASSERT_EQ(report_.notes.size(), 1u);
  EXPECT_NE(report_.notes[0].find("vm.img"), std::string::npos);
  auto v = Open("vm.img");
  // The new origin bytes, not the stale cached copy; dirty blocks intact.
  EXPECT_EQ(Read(v, 0, 16 * kBlock), data);
}

TEST_F(PersistentTest, MissingFileWithDirtyBlocksIsRefusedThenForced) {
  StartOk();
  Populate("vm.img");
  ASSERT_TRUE(engine_->CloseCleanly().ok());
  engine_.reset();
  ASSERT_EQ(::unlink(SlowPath("vm.img").c_str()), 0);
  std::string error = Start(Options());
  EXPECT_NE(error.find("'vm.img' has"), std::string::npos) << error;
  EXPECT_NE(error.find("dirty"), std::string::npos) << error;

  PersistentOptions discard = Options();
  discard.discard_cache = true;
  error = Start(discard);
  EXPECT_NE(error.find("dirty block"), std::string::npos) << error;
  EXPECT_NE(error.find("--force"), std::string::npos) << error;

  discard.force = true;
  ASSERT_EQ(Start(discard), "");
  EXPECT_TRUE(report_.formatted);
  EXPECT_EQ(engine_->Snapshot().used_blocks, 0u);
}

TEST_F(PersistentTest, PassthroughStartsEmptyAndRefusesDirtyBlocks) {
  StartOk();
  Populate("vm.img");
  ASSERT_TRUE(engine_->CloseCleanly().ok());
  engine_.reset();
  PersistentOptions o = Options();
  o.engine.mode = Mode::kPassthrough;
  EXPECT_NE(Start(o).find("dirty block"), std::string::npos);
  // Written back, the clean copies are dropped: passthrough writes would
  // make them stale for the next mount.
  ASSERT_EQ(Start(Options()), "");
  ASSERT_TRUE(engine_->Flush(std::chrono::seconds(30)).ok());
  ASSERT_TRUE(engine_->CloseCleanly().ok());
  engine_.reset();
  ASSERT_EQ(Start(o), "");
  EXPECT_EQ(report_.mappings, 0u);
  EXPECT_GT(report_.dropped_clean, 0u);
  ASSERT_TRUE(engine_->CloseCleanly().ok());
  engine_.reset();
  ASSERT_EQ(Start(Options()), "");
  EXPECT_EQ(report_.mappings, 0u);
}

TEST_F(PersistentTest, OtherGeometryIsRefusedUnlessDiscarded) {
  StartOk();
  ASSERT_TRUE(engine_->CloseCleanly().ok());
  engine_.reset();
  PersistentOptions o = Options();
  o.engine.block_size = 2 * kBlock;
  o.block_size_given = true;
  EXPECT_NE(Start(o).find("formatted with block size 64 KiB"),
            std::string::npos);
  o = Options();
  o.cache_size = 2 * kCacheBlocks * kBlock;
  o.cache_size_given = true;
  EXPECT_NE(Start(o).find("resizing is not supported"), std::string::npos);
  // Not given: the cache keeps its own geometry.
  o.cache_size_given = false;
  ASSERT_EQ(Start(o), "");
  EXPECT_EQ(engine_->Snapshot().cache_blocks, kCacheBlocks);
}

TEST_F(PersistentTest, DamagedMetadataIsRefusedNamingCheck) {
  StartOk();
  Populate("vm.img");
  ASSERT_TRUE(engine_->CloseCleanly().ok());
  engine_.reset();
  for (const char* name : {"ckpt.0", "ckpt.1"}) {
    int fd = ::open((root_ + "/fast/tierfs/" + name).c_str(), O_WRONLY);
    ASSERT_EQ(::pwrite(fd, "garbage!", 8, 40), 8);
    ::close(fd);
  }
  const std::string error = Start(Options());
  EXPECT_NE(error.find("tierfs check"), std::string::npos) << error;
  EXPECT_NE(error.find("checkpoint"), std::string::npos) << error;
}

// PersistentTest with every file behind a fault injector.
class FaultyPersistentTest : public PersistentTest {
 protected:
  FaultyPersistentTest() { env_ = &faulty_env_; }
  ~FaultyPersistentTest() override { engine_.reset(); }  // before the env

  // Starts on "vm.img": 16 blocks of Pattern(.., 1), also in data_.
  std::shared_ptr<Volume> StartOnVolume() {
    StartOk();
    if (HasFatalFailure()) return nullptr;
    data_ = Pattern(16 * kBlock, 1);
    MakeOrigin("vm.img", data_);
    return Open("vm.img");
  }

  std::shared_ptr<io::FaultInjector> injector_ =
      std::make_shared<io::FaultInjector>();
  io::FaultInjectingEnv faulty_env_{io::Env::Default(), injector_};
  std::vector<std::byte> data_;
};

struct MetaFault {
  const char* name;
  int error;
  bool torn;
};

class MetadataFaultTest : public FaultyPersistentTest,
                          public ::testing::WithParamInterface<MetaFault> {};

TEST_P(MetadataFaultTest, WriteFailureMakesTheCacheReadOnlyWithoutLoss) {
  auto v = StartOnVolume();
  ASSERT_NE(v, nullptr);
  std::vector<std::byte>& data = data_;
  Warm(v, 8);
  ASSERT_GT(engine_->Snapshot().used_blocks, 0u);
  injector_->AddRule({.ops = io::kFaultWrite | io::kFaultSync,
                      .path_contains = "tierfs/meta",
                      .error = GetParam().error,
                      .short_io = GetParam().torn});
  // A write hit needs its dirty record durable first: it fails, and the
  // cache turns read-only rather than risk an unrecorded dirty block.
  std::vector<std::byte> fresh = Pattern(4096, 5);
  EXPECT_FALSE(Write(v, 0, fresh).ok());
  EngineSnapshot s = engine_->Snapshot();
  EXPECT_TRUE(s.read_only);
  EXPECT_NE(s.read_only_reason.find("metadata"), std::string::npos);
  Status again = Write(v, kBlock, fresh);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().value(), EROFS);
  // Reads still work, and nothing the caller was told is written changed.
  EXPECT_EQ(Read(v, 0, 16 * kBlock), data);
  EXPECT_EQ(OriginBytes("vm.img", 0, 16 * kBlock), data);
  engine_->CloseVolume(v, false);
  engine_.reset();

  // The disk heals: the metadata (a torn batch dropped) loads, or the mount
  // is refused naming `tierfs check`; never wrong data.
  injector_->ClearRules();
  const std::string error = Start(Options());
  if (!error.empty()) {
    EXPECT_NE(error.find("tierfs check"), std::string::npos) << error;
    return;
  }
  v = Open("vm.img");
  EXPECT_EQ(Read(v, 0, 16 * kBlock), data);
}

// A whole-block write miss (overwrite) returns once its mapping is written
// to the journal, before it is synced; a read of the block waits until the
// record is durable, so it never returns data that a power loss could
// revert. Here the journal can be written but never synced: the write
// succeeds, the read fails, and the next start serves either copy of the
// block (the record was written, not synced), never a mix.
TEST_F(FaultyPersistentTest,
       OverwriteReturnsWhenWrittenItsReadWaitsUntilDurable) {
  auto v = StartOnVolume();
  ASSERT_NE(v, nullptr);
  std::vector<std::byte>& data = data_;
  // The volume's own record is durable before its first overwrite, and no
  // writeback is left to journal a record of its own: the overwrite's is
  // the only one that a sync could fail.
  ASSERT_TRUE(Write(v, 0, std::span(data).first(kBlock)).ok());
  ASSERT_TRUE(engine_->Flush(std::chrono::seconds(30)).ok());
  WaitIdle();
  ASSERT_TRUE(engine_->Fsync(*v).ok());
  injector_->AddRule(
      {.ops = io::kFaultSync, .path_contains = "tierfs/meta", .error = EIO});
  std::vector<std::byte> fresh = Pattern(kBlock, 9);
  Status wrote = Write(v, 3 * kBlock, fresh);
  ASSERT_TRUE(wrote.ok()) << wrote.error().message();
  EXPECT_EQ(engine_->Snapshot().overwrites, 2u);
  EXPECT_TRUE(Read(v, 3 * kBlock, kBlock).empty());  // EIO, not `fresh`
  EXPECT_TRUE(engine_->Snapshot().read_only);
  engine_->CloseVolume(v, false);
  engine_.reset();
  injector_->ClearRules();
  if (!Start(Options()).empty()) return;  // refused, naming tierfs check
  v = Open("vm.img");
  std::vector<std::byte> back = Read(v, 0, 16 * kBlock);
  ASSERT_EQ(back.size(), data.size());
  std::vector<std::byte> block3(back.begin() + 3 * kBlock,
                                back.begin() + 4 * kBlock);
  EXPECT_TRUE(block3 == fresh || std::equal(block3.begin(), block3.end(),
                                            data.begin() + 3 * kBlock));
  std::copy(data.begin() + 3 * kBlock, data.begin() + 4 * kBlock,
            back.begin() + 3 * kBlock);
  EXPECT_EQ(back, data);
}

TEST_F(PersistentTest, CrashKeepsTheSectorsAPartialBlockHolds) {
  StartOk();
  std::vector<std::byte> data = Pattern(16 * kBlock, 1);
  MakeOrigin("vm.img", data);
  const std::vector<std::byte> origin = data;
  auto v = Open("vm.img");
  // Sector writes into blocks not cached: the cache takes them alone. Then
  // a write that covers more sectors of each, which the cache takes too.
  for (uint64_t b = 0; b < 8; ++b) {
    for (uint64_t at : {8192u, 20480u}) {
      std::vector<std::byte> fresh = Pattern(4096, 10 + b + at);
      ASSERT_TRUE(Write(v, b * kBlock + at, fresh).ok());
      std::copy(fresh.begin(), fresh.end(), data.begin() + b * kBlock + at);
    }
  }
  ASSERT_GT(engine_->Snapshot().overwrites, 0u);
  ASSERT_TRUE(engine_->Fsync(*v).ok());
  engine_->CloseVolume(v, false);
  v.reset();
  engine_.reset();  // no final checkpoint: what a kill -9 leaves

  StartOk();
  EXPECT_GT(report_.dirty, 0u);
  v = Open("vm.img");
  EXPECT_EQ(Read(v, 0, 16 * kBlock), data);
  ASSERT_TRUE(engine_->Flush(std::chrono::seconds(30)).ok());
  EXPECT_EQ(OriginBytes("vm.img", 0, 16 * kBlock), data);
}

TEST_F(FaultyPersistentTest, SectorsTakenByAWriteAreReadOnlyOnceDurable) {
  auto v = StartOnVolume();
  ASSERT_NE(v, nullptr);
  std::vector<std::byte>& data = data_;
  std::vector<std::byte> first = Pattern(4096, 7);
  ASSERT_TRUE(Write(v, 3 * kBlock + 8192, first).ok());
  ASSERT_EQ(engine_->Snapshot().partial_blocks, 1u);
  std::copy(first.begin(), first.end(), data.begin() + 3 * kBlock + 8192);
  // The block stays dirty, so the write below needs no clean->dirty record
  // made durable, and no writeback journals a record whose failing sync
  // would turn the cache read-only before that write. (A writeback may have
  // cleaned it already: the second write of `first` dirties it again.)
  StopMigrations();
  ASSERT_TRUE(Write(v, 3 * kBlock + 8192, first).ok());
  ASSERT_EQ(engine_->Snapshot().dirty_blocks, 1u);
  ASSERT_TRUE(engine_->Fsync(*v).ok());
  // The next sector's record is written, but no sync can make it durable:
  // the write returns, a read of it must not (it could revert).
  injector_->AddRule(
      {.ops = io::kFaultSync, .path_contains = "tierfs/meta", .error = EIO});
  std::vector<std::byte> second = Pattern(4096, 8);
  ASSERT_TRUE(Write(v, 3 * kBlock + 12288, second).ok());
  EXPECT_TRUE(Read(v, 3 * kBlock + 12288, 4096).empty());  // EIO
  EXPECT_TRUE(engine_->Snapshot().read_only);
  engine_->CloseVolume(v, false);
  engine_.reset();
  injector_->ClearRules();
  if (!Start(Options()).empty()) return;  // refused, naming tierfs check
  v = Open("vm.img");
  std::vector<std::byte> back = Read(v, 0, 16 * kBlock);
  ASSERT_EQ(back.size(), data.size());
  const auto at = back.begin() + 3 * kBlock + 12288;
  EXPECT_TRUE(std::equal(at, at + 4096, second.begin()) ||
              std::equal(at, at + 4096, data.begin() + 3 * kBlock + 12288));
  std::copy(data.begin() + 3 * kBlock + 12288,
            data.begin() + 3 * kBlock + 12288 + 4096, at);
  EXPECT_EQ(back, data);
}

// A read that fills a clean partial block, racing a write that dirties it
// and takes a missing sector (and returns) before the fill locks: the fill
// returns that sector from the cache, so the read must wait, as any read
// of it, for the write's record to be durable. Here it never can be.
TEST_F(FaultyPersistentTest, FillWaitsForTheRecordOfAWriteThatDirtiedTheBlock) {
  auto v = StartOnVolume();
  ASSERT_NE(v, nullptr);
  ASSERT_TRUE(Write(v, 3 * kBlock + 8192, Pattern(4096, 7)).ok());
  ASSERT_EQ(engine_->Snapshot().partial_blocks, 1u);
  // Written back: clean, still partial; nothing left to commit.
  ASSERT_TRUE(engine_->Flush(std::chrono::seconds(30)).ok());
  ASSERT_TRUE(engine_->Fsync(*v).ok());
  ASSERT_EQ(engine_->Snapshot().dirty_blocks, 0u);
  engine_->AllowMigrations(false);
  int writes = 0;
  sync_point::Set("engine:partial-read-looked", [&](void*) {
    if (writes++ != 0) return;
    // The write's clean->dirty record is made durable (the one metadata
    // sync let through); the record of the sector it takes never is.
    injector_->AddRule({.ops = io::kFaultSync,
                        .path_contains = "tierfs/meta",
                        .error = EIO,
                        .skip = 1});
    EXPECT_TRUE(Write(v, 3 * kBlock + 12288, Pattern(4096, 8)).ok());
  });
  std::vector<std::byte> back = Read(v, 3 * kBlock, kBlock);
  sync_point::ClearAll();
  ASSERT_EQ(writes, 1);
  EXPECT_TRUE(back.empty());  // EIO, not bytes a power loss could revert
  EXPECT_TRUE(engine_->Snapshot().read_only);
  engine_->CloseVolume(v, false);
  engine_.reset();
}

INSTANTIATE_TEST_SUITE_P(Faults, MetadataFaultTest,
                         ::testing::Values(MetaFault{"eio", EIO, false},
                                           MetaFault{"enospc", ENOSPC, false},
                                           MetaFault{"torn", EIO, true}),
                         [](const ::testing::TestParamInfo<MetaFault>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace tierfs::cache
