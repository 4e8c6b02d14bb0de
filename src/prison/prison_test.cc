// Tests of the prison (src/prison/prison.h).
//
// Sanitizer runs (each from the repository root, in its own build dir):
//   meson setup build-prison-tsan -Db_sanitize=thread
//   ninja -C build-prison-tsan src/prison/prison_test
//   ./build-prison-tsan/src/prison/prison_test
//
//   meson setup build-prison-asan -Db_sanitize=address,undefined
//   ninja -C build-prison-asan src/prison/prison_test
//   UBSAN_OPTIONS=halt_on_error=1 ./build-prison-asan/src/prison/prison_test
//

#include "src/prison/prison.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "src/prison/prison_test_util.h"

namespace tierfs::prison {
namespace {

TEST(PrisonTest, SharedHoldersCoexist) {
  Prison prison;
  int retries = 0;
  Continuation retry = Count(&retries);
  Cell* w1 = prison.Get(Block(1, 7), kWrite, retry);
  Cell* w2 = prison.Get(Block(1, 7), kWrite, retry);
  Cell* r1 = prison.Get(Block(1, 7), kRead, retry);
  ASSERT_NE(w1, nullptr);
  ASSERT_NE(w2, nullptr);
  ASSERT_NE(r1, nullptr);
  EXPECT_TRUE(retry) << "a granted Get() must leave the continuation alone";
  EXPECT_EQ(prison.CellCount(), 1u);
  prison.Put(w1);
  prison.Put(r1);
  EXPECT_EQ(prison.CellCount(), 1u);
  prison.Put(w2);
  EXPECT_EQ(prison.CellCount(), 0u);
  EXPECT_EQ(retries, 0);
}

TEST(PrisonTest, LockAtLevel0ParksWritesButAdmitsReads) {
  Prison prison;
  LockResult lock = prison.Lock(Block(1, 3), 0);
  ASSERT_EQ(lock.status, LockStatus::kLocked);
  ASSERT_NE(lock.cell, nullptr);

  int writes_resumed = 0;
  Continuation write_retry = Count(&writes_resumed);
  EXPECT_EQ(prison.Get(Block(1, 3), kWrite, write_retry), nullptr);
  EXPECT_FALSE(write_retry) << "a parked continuation moves into the cell";

  int reads_resumed = 0;
  Continuation read_retry = Count(&reads_resumed);
  Cell* read = prison.Get(Block(1, 3), kRead, read_retry);
  ASSERT_NE(read, nullptr);
  EXPECT_TRUE(read_retry);
  prison.Put(read);

  EXPECT_EQ(writes_resumed, 0);
  std::vector<Continuation> parked = prison.Unlock(lock.cell);
  ASSERT_EQ(parked.size(), 1u);
  RunAll(std::move(parked));
  EXPECT_EQ(writes_resumed, 1);
  EXPECT_EQ(reads_resumed, 0);
  EXPECT_EQ(prison.CellCount(), 0u);
}

TEST(PrisonTest, PromoteToLevel1ParksReadsToo) {
  Prison prison;
  LockResult lock = prison.Lock(Block(1, 3), 0);
  ASSERT_EQ(lock.status, LockStatus::kLocked);
  EXPECT_FALSE(prison.Promote(lock.cell, 1));

  int resumed = 0;
  Continuation read_retry = Count(&resumed);
  EXPECT_EQ(prison.Get(Block(1, 3), kRead, read_retry), nullptr);
  Continuation write_retry = Count(&resumed);
  EXPECT_EQ(prison.Get(Block(1, 3), kWrite, write_retry), nullptr);

  RunAll(prison.Unlock(lock.cell));
  EXPECT_EQ(resumed, 2);
  EXPECT_EQ(prison.CellCount(), 0u);
}

TEST(PrisonTest, LockReportsOnlyHoldersItBars) {
  Prison prison;
  Continuation retry = [] {};
  Cell* read = prison.Get(Block(1, 1), kRead, retry);
  ASSERT_NE(read, nullptr);
  // A level-0 lock does not bar readers: nothing to quiesce.
  LockResult lock = prison.Lock(Block(1, 1), 0);
  EXPECT_EQ(lock.status, LockStatus::kLocked);
  ASSERT_NE(lock.cell, nullptr);
  RunAll(prison.Unlock(lock.cell));

  Cell* write = prison.Get(Block(1, 1), kWrite, retry);
  ASSERT_NE(write, nullptr);
  lock = prison.Lock(Block(1, 1), 0);
  EXPECT_EQ(lock.status, LockStatus::kLockedNeedsQuiesce);
  prison.Put(write);
  prison.Put(read);
  EXPECT_EQ(prison.CellCount(), 1u) << "the exclusive hold keeps the cell";
  RunAll(prison.Unlock(lock.cell));
  EXPECT_EQ(prison.CellCount(), 0u);
}

TEST(PrisonTest, PromoteReportsHoldersTheNewLevelBars) {
  Prison prison;
  LockResult lock = prison.Lock(Block(2, 9), 0);
  ASSERT_EQ(lock.status, LockStatus::kLocked);
  // A read admitted during the copy phase...
  Continuation retry = [] {};
  Cell* read = prison.Get(Block(2, 9), kRead, retry);
  ASSERT_NE(read, nullptr);
  // ...must be quiesced before the commit.
  EXPECT_TRUE(prison.Promote(lock.cell, 1));
  int quiesced = 0;
  prison.Quiesce(lock.cell, Count(&quiesced));
  EXPECT_EQ(quiesced, 0);
  prison.Put(read);
  EXPECT_EQ(quiesced, 1);
  // Lowering the level again admits reads; there is nothing left to drain.
  EXPECT_FALSE(prison.Promote(lock.cell, 0));
  RunAll(prison.Unlock(lock.cell));
  EXPECT_EQ(prison.CellCount(), 0u);
}

TEST(PrisonTest, QuiesceFiresOnceAfterLastBarredHolderLeaves) {
  Prison prison;
  Continuation retry = [] {};
  Cell* a = prison.Get(Block(1, 5), kWrite, retry);
  Cell* b = prison.Get(Block(1, 5), kWrite, retry);
  LockResult lock = prison.Lock(Block(1, 5), 0);
  ASSERT_EQ(lock.status, LockStatus::kLockedNeedsQuiesce);

  int quiesced = 0;
  prison.Quiesce(lock.cell, Count(&quiesced));
  EXPECT_EQ(quiesced, 0);
  prison.Put(a);
  EXPECT_EQ(quiesced, 0);
  prison.Put(b);
  EXPECT_EQ(quiesced, 1);

  // Later holders come and go without firing it again.
  Cell* read = prison.Get(Block(1, 5), kRead, retry);
  ASSERT_NE(read, nullptr);
  prison.Put(read);
  EXPECT_EQ(quiesced, 1);
  RunAll(prison.Unlock(lock.cell));
  EXPECT_EQ(quiesced, 1);
  EXPECT_EQ(prison.CellCount(), 0u);
}

TEST(PrisonTest, QuiesceRunsImmediatelyWhenNoHolders) {
  Prison prison;
  LockResult lock = prison.Lock(Block(1, 5), 1);
  ASSERT_EQ(lock.status, LockStatus::kLocked);
  int quiesced = 0;
  prison.Quiesce(lock.cell, Count(&quiesced));
  EXPECT_EQ(quiesced, 1);
  RunAll(prison.Unlock(lock.cell));
}

TEST(PrisonTest, QuiesceIgnoresHoldersTheLevelAdmits) {
  Prison prison;
  Continuation retry = [] {};
  Cell* read = prison.Get(Block(1, 5), kRead, retry);
  Cell* write = prison.Get(Block(1, 5), kWrite, retry);
  LockResult lock = prison.Lock(Block(1, 5), 0);
  ASSERT_EQ(lock.status, LockStatus::kLockedNeedsQuiesce);
  int quiesced = 0;
  prison.Quiesce(lock.cell, Count(&quiesced));
  prison.Put(write);
  // The copy phase may start while the reader is still inside.
  EXPECT_EQ(quiesced, 1);
  prison.Put(read);
  EXPECT_EQ(quiesced, 1);
  RunAll(prison.Unlock(lock.cell));
}

TEST(PrisonTest, UnlockReturnsParkedContinuationsInFifoOrder) {
  Prison prison;
  LockResult lock = prison.Lock(Block(3, 0), 1);
  ASSERT_EQ(lock.status, LockStatus::kLocked);
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) {
    Continuation retry = [&order, i] { order.push_back(i); };
    EXPECT_EQ(prison.Get(Block(3, 0), i % 2 == 0 ? kRead : kWrite, retry),
              nullptr);
  }
  RunAll(prison.Unlock(lock.cell));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));

  // A second lock starts with an empty list.
  lock = prison.Lock(Block(3, 0), 1);
  ASSERT_NE(lock.cell, nullptr);
  EXPECT_TRUE(prison.Unlock(lock.cell).empty());
  EXPECT_EQ(prison.CellCount(), 0u);
}

TEST(PrisonTest, LockOnExclusivelyHeldKeyIsBusy) {
  Prison prison;
  LockResult first = prison.Lock(Block(1, 1), 0);
  ASSERT_EQ(first.status, LockStatus::kLocked);
  LockResult second = prison.Lock(Block(1, 1), 0);
  EXPECT_EQ(second.status, LockStatus::kBusy);
  EXPECT_EQ(second.cell, nullptr);
  EXPECT_EQ(prison.Lock(Block(1, 1), 1).status, LockStatus::kBusy);
  RunAll(prison.Unlock(first.cell));
  LockResult third = prison.Lock(Block(1, 1), 1);
  EXPECT_EQ(third.status, LockStatus::kLocked);
  RunAll(prison.Unlock(third.cell));
  EXPECT_EQ(prison.CellCount(), 0u);
}

TEST(PrisonTest, DistinctKeysAreIndependent) {
  Prison prison;
  LockResult lock = prison.Lock(Block(1, 10), 1);
  ASSERT_EQ(lock.status, LockStatus::kLocked);
  int resumed = 0;
  Continuation retry = Count(&resumed);
  // Neighbouring blocks, the same block of another volume, a wider range.
  const Key others[] = {Block(1, 9), Block(1, 11), Block(2, 10),
                        Key{VolumeId(1), 100, 164}};
  std::vector<Cell*> held;
  for (const Key& key : others) {
    for (int level : {kWrite, kRead}) {
      Cell* cell = prison.Get(key, level, retry);
      EXPECT_NE(cell, nullptr);
      if (cell != nullptr) held.push_back(cell);
    }
    LockResult other = prison.Lock(key, 0);
    EXPECT_EQ(other.status, LockStatus::kLockedNeedsQuiesce);
    ASSERT_NE(other.cell, nullptr);
    RunAll(prison.Unlock(other.cell));
  }
  EXPECT_TRUE(retry);
  EXPECT_EQ(prison.CellCount(), 5u);
  for (Cell* cell : held) prison.Put(cell);
  EXPECT_TRUE(prison.Unlock(lock.cell).empty());
  EXPECT_EQ(resumed, 0);
  EXPECT_EQ(prison.CellCount(), 0u);
}

TEST(PrisonTest, UnlockKeepsCellWhileSharedHoldersRemain) {
  Prison prison;
  Continuation retry = [] {};
  Cell* read = prison.Get(Block(1, 2), kRead, retry);
  LockResult lock = prison.Lock(Block(1, 2), 0);
  ASSERT_NE(lock.cell, nullptr);
  RunAll(prison.Unlock(lock.cell));
  EXPECT_EQ(prison.CellCount(), 1u);
  // The key is no longer exclusively held: writes get in.
  Cell* write = prison.Get(Block(1, 2), kWrite, retry);
  EXPECT_NE(write, nullptr);
  prison.Put(write);
  prison.Put(read);
  EXPECT_EQ(prison.CellCount(), 0u);
}

TEST(PrisonTest, CellsAreFreedWhenUnused) {
  Prison prison(4);
  Continuation retry = [] {};
  std::vector<Cell*> held;
  // More keys than the spare pools keep, twice, to go through reuse.
  for (int round = 0; round < 2; ++round) {
    for (uint64_t i = 0; i < 1000; ++i) {
      held.push_back(prison.Get(Block(1, i), kRead, retry));
      ASSERT_NE(held.back(), nullptr);
    }
    EXPECT_EQ(prison.CellCount(), 1000u);
    for (Cell* cell : held) prison.Put(cell);
    held.clear();
    EXPECT_EQ(prison.CellCount(), 0u);
  }
  for (uint64_t i = 0; i < 100; ++i) {
    LockResult lock = prison.Lock(Block(2, i), 1);
    ASSERT_EQ(lock.status, LockStatus::kLocked);
    RunAll(prison.Unlock(lock.cell));
  }
  EXPECT_EQ(prison.CellCount(), 0u);
  EXPECT_TRUE(retry);
}

TEST(PrisonTest, ContinuationsMayReenterThePrison) {
  // Continuations run without the internal mutex held: a quiesce
  // continuation run by Put() may drive the next phase on the same key.
  Prison prison;
  Continuation unused = [] {};
  Cell* write = prison.Get(Block(1, 4), kWrite, unused);
  LockResult lock = prison.Lock(Block(1, 4), 0);
  ASSERT_EQ(lock.status, LockStatus::kLockedNeedsQuiesce);
  int resumed = 0;
  Continuation parked = Count(&resumed);
  ASSERT_EQ(prison.Get(Block(1, 4), kWrite, parked), nullptr);
  bool committed = false;
  prison.Quiesce(lock.cell, [&] {
    EXPECT_FALSE(prison.Promote(lock.cell, 1));
    prison.Quiesce(lock.cell, [&] {
      committed = true;
      RunAll(prison.Unlock(lock.cell));
    });
  });
  prison.Put(write);
  EXPECT_TRUE(committed);
  EXPECT_EQ(resumed, 1);
  EXPECT_EQ(prison.CellCount(), 0u);
}

TEST(PrisonDeathTest, OverlappingKeysMustBeIdentical) {
#ifdef NDEBUG
  GTEST_SKIP() << "the check is an assert";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Prison prison;
        Continuation retry = [] {};
        Cell* one = prison.Get(Key{VolumeId(1), 8, 9}, kRead, retry);
        (void)one;
        prison.Get(Key{VolumeId(1), 8, 16}, kRead, retry);
      },
      "overlapping prison keys must be identical");
#endif
}

}  // namespace
}  // namespace tierfs::prison
