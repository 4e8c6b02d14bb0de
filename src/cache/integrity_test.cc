// Regression tests for the integrity issue's causes: each forces one
// interleaving of foreground IO, range operations, mode switches and
// migrations (with sync points and injected faults) that used to return
// stale data or lose acknowledged data, and checks the outcome a user
// would see. The numbers are the causes' numbers in the issue.

#include <dirent.h>

#include <atomic>

#include "src/cache/persistent_fixture.h"
#include "src/io/fault_injection.h"
#include "src/util/sync_point.h"

namespace tierfs::cache {
namespace {

class IntegrityTest : public PersistentTest {
 protected:
  IntegrityTest() : env_holder_(io::Env::Default(), injector_) {
    env_ = &env_holder_;
  }
  ~IntegrityTest() override { sync_point::ClearAll(); }

  // vm.img of 8 blocks (`*data`, updated to what it holds) with blocks 4-6
  // dirty in the cache, and migrations stopped. StartOk() first.
  std::shared_ptr<Volume> EightBlocksFourToSixDirty(
      std::vector<std::byte>* data) {
    MakeOrigin("vm.img", *data);
    auto v = Open("vm.img");
    for (uint64_t b : {4, 5, 6}) {
      EXPECT_TRUE(Write(v, b * kBlock, Pattern(kBlock, 7)).ok());
    }
    StopMigrations();
    for (uint64_t b : {4, 5, 6}) {  // dirty for sure (see WithDirtyBlock)
      const std::vector<std::byte> fresh = Pattern(kBlock, 20 + b);
      EXPECT_TRUE(Write(v, b * kBlock, fresh).ok());
      std::copy(fresh.begin(), fresh.end(), data->begin() + b * kBlock);
    }
    return v;
  }

  // A volume of `blocks` blocks of pattern `seed` whose block `dirty` is
  // rewritten whole (an overwrite: dirty in the cache, old in the origin).
  std::shared_ptr<Volume> WithDirtyBlock(const std::string& name,
                                         uint64_t blocks, uint64_t dirty,
                                         std::vector<std::byte>* data) {
    *data = Pattern(blocks * kBlock, 1);
    MakeOrigin(name, *data);
    auto v = Open(name);
    const uint64_t before = engine_->Snapshot().overwrites;
    std::vector<std::byte> fresh = Pattern(kBlock, 7);
    EXPECT_TRUE(Write(v, dirty * kBlock, fresh).ok());
    std::copy(fresh.begin(), fresh.end(), data->begin() + dirty * kBlock);
    // Cached dirty by the overwrite path (the dirty count could already be
    // back down: a writeback may run at once when the engine looks idle).
    EXPECT_EQ(engine_->Snapshot().overwrites, before + 1);
    return v;
  }

  // WithDirtyBlock, made durable (fsync) with migrations stopped, so the
  // block stays dirty for the test.
  std::shared_ptr<Volume> WithFsyncedDirtyBlock(const std::string& name,
                                                uint64_t blocks, uint64_t dirty,
                                                std::vector<std::byte>* data) {
    auto v = WithDirtyBlock(name, blocks, dirty, data);
    StopMigrations();
    EXPECT_TRUE(engine_->Fsync(*v).ok());
    return v;
  }

  // kill -9 now, recovery, and `name` opened again.
  std::shared_ptr<Volume> CrashAndReopen(std::shared_ptr<Volume> v,
                                         const std::string& name) {
    Freeze();
    v.reset();
    Restart();
    return Open(name);
  }

  // Simulates kill -9 at this instant: nothing written from now on reaches
  // the disk (every write and sync of every file fails).
  void Freeze() {
    injector_->AddRule({.ops = io::kFaultWrite | io::kFaultSync |
                               io::kFaultTruncate | io::kFaultPunchHole |
                               io::kFaultAllocate,
                        .error = EIO});
  }
  void Restart() {
    engine_.reset();
    injector_->ClearRules();
    StartOk();
  }

  std::shared_ptr<io::FaultInjector> injector_ =
      std::make_shared<io::FaultInjector>();
  io::FaultInjectingEnv env_holder_;
};

std::vector<std::byte> Zeros(size_t n) { return std::vector<std::byte>(n); }

// A write to a block whose writeback is writing the origin goes on at once
// (it does not wait for the slow origin), and the block stays dirty: the
// writeback's copy is older than the write, so it is not recorded clean.
TEST_F(IntegrityTest, WriteDuringWritebackGoesOnAndKeepsTheBlockDirty) {
  StartOk();
  std::vector<std::byte> data;
  auto v = WithDirtyBlock("vm.img", 8, 3, &data);
  const std::vector<std::byte> fresh = Pattern(4096, 9);
  std::copy(fresh.begin(), fresh.end(), data.begin() + 3 * kBlock + 4096);
  std::atomic<int> writebacks{0};
  std::atomic<bool> went_on{false};
  sync_point::Set("engine:writeback-copied", [&](void*) {
    if (writebacks++ != 0) return;
    bool done = false;
    engine_->Write(v, 3 * kBlock + 4096, fresh, [&](Status st) {
      EXPECT_TRUE(st.ok());
      done = true;
    });
    went_on = done;  // completed in this call: it did not park
  });
  EXPECT_TRUE(engine_->Flush(std::chrono::seconds(10)).ok());
  WaitIdle();
  ASSERT_GE(writebacks.load(), 2) << "the stale copy was recorded clean";
  EXPECT_TRUE(went_on.load());
  EXPECT_GE(engine_->Snapshot().migration_aborts, 1u);
  EXPECT_EQ(Read(v, 3 * kBlock, kBlock),
            std::vector<std::byte>(data.begin() + 3 * kBlock,
                                   data.begin() + 4 * kBlock));
  EXPECT_EQ(OriginBytes("vm.img", 3 * kBlock, kBlock),
            std::vector<std::byte>(data.begin() + 3 * kBlock,
                                   data.begin() + 4 * kBlock));
}

// A writeback waiting for a migration thread does not hold its block yet: a
// write to it goes on at once, not parked until the queue ahead has run
// (behind an HDD that was seconds; 8 writers on 4K blocks wrote at 0.01x the
// fast dir). One migration thread, held inside the first writeback; the
// write goes to the other dirty block, whose writeback is queued.
TEST_F(IntegrityTest, WriteToBlockOfQueuedWritebackGoesOn) {
  PersistentOptions o = Options();
  o.engine.migration_threads = 1;
  ASSERT_EQ(Start(o), "");
  std::vector<std::byte> data = Pattern(8 * kBlock, 1);
  MakeOrigin("vm.img", data);
  auto v = Open("vm.img");
  const uint64_t blocks[] = {2, 5};
  for (uint64_t b : blocks) {
    ASSERT_TRUE(Write(v, b * kBlock, Pattern(kBlock, 7)).ok());
  }
  // Both dirty for sure: an idle writeback may have cleaned one already,
  // and a write hit dirties it again while no migration runs.
  StopMigrations();
  for (uint64_t b : blocks) {
    const std::vector<std::byte> fresh = Pattern(kBlock, 10 + b);
    ASSERT_TRUE(Write(v, b * kBlock, fresh).ok());
    std::copy(fresh.begin(), fresh.end(), data.begin() + b * kBlock);
  }
  ASSERT_EQ(engine_->Snapshot().dirty_blocks, 2u);
  const std::vector<std::byte> fresh = Pattern(4096, 9);
  std::atomic<int> writebacks{0};
  std::atomic<bool> went_on{false};
  sync_point::Set("engine:writeback-copied", [&](void* arg) {
    if (writebacks++ != 0) return;
    const uint64_t first = static_cast<policy::Work*>(arg)->oblock.index;
    const uint64_t other = first == blocks[0] ? blocks[1] : blocks[0];
    std::copy(fresh.begin(), fresh.end(), data.begin() + other * kBlock);
    bool done = false;
    engine_->Write(v, other * kBlock, fresh, [&](Status st) {
      EXPECT_TRUE(st.ok());
      done = true;
    });
    went_on = done;  // completed in this call: it did not park
  });
  engine_->AllowMigrations(true);
  EXPECT_TRUE(engine_->Flush(std::chrono::seconds(10)).ok());
  WaitIdle();
  ASSERT_GE(writebacks.load(), 2);
  EXPECT_TRUE(went_on.load());
  EXPECT_EQ(Read(v, 0, 8 * kBlock), data);
  EXPECT_EQ(OriginBytes("vm.img", 0, 8 * kBlock), data);
}

// 1. A writeback issued before a discard must not copy the freed (possibly
// reused) cblock over the punched origin afterwards.
TEST_F(IntegrityTest, IssuedWritebackDoesNotResurrectDiscardedBlock) {
  StartOk();
  std::vector<std::byte> data;
  auto v = WithDirtyBlock("vm.img", 8, 3, &data);
  // Dirty for sure when the hook is in place: an idle writeback may have
  // cleaned it already, and a write hit dirties it again while no
  // migration runs.
  StopMigrations();
  ASSERT_TRUE(Write(v, 3 * kBlock, Pattern(kBlock, 7)).ok());
  ASSERT_EQ(engine_->Snapshot().dirty_blocks, 1u);
  std::atomic<int> discards{0};
  sync_point::Set("engine:migration-issued", [&](void* arg) {
    auto* work = static_cast<policy::Work*>(arg);
    if (work->op == policy::WorkOp::kWriteback && discards++ == 0) {
      EXPECT_TRUE(engine_->Discard(v, 3 * kBlock, kBlock).ok());
    }
  });
  engine_->AllowMigrations(true);
  EXPECT_TRUE(engine_->Flush(std::chrono::seconds(5)).ok());
  WaitIdle();
  ASSERT_EQ(discards.load(), 1) << "no writeback was issued";
  EXPECT_EQ(Read(v, 3 * kBlock, kBlock), Zeros(kBlock));
  EXPECT_EQ(OriginBytes("vm.img", 3 * kBlock, kBlock), Zeros(kBlock));
}

// 2. A promotion that read the origin before a truncate must not install
// the old bytes once the file is extended again.
TEST_F(IntegrityTest, PromotionRacingTruncateDoesNotReviveOldBytes) {
  StartOk();
  std::vector<std::byte> data = Pattern(8 * kBlock, 1);
  MakeOrigin("vm.img", data);
  auto v = Open("vm.img");
  std::atomic<int> truncates{0};
  sync_point::Set("engine:promotion-copied", [&](void* arg) {
    auto* work = static_cast<policy::Work*>(arg);
    if (work->oblock.index == 5 && truncates++ == 0) {
      EXPECT_TRUE(engine_->Truncate(*v, 5 * kBlock).ok());
      EXPECT_TRUE(engine_->Truncate(*v, 8 * kBlock).ok());
    }
  });
  Warm(v, 8);
  WaitIdle();
  ASSERT_EQ(truncates.load(), 1) << "block 5 was never promoted";
  EXPECT_EQ(Read(v, 5 * kBlock, kBlock), Zeros(kBlock));
  EXPECT_EQ(Read(v, 0, kBlock),
            std::vector<std::byte>(data.begin(), data.begin() + kBlock));
}

// 2b. The same for an overwrite (a whole-block write miss written straight
// into a new cblock) racing a truncate.
TEST_F(IntegrityTest, OverwriteRacingTruncateKeepsTheTruncate) {
  StartOk();
  std::vector<std::byte> data = Pattern(8 * kBlock, 1);
  MakeOrigin("vm.img", data);
  auto v = Open("vm.img");
  std::atomic<int> truncates{0};
  std::thread truncater;
  sync_point::Set("engine:overwrite-written", [&](void*) {
    if (truncates++ == 0) {
      EXPECT_TRUE(engine_->Truncate(*v, 2 * kBlock).ok());
    }
  });
  std::vector<std::byte> fresh = Pattern(kBlock, 9);
  ASSERT_TRUE(Write(v, 4 * kBlock, fresh).ok());
  ASSERT_EQ(truncates.load(), 1);
  // The write came after the truncate: the file is 5 blocks, block 4 holds
  // the write and blocks 2-3 are zeros.
  struct stat st;
  ASSERT_EQ(::stat(SlowPath("vm.img").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 5 * kBlock);
  EXPECT_EQ(Read(v, 2 * kBlock, 2 * kBlock), Zeros(2 * kBlock));
  EXPECT_EQ(Read(v, 4 * kBlock, kBlock), fresh);
}

// 3. A switch to passthrough while an overwrite is in flight: the write's
// data stays visible (the switch waits for it, then refuses: dirty).
TEST_F(IntegrityTest, PassthroughSwitchWaitsForWritesInFlight) {
  StartOk();
  std::vector<std::byte> data = Pattern(8 * kBlock, 1);
  MakeOrigin("vm.img", data);
  auto v = Open("vm.img");
  std::thread switcher;
  std::atomic<int> switched{-1};
  sync_point::Set("engine:overwrite-written", [&](void*) {
    if (switcher.joinable()) return;
    switcher = std::thread([&] {
      Status st = engine_->SetMode(Mode::kPassthrough);
      switched = st.ok() ? 0 : st.error().value();
    });
    // Give a switch that does not wait for this write time to happen.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  });
  std::vector<std::byte> fresh = Pattern(kBlock, 9);
  ASSERT_TRUE(Write(v, 2 * kBlock, fresh).ok());
  switcher.join();
  // Refused while the block is dirty, or done once writeback cleaned it;
  // either way after the write, whose data stays visible.
  EXPECT_TRUE(switched.load() == EBUSY || switched.load() == 0)
      << switched.load();
  EXPECT_EQ(Read(v, 2 * kBlock, kBlock), fresh);
  ASSERT_TRUE(engine_->Flush(std::chrono::seconds(10)).ok());
  EXPECT_EQ(OriginBytes("vm.img", 2 * kBlock, kBlock), fresh);
  EXPECT_TRUE(engine_->SetMode(Mode::kPassthrough).ok());
  EXPECT_EQ(Read(v, 2 * kBlock, kBlock), fresh);
}

// A write that passed Write()'s read-only check just before a switch to
// passthrough whose unmaps could not be made durable (the switch turns the
// cache read-only and opens the gate again) must not reach the origin
// through the passthrough fast path: the metadata on disk still maps the
// block clean, so after a crash that older cached copy would be served
// again, though the new bytes were read back. The block path refuses such
// a write under its cell (WriteBlock); the fast path must too.
TEST_F(IntegrityTest, PassthroughWriteAfterFailedSwitchIsRefused) {
  StartOk();
  std::vector<std::byte> data = Pattern(8 * kBlock, 1);
  MakeOrigin("vm.img", data);
  auto v = Open("vm.img");
  Warm(v, 8);
  WaitIdle();
  StopMigrations();
  ASSERT_GT(engine_->Snapshot().used_blocks, 2u);
  ASSERT_EQ(engine_->Snapshot().dirty_blocks, 0u);
  std::atomic<int> switched{-1};
  bool once = false;
  sync_point::Set("engine:write-started", [&](void*) {
    if (once) return;
    once = true;
    // The journal fails from here: the switch's unmaps never get durable.
    injector_->AddRule({.ops = io::kFaultWrite | io::kFaultSync,
                        .path_contains = "tierfs/meta",
                        .error = EIO});
    std::thread switcher([&] {
      Status st = engine_->SetMode(Mode::kPassthrough);
      switched = st.ok() ? 0 : st.error().value();
    });
    switcher.join();
  });
  const std::vector<std::byte> old(data.begin() + 2 * kBlock,
                                   data.begin() + 3 * kBlock);
  std::vector<std::byte> fresh = Pattern(kBlock, 9);
  Status st = Write(v, 2 * kBlock, fresh);
  sync_point::ClearAll();
  ASSERT_TRUE(once);
  ASSERT_NE(switched.load(), 0);  // the unmaps could not be made durable
  ASSERT_TRUE(engine_->Snapshot().read_only);
  EXPECT_FALSE(st.ok()) << "written through to the origin";
  if (!st.ok()) {
    EXPECT_EQ(st.error().value(), EROFS);
  }
  EXPECT_TRUE(OriginBytes("vm.img", 2 * kBlock, kBlock) == old);
  // What a reader sees now is what it sees after a crash.
  const std::vector<std::byte> seen = Read(v, 2 * kBlock, kBlock);
  v = CrashAndReopen(std::move(v), "vm.img");
  EXPECT_TRUE(Read(v, 2 * kBlock, kBlock) == seen) << "reverted after a crash";
}

// 4. Writethrough mode, a block still dirty from writeback mode, and a
// failing cache write: the block's other dirty bytes are not lost.
TEST_F(IntegrityTest, WritethroughCacheErrorKeepsOtherDirtyBytes) {
  StartOk();
  std::vector<std::byte> data;
  auto v = WithDirtyBlock("vm.img", 8, 2, &data);
  StopMigrations();
  ASSERT_TRUE(engine_->SetMode(Mode::kWritethrough).ok());
  injector_->AddRule({.ops = io::kFaultWrite,
                      .path_contains = "cache.data",
                      .error = EIO,
                      .count = 1});
  std::vector<std::byte> small = Pattern(4096, 3);
  Status st = Write(v, 2 * kBlock, small);
  // Either the write failed, or it landed; the rest of the block is intact.
  if (st.ok()) std::copy(small.begin(), small.end(), data.begin() + 2 * kBlock);
  EXPECT_EQ(Read(v, 2 * kBlock, kBlock),
            std::vector<std::byte>(data.begin() + 2 * kBlock,
                                   data.begin() + 3 * kBlock));
}

// 5. Writethrough write hit on a clean block, killed between the origin
// write and the cache write: after recovery, no clean mapping differs from
// its origin (the cached copy is never served older than the origin).
TEST_F(IntegrityTest, WritethroughCrashNeverLeavesStaleCleanCopy) {
  StartOk();
  std::vector<std::byte> data = Pattern(8 * kBlock, 1);
  MakeOrigin("vm.img", data);
  auto v = Open("vm.img");
  Warm(v, 8);
  WaitIdle();
  ASSERT_GT(engine_->Snapshot().used_blocks, 2u);
  engine_->AllowMigrations(false);
  ASSERT_TRUE(engine_->SetMode(Mode::kWritethrough).ok());
  sync_point::Set("engine:writethrough-origin-written",
                  [&](void*) { Freeze(); });
  std::vector<std::byte> small = Pattern(4096, 3);
  // Fails: the "crash" came in the middle.
  EXPECT_FALSE(Write(v, 2 * kBlock, small).ok());
  sync_point::ClearAll();
  v.reset();
  Restart();
  v = Open("vm.img");
  // What the cache serves now is what the file holds: the same after every
  // dirty block is written back, and the same in the origin.
  const std::vector<std::byte> served = Read(v, 0, 8 * kBlock);
  ASSERT_TRUE(engine_->Flush(std::chrono::seconds(10)).ok());
  EXPECT_EQ(Read(v, 0, 8 * kBlock), served);
  EXPECT_EQ(OriginBytes("vm.img", 0, 8 * kBlock), served);
}

// 6. A file unlinked through the mount with fsynced dirty blocks, then
// kill -9: the next mount starts without flags and the other file keeps
// its fsynced data.
TEST_F(IntegrityTest, UnlinkThenCrashMountsAndKeepsOtherFiles) {
  StartOk();
  std::vector<std::byte> keep_data, gone_data;
  auto keep = WithDirtyBlock("keep.img", 4, 1, &keep_data);
  auto gone = WithDirtyBlock("gone.img", 4, 2, &gone_data);
  StopMigrations();
  ASSERT_TRUE(engine_->Fsync(*keep).ok());
  ASSERT_TRUE(engine_->Fsync(*gone).ok());
  struct stat st;
  ASSERT_EQ(::stat(SlowPath("gone.img").c_str(), &st), 0);
  engine_->CloseVolume(gone, false);
  gone.reset();
  ASSERT_EQ(::unlink(SlowPath("gone.img").c_str()), 0);
  ASSERT_TRUE(engine_->ForgetVolume(st.st_dev, st.st_ino).ok());
  Freeze();
  keep.reset();
  Restart();
  keep = Open("keep.img");
  EXPECT_EQ(Read(keep, 0, 4 * kBlock), keep_data);
}

// 6b. An unlinked file still open keeps reading what was written to it.
TEST_F(IntegrityTest, UnlinkedOpenFileKeepsItsDirtyData) {
  StartOk();
  std::vector<std::byte> data;
  auto v = WithDirtyBlock("tmp.img", 4, 1, &data);
  struct stat st;
  ASSERT_EQ(::stat(SlowPath("tmp.img").c_str(), &st), 0);
  ASSERT_EQ(::unlink(SlowPath("tmp.img").c_str()), 0);
  ASSERT_TRUE(engine_->ForgetVolume(st.st_dev, st.st_ino).ok());
  EXPECT_EQ(engine_->Snapshot().dirty_blocks, 0u);
  EXPECT_EQ(Read(v, 0, 4 * kBlock), data);
  std::vector<std::byte> more = Pattern(kBlock, 4);
  ASSERT_TRUE(Write(v, 0, more).ok());
  EXPECT_EQ(Read(v, 0, kBlock), more);
  engine_->CloseVolume(v, true);
}

// 7. A punch (or truncate) whose origin change fails must not have dropped
// the dirty copy first: the acknowledged write is still there afterwards,
// also after a crash.
TEST_F(IntegrityTest, FailedPunchKeepsDirtyBlockAcrossCrash) {
  StartOk();
  std::vector<std::byte> data;
  auto v = WithFsyncedDirtyBlock("vm.img", 8, 3, &data);
  injector_->AddRule({.ops = io::kFaultPunchHole, .error = EIO});
  EXPECT_FALSE(engine_->Discard(v, 3 * kBlock, kBlock).ok());
  v = CrashAndReopen(std::move(v), "vm.img");
  EXPECT_EQ(Read(v, 3 * kBlock, kBlock),
            std::vector<std::byte>(data.begin() + 3 * kBlock,
                                   data.begin() + 4 * kBlock));
}

TEST_F(IntegrityTest, FailedTruncateKeepsDirtyBlockAcrossCrash) {
  StartOk();
  std::vector<std::byte> data;
  auto v = WithFsyncedDirtyBlock("vm.img", 8, 6, &data);
  injector_->AddRule({.ops = io::kFaultTruncate, .error = EIO});
  EXPECT_FALSE(engine_->Truncate(*v, 4 * kBlock).ok());
  v = CrashAndReopen(std::move(v), "vm.img");
  EXPECT_EQ(Read(v, 0, 8 * kBlock), data);
}

// 7b. Invalidate holds each block until its unmap is durable: a write that
// lands on the block afterwards (a miss, to the origin) is never followed,
// after a restart, by the old clean copy coming back. Here the unmaps never
// become durable (the metadata write fails, slowly): a write acknowledged
// meanwhile must still read back.
TEST_F(IntegrityTest, InvalidateKeepsBlocksUntilTheirUnmapIsDurable) {
  StartOk();
  std::vector<std::byte> data = Pattern(8 * kBlock, 1);
  MakeOrigin("vm.img", data);
  auto v = Open("vm.img");
  Warm(v, 8);
  WaitIdle();
  engine_->AllowMigrations(false);
  ASSERT_EQ(engine_->Snapshot().used_blocks, 8u);
  injector_->AddRule({.ops = io::kFaultWrite,
                      .path_contains = "tierfs/meta",
                      .error = EIO,
                      .latency = std::chrono::milliseconds(500)});
  // Its outcome does not matter here, only what the write sees.
  std::thread invalidate([&] { (void)engine_->InvalidateClean("vm.img"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  std::vector<std::byte> fresh = Pattern(4096, 8);
  const bool acknowledged = Write(v, 2 * kBlock, fresh).ok();
  invalidate.join();
  v.reset();
  Restart();
  v = Open("vm.img");
  if (acknowledged) {
    EXPECT_EQ(Read(v, 2 * kBlock, 4096), fresh);
  }
  // Whatever was acknowledged, the cache and the origin agree.
  EXPECT_EQ(Read(v, 0, 8 * kBlock), OriginBytes("vm.img", 0, 8 * kBlock));
}

// 8. fsync after a truncate or punch makes it durable: the origin is
// fdatasynced even when no data was written since the last fsync.
TEST_F(IntegrityTest, FsyncCoversTruncateAndPunch) {
  StartOk();
  std::vector<std::byte> data = Pattern(8 * kBlock, 1);
  MakeOrigin("vm.img", data);
  auto v = Open("vm.img");
  ASSERT_TRUE(engine_->Fsync(*v).ok());
  auto syncs_of_origin = [&] {
    // Counted by a rule that fails nothing but the first origin sync after
    // it is installed (count 1): did Fsync sync the origin at all?
    injector_->ClearRules();
    injector_->AddRule({.ops = io::kFaultSync,
                        .path_contains = "vm.img",
                        .error = EIO,
                        .count = 1});
    Status st = engine_->Fsync(*v);
    injector_->ClearRules();
    return !st.ok();
  };
  ASSERT_TRUE(engine_->Truncate(*v, 6 * kBlock).ok());
  EXPECT_TRUE(syncs_of_origin()) << "fsync after truncate skipped the origin";
  ASSERT_TRUE(engine_->Discard(v, kBlock, kBlock).ok());
  EXPECT_TRUE(syncs_of_origin()) << "fsync after punch skipped the origin";
}

// 8b. A truncate whose origin fdatasync fails has shortened the origin, but
// its dirty copies past the new end must not be unmapped durably before the
// truncate is (a crash would bring back the origin's older bytes): they
// stay mapped until a later origin sync succeeds. Until then nothing may
// reach them: a grow or a write past the end reads zeros there, a write to
// the new tail block reaches the origin, and flush does not wait for
// copies that can never be written back.
TEST_F(IntegrityTest, TruncateWhoseOriginSyncFailsRevivesNothing) {
  StartOk();
  std::vector<std::byte> data = Pattern(8 * kBlock, 1);
  auto v = EightBlocksFourToSixDirty(&data);
  ASSERT_EQ(engine_->Snapshot().dirty_blocks, 3u);
  const uint64_t end = 4 * kBlock + 1000;
  injector_->AddRule(
      {.ops = io::kFaultSync, .path_contains = "vm.img", .error = EIO});
  EXPECT_FALSE(engine_->Truncate(*v, end).ok());
  injector_->ClearRules();
  // Either size is allowed after a failed truncate; this one reached the
  // origin.
  ASSERT_EQ(v->size(), end);
  data.resize(end);
  // A write to the new tail block, below the end.
  const std::vector<std::byte> tail = Pattern(500, 30);
  ASSERT_TRUE(Write(v, 4 * kBlock + 200, tail).ok());
  std::copy(tail.begin(), tail.end(), data.begin() + 4 * kBlock + 200);
  // A write past the end: blocks 5 and 6 must read as zeros below it.
  const std::vector<std::byte> far = Pattern(4096, 31);
  ASSERT_TRUE(Write(v, 7 * kBlock, far).ok());
  data.resize(7 * kBlock);
  data.insert(data.end(), far.begin(), far.end());
  EXPECT_EQ(Read(v, 0, data.size()), data);
  engine_->AllowMigrations(true);
  EXPECT_TRUE(engine_->Flush(std::chrono::seconds(10)).ok());
  EXPECT_EQ(Read(v, 0, data.size()), data);
  v = CrashAndReopen(std::move(v), "vm.img");
  EXPECT_EQ(v->size(), data.size());
  EXPECT_EQ(Read(v, 0, data.size()), data);
}

// 8c. Until such a truncate is settled, background writeback retries its
// copies past the end once per round, not in a loop (it spun: ~600,000
// aborted writebacks a second on an idle mount), and writes back the other
// dirty blocks meanwhile, however many such copies there are.
TEST_F(IntegrityTest, CopiesPastFailedTruncateDoNotSpinWriteback) {
  StartOk();
  std::vector<std::byte> data = Pattern(8 * kBlock, 1);
  auto v = EightBlocksFourToSixDirty(&data);
  // Dirty blocks the policy may write back (below the end).
  for (uint64_t b : {0, 1}) {
    const std::vector<std::byte> fresh = Pattern(kBlock, 40 + b);
    ASSERT_TRUE(Write(v, b * kBlock, fresh).ok());
    std::copy(fresh.begin(), fresh.end(), data.begin() + b * kBlock);
  }
  const uint64_t end = 4 * kBlock + 1000;
  injector_->AddRule(
      {.ops = io::kFaultSync, .path_contains = "vm.img", .error = EIO});
  EXPECT_FALSE(engine_->Truncate(*v, end).ok());
  injector_->ClearRules();
  data.resize(end);
  const uint64_t aborts = engine_->Snapshot().migration_aborts;
  // Fewer than the stuck copies: the other blocks still get their turn.
  engine_->SetMigrationThreshold(kBlock);
  engine_->AllowMigrations(true);
  // The fixture ticks every 10 ms: about 50 rounds of 3 retries.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const EngineSnapshot s = engine_->Snapshot();
  EXPECT_LT(s.migration_aborts - aborts, 3000u);
  // The blocks below the end were written back meanwhile.
  EXPECT_EQ(s.dirty_blocks, 3u);
  EXPECT_TRUE(engine_->Flush(std::chrono::seconds(10)).ok());
  EXPECT_EQ(engine_->Snapshot().dirty_blocks, 0u);
  EXPECT_EQ(Read(v, 0, data.size()), data);
}

int OpenFds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n;
}

// 9. Files read once and closed do not keep an fd each.
TEST_F(IntegrityTest, ClosedVolumesDoNotHoldFds) {
  StartOk();
  const int before = OpenFds();
  for (int i = 0; i < 300; ++i) {
    const std::string name = "f" + std::to_string(i);
    MakeOrigin(name, Pattern(2 * kBlock, i));
    auto v = Open(name);
    Read(v, 0, 2 * kBlock);
    engine_->CloseVolume(v, false);
  }
  WaitIdle();
  EXPECT_LT(OpenFds() - before, 50);
  EXPECT_LT(engine_->Volumes().size(), 50u);
}

// 10. A punch reaching past the end of the file keeps the size.
TEST_F(IntegrityTest, PunchPastEndKeepsTheSize) {
  StartOk();
  MakeOrigin("small", Pattern(100 * 1024, 1));
  auto v = Open("small");
  ASSERT_TRUE(engine_->Discard(v, 90 * 1024, 100 * 1024).ok());
  struct stat st;
  ASSERT_EQ(::stat(SlowPath("small").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 100 * 1024);
  EXPECT_EQ(Read(v, 90 * 1024, 10 * 1024), Zeros(10 * 1024));
}

// 11. A volume first opened read-only takes a writable origin when one is
// opened later: writes and writeback work.
TEST_F(IntegrityTest, ReadOnlyFirstOpenThenWritable) {
  StartOk();
  std::vector<std::byte> data = Pattern(4 * kBlock, 1);
  MakeOrigin("vm.img", data);
  struct stat st;
  ASSERT_EQ(::stat(SlowPath("vm.img").c_str(), &st), 0);
  io::OpenOptions ro;
  ro.write = false;
  auto rof = env_->OpenAt(slow_fd_, "vm.img", ro);
  ASSERT_TRUE(rof.ok());
  auto first = engine_->OpenVolume(st.st_dev, st.st_ino,
                                   std::shared_ptr<io::File>(std::move(*rof)),
                                   false, "vm.img");
  auto second = Open("vm.img");
  std::vector<std::byte> small = Pattern(4096, 3);
  ASSERT_TRUE(Write(second, 4096, small).ok());
  std::vector<std::byte> whole = Pattern(kBlock, 4);
  ASSERT_TRUE(Write(second, 2 * kBlock, whole).ok());
  ASSERT_TRUE(engine_->Flush(std::chrono::seconds(10)).ok());
  std::copy(small.begin(), small.end(), data.begin() + 4096);
  std::copy(whole.begin(), whole.end(), data.begin() + 2 * kBlock);
  EXPECT_EQ(OriginBytes("vm.img", 0, 4 * kBlock), data);
  engine_->CloseVolume(first, false);
  engine_->CloseVolume(second, false);
}

}  // namespace
}  // namespace tierfs::cache
