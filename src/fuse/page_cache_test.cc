#include "src/fuse/page_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "src/fuse/notifier.h"

namespace tierfs::fusefs {
namespace {

struct stat Origin(long mtime, long ctime, off_t size) {
  struct stat st {};
  st.st_mtim.tv_sec = mtime;
  st.st_ctim.tv_sec = ctime;
  st.st_size = size;
  return st;
}

TEST(PageCacheStateTest, KeepsTheCacheOfAFileNobodyChanged) {
  PageCacheState state;
  const struct stat st = Origin(10, 10, 4096);
  // Nothing is known before the first open: the kernel drops its pages.
  EXPECT_FALSE(state.OpenBuffered(st, false));
  state.ReleaseBuffered(false, &st);
  EXPECT_TRUE(state.OpenBuffered(st, false));
  EXPECT_TRUE(state.OpenBuffered(st, false));  // two opens at once
  state.ReleaseBuffered(false, &st);
  state.ReleaseBuffered(false, &st);
  EXPECT_EQ(state.buffered_opens(), 0);
}

TEST(PageCacheStateTest, DropsTheCacheOfAFileChangedBehindTheMount) {
  PageCacheState state;
  state.OpenBuffered(Origin(10, 10, 4096), false);
  state.ReleaseBuffered(false, nullptr);
  EXPECT_FALSE(state.OpenBuffered(Origin(11, 10, 4096), false));  // mtime
  state.ReleaseBuffered(false, nullptr);
  EXPECT_FALSE(state.OpenBuffered(Origin(11, 12, 4096), false));  // ctime
  state.ReleaseBuffered(false, nullptr);
  EXPECT_FALSE(state.OpenBuffered(Origin(11, 12, 8192), false));  // size
  state.ReleaseBuffered(false, nullptr);
  EXPECT_TRUE(state.OpenBuffered(Origin(11, 12, 8192), false));
  state.ReleaseBuffered(false, nullptr);
}

// Beside another buffered open, the origin's times say nothing (they move
// with tierfs's own writebacks), and dropping the pages could race with a
// write in flight through that open: the cache is kept.
TEST(PageCacheStateTest, AnOpenBesideAnotherKeepsTheCacheWhateverTheOrigin) {
  PageCacheState state;
  state.OpenBuffered(Origin(10, 10, 4096), true);
  EXPECT_TRUE(state.OpenBuffered(Origin(11, 11, 4096), false));
  state.ReleaseBuffered(false, nullptr);
  state.ReleaseBuffered(true, nullptr);
  // Alone again: a change since the stamp drops it, as before.
  EXPECT_FALSE(state.OpenBuffered(Origin(12, 12, 4096), false));
  state.ReleaseBuffered(false, nullptr);
  // A direct write still drops it, beside other opens too.
  state.OpenBuffered(Origin(12, 12, 4096), false);
  EXPECT_TRUE(state.DirectWriteDone());
  EXPECT_FALSE(state.OpenBuffered(Origin(12, 12, 4096), false));
  state.ReleaseBuffered(false, nullptr);
  state.ReleaseBuffered(false, nullptr);
}

TEST(PageCacheStateTest, AWritersOwnChangesKeepTheCache) {
  PageCacheState state;
  state.OpenBuffered(Origin(10, 10, 0), true);
  // Its writes went through the page cache; the release sees their times.
  const struct stat after = Origin(20, 20, 4096);
  state.ReleaseBuffered(true, &after);
  EXPECT_TRUE(state.OpenBuffered(after, false));
  state.ReleaseBuffered(false, nullptr);
}

TEST(PageCacheStateTest, ADirectWriteDropsTheCache) {
  PageCacheState state;
  const struct stat st = Origin(10, 10, 4096);
  state.OpenBuffered(st, false);
  state.ReleaseBuffered(false, &st);
  // No buffered open: nothing to drop now, but the next open starts empty.
  EXPECT_FALSE(state.DirectWriteDone());
  EXPECT_FALSE(state.OpenBuffered(st, false));
  // With a buffered open, the written range is dropped before the reply.
  EXPECT_TRUE(state.DirectWriteDone());
  state.ReleaseBuffered(false, &st);
  EXPECT_FALSE(state.OpenBuffered(st, false));
  state.ReleaseBuffered(false, &st);
}

TEST(PageCacheStateTest, DirectReadsWriteBackOnlyWhileAWriterIsOpen) {
  PageCacheState state;
  const struct stat st = Origin(10, 10, 4096);
  EXPECT_FALSE(state.DirectReadNeedsWriteBack());
  state.OpenBuffered(st, false);
  EXPECT_FALSE(state.DirectReadNeedsWriteBack());
  state.OpenBuffered(st, true);
  EXPECT_TRUE(state.DirectReadNeedsWriteBack());
  state.ReleaseBuffered(true, &st);
  EXPECT_FALSE(state.DirectReadNeedsWriteBack());
  state.ReleaseBuffered(false, &st);
}

// The handshake in page_cache.h: however a direct write's completion and a
// buffered open interleave, either the write drops its range or the open
// does not keep the cache.
TEST(PageCacheStateTest, ADirectWriteAndARacingOpenNeverBothMissIt) {
  const struct stat st = Origin(10, 10, 4096);
  for (int round = 0; round < 1000; ++round) {
    PageCacheState state;
    state.OpenBuffered(st, false);
    state.ReleaseBuffered(false, &st);
    std::atomic<int> go{0};
    bool dropped = false, kept = false;
    std::thread writer([&] {
      ++go;
      while (go.load() < 2) {
      }
      dropped = state.DirectWriteDone();
    });
    std::thread opener([&] {
      ++go;
      while (go.load() < 2) {
      }
      kept = state.OpenBuffered(st, false);
    });
    writer.join();
    opener.join();
    ASSERT_FALSE(kept && !dropped) << "round " << round;
  }
}

TEST(NotifierTest, RunsJobsInOrderOffTheCallersThread) {
  std::vector<int> ran;
  std::thread::id caller = std::this_thread::get_id(), runner;
  {
    Notifier notifier;  // no session: only the continuations run
    for (int i = 0; i < 5; ++i) {
      notifier.InvalidateThen(1, 0, 4096, [&ran, &runner, i] {
        ran.push_back(i);
        runner = std::this_thread::get_id();
      });
    }
  }  // the destructor runs what is queued
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_NE(runner, caller);
}

}  // namespace
}  // namespace tierfs::fusefs
