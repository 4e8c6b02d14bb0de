#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "policy/background_tracker.h"
#include "policy/frequency_sketch.h"
#include "policy/multiqueue.h"
#include "policy/registry.h"
#include "policy/shift_detector.h"
#include "policy/smq.h"
#include "policy/tinylfu.h"

namespace tierfs::policy {
namespace {

OBlock O(uint64_t index, uint32_t volume = 1) {
  return OBlock{VolumeId(volume), index};
}

std::unique_ptr<Policy> Make(std::string_view name, uint64_t blocks,
                             ConfigValues config = {}) {
  std::string error;
  auto p = CreatePolicy(name, PolicyParams{blocks, 64 * 1024}, config, &error);
  EXPECT_TRUE(p.ok()) << error;
  return std::move(p).value();
}

// Executes all queued work as the engine would (every copy succeeds).
int Drain(Policy& p, bool idle = false) {
  int n = 0;
  Work w;
  while (p.GetBackgroundWork(idle, &w)) {
    p.CompleteBackgroundWork(w, true);
    ++n;
  }
  return n;
}

bool Read(Policy& p, OBlock o) {
  CBlock c;
  bool queued;
  return p.Lookup(o, &c, IoDir::kRead, true, &queued);
}

TEST(BackgroundTrackerTest, DedupesBoundsAndKeepsOrder) {
  BackgroundTracker t(3);
  EXPECT_TRUE(t.Queue({WorkOp::kPromote, O(1), CBlock(0)}));
  EXPECT_FALSE(t.Queue({WorkOp::kDemote, O(1), CBlock(0)}));  // same oblock
  EXPECT_TRUE(t.Queue({WorkOp::kDemote, O(2), CBlock(1)}));
  EXPECT_TRUE(t.Queue({WorkOp::kWriteback, O(3), CBlock(2)}));
  EXPECT_FALSE(t.Queue({WorkOp::kPromote, O(4), CBlock(3)}));  // full
  EXPECT_EQ(t.Count(WorkOp::kPromote), 1u);
  EXPECT_EQ(t.Count(WorkOp::kDemote), 1u);
  Work w;
  ASSERT_TRUE(t.Pop(&w));
  EXPECT_EQ(w.oblock, O(1));  // FIFO
  EXPECT_EQ(t.issued(), 1u);
  EXPECT_EQ(t.queued(), 2u);
  EXPECT_TRUE(t.Has(O(1)));  // issued still blocks new work for it
  EXPECT_TRUE(t.Cancel(O(2)));
  EXPECT_FALSE(t.Cancel(O(1)));  // issued work cannot be cancelled
  EXPECT_TRUE(t.Complete(w));
  EXPECT_FALSE(t.Has(O(1)));
  ASSERT_TRUE(t.Pop(&w));
  EXPECT_EQ(w.oblock, O(3));
  EXPECT_FALSE(t.Pop(&w));
}

TEST(PolicyTest, LruPromotesOnMissThenHits) {
  auto p = Make("lru", 4);
  EXPECT_FALSE(Read(*p, O(1)));
  EXPECT_EQ(Drain(*p), 1);
  EXPECT_TRUE(Read(*p, O(1)));
  EXPECT_EQ(p->Residency(), 1u);
}

TEST(PolicyTest, SmqNeedsHotspotHeatBeforePromoting) {
  auto p = Make("smq", 64);
  EXPECT_FALSE(Read(*p, O(100)));
  EXPECT_EQ(Drain(*p), 0);         // one miss is not enough
  EXPECT_FALSE(Read(*p, O(101)));  // same hotspot (16 blocks)
  EXPECT_EQ(Drain(*p), 1);
  EXPECT_TRUE(Read(*p, O(101)));
}

TEST(PolicyTest, DemotesWhenFullAndNeverDemotesDirty) {
  // A dirty target of 100% keeps writeback from cleaning block 1 first.
  auto p = Make("lru", 2, {{"dirty_target_percent", "100"}});
  for (uint64_t i : {1, 2}) {
    Read(*p, O(i));
    Drain(*p);
  }
  ASSERT_EQ(p->Residency(), 2u);
  CBlock c;
  bool q;
  ASSERT_TRUE(p->Lookup(O(1), &c, IoDir::kWrite, true, &q));
  p->SetDirty(c);
  // A miss on a full cache queues the demotion of the clean block 2.
  Read(*p, O(3));
  Work w;
  ASSERT_TRUE(p->GetBackgroundWork(false, &w));
  EXPECT_EQ(w.op, WorkOp::kDemote);
  EXPECT_EQ(w.oblock, O(2));
  p->CompleteBackgroundWork(w, true);
  EXPECT_EQ(p->Residency(), 1u);
  EXPECT_TRUE(p->Peek(O(1)).has_value());
  // The only mapped block is dirty: it is written back (however recently
  // written: promotions must not stall) before it can be demoted.
  bool written_back = false;
  auto drain = [&] {
    while (p->GetBackgroundWork(false, &w)) {
      if (w.oblock == O(1)) {
        if (w.op == WorkOp::kWriteback) written_back = true;
        EXPECT_TRUE(w.op != WorkOp::kDemote || written_back);
      }
      p->CompleteBackgroundWork(w, true);
    }
  };
  Read(*p, O(4));
  drain();
  Read(*p, O(5));
  drain();
  EXPECT_TRUE(written_back);
}

TEST(PolicyTest, DirtyTargetDrivesWritebackUnderLoadAndIdleCleansAll) {
  for (const char* name : {"lru", "smq", "tinylfu"}) {
    auto p = Make(name, 100, {{"dirty_target_percent", "10"}});
    p->Tick(0, true);
    for (uint64_t i = 0; i < 30; ++i) {
      for (int r = 0; r < 2 && !p->Peek(O(i)); ++r) {  // smq: seen twice
        Read(*p, O(i));
        Drain(*p);
      }
      ASSERT_TRUE(p->Peek(O(i))) << name << " " << i;
    }
    for (uint64_t i = 0; i < 30; ++i) p->SetDirty(*p->Peek(O(i)));
    ASSERT_EQ(p->DirtyCount(), 30u);
    Drain(*p, /*idle=*/false);
    // Just written: not cleaned under load.
    EXPECT_EQ(p->DirtyCount(), 30u) << name;
    // Writeback periods on, they are old (smq's first periods also spread
    // them over its levels, which makes them recent again once); block 0,
    // the oldest, is written again.
    for (uint64_t t = 1; t <= 4; ++t) p->Tick(t * 10'001, true);
    CBlock c;
    bool q;
    ASSERT_TRUE(p->Lookup(O(0), &c, IoDir::kWrite, true, &q));
    Drain(*p, /*idle=*/false);
    EXPECT_LE(p->DirtyCount(), 10u) << name;  // down to the target
    EXPECT_GT(p->DirtyCount(), 0u) << name;
    EXPECT_TRUE(p->IsDirty(c)) << name;  // the block being written stays dirty
    Drain(*p, /*idle=*/true);
    EXPECT_EQ(p->DirtyCount(), 0u) << name;  // all of it when idle
  }
}

TEST(PolicyTest, FailedWorkChangesNothing) {
  auto p = Make("lru", 4);
  Read(*p, O(1));
  Work w;
  ASSERT_TRUE(p->GetBackgroundWork(false, &w));
  p->CompleteBackgroundWork(w, false);
  EXPECT_EQ(p->Residency(), 0u);
  Read(*p, O(1));
  Drain(*p);
  CBlock c = *p->Peek(O(1));
  p->SetDirty(c);
  ASSERT_TRUE(p->GetBackgroundWork(true, &w));
  ASSERT_EQ(w.op, WorkOp::kWriteback);
  p->CompleteBackgroundWork(w, false);
  EXPECT_TRUE(p->IsDirty(c));  // a failed writeback keeps the block dirty
}

TEST(PolicyTest, LruEvictsOldDirtyBlocksBeforeRecentCleanOnes) {
  // A cache filled by writes (dirty, none aged a writeback period) and
  // then a read set half its size: lru writes the old dirty blocks back
  // and evicts them, instead of recycling the blocks it promoted last
  // (which hit nothing, pass after pass).
  auto p = Make("lru", 64);
  for (uint64_t i = 0; i < 64; ++i) {
    Read(*p, O(1000 + i));
    Drain(*p);
    p->SetDirty(*p->Peek(O(1000 + i)));
  }
  ASSERT_EQ(p->DirtyCount(), 64u);
  int hits = 0;
  for (int pass = 0; pass < 3; ++pass) {
    hits = 0;
    for (uint64_t i = 0; i < 32; ++i) {
      hits += Read(*p, O(i));
      Drain(*p);
    }
  }
  EXPECT_EQ(hits, 32);
  EXPECT_LE(p->DirtyCount(), 32u);
}

TEST(PolicyTest, AllowMigrationsFalseStopsWork) {
  auto p = Make("lru", 4);
  p->AllowMigrations(false);
  Read(*p, O(1));
  Work w;
  EXPECT_FALSE(p->GetBackgroundWork(true, &w));
  p->AllowMigrations(true);
  Read(*p, O(1));
  EXPECT_EQ(Drain(*p), 1);
}

TEST(PolicyTest, CleanerNeverPromotesAndWritesBackEverything) {
  auto smq = Make("lru", 16);
  for (uint64_t i = 0; i < 8; ++i) {
    Read(*smq, O(i));
    Drain(*smq);
  }
  auto cleaner = Make("cleaner", 16);
  smq->ForEachMapping([&](OBlock o, CBlock c, bool) {
    ASSERT_TRUE(cleaner->LoadMapping(o, c, true, smq->GetHint(c), false).ok());
  });
  EXPECT_EQ(cleaner->DirtyCount(), 8u);
  EXPECT_FALSE(Read(*cleaner, O(100)));
  EXPECT_FALSE(Read(*cleaner, O(100)));
  int writebacks = 0;
  Work w;
  while (cleaner->GetBackgroundWork(false, &w)) {
    EXPECT_EQ(w.op, WorkOp::kWriteback);
    cleaner->CompleteBackgroundWork(w, true);
    ++writebacks;
  }
  EXPECT_EQ(writebacks, 8);
  EXPECT_EQ(cleaner->DirtyCount(), 0u);
  EXPECT_FALSE(cleaner->Peek(O(100)).has_value());
}

TEST(PolicyTest, HintsRoundTripThroughLoadMapping) {
  auto a = Make("smq", 16);
  for (int r = 0; r < 4; ++r) Read(*a, O(5)), Drain(*a);
  ASSERT_TRUE(a->Peek(O(5)).has_value());
  for (int r = 0; r < 10; ++r) Read(*a, O(5));
  const CBlock c = *a->Peek(O(5));
  const uint32_t hint = a->GetHint(c);
  EXPECT_GT(hint, 0u);
  auto b = Make("smq", 16);
  ASSERT_TRUE(b->LoadMapping(O(5), c, false, hint, true).ok());
  EXPECT_EQ(b->GetHint(c), hint);
  auto d = Make("smq", 16);
  ASSERT_TRUE(d->LoadMapping(O(5), c, false, hint, false).ok());
  EXPECT_EQ(d->GetHint(c), 0u);
  // Bad input is refused, not trusted.
  EXPECT_FALSE(b->LoadMapping(O(6), c, false, 0, false).ok());  // slot taken
  EXPECT_FALSE(b->LoadMapping(O(5), CBlock(3), false, 0, false).ok());  // dup
  EXPECT_FALSE(
      b->LoadMapping(O(7), CBlock(99), false, 0, false).ok());  // range
}

TEST(PolicyTest, SequentialStreamsDoNotPromote) {
  auto p = Make("lru", 1024, {{"sequential_cutoff", "1048576"}});  // 16 blocks
  for (uint64_t i = 0; i < 200; ++i) Read(*p, O(1000 + i));
  Drain(*p);
  EXPECT_LE(p->Residency(), 16u);  // only the head of the stream
  // The same blocks in random order are promoted.
  auto q = Make("lru", 1024, {{"sequential_cutoff", "1048576"}});
  std::mt19937 rng(1);
  for (int i = 0; i < 200; ++i) Read(*q, O(rng() % 100000));
  Drain(*q);
  EXPECT_GT(q->Residency(), 150u);
}

TEST(PolicyTest, InvalidateFreesTheSlotAndCancelsWork) {
  auto p = Make("lru", 2);
  Read(*p, O(1));
  Drain(*p);
  CBlock c = *p->Peek(O(1));
  p->SetDirty(c);
  p->InvalidateMapping(c);
  EXPECT_EQ(p->Residency(), 0u);
  EXPECT_EQ(p->DirtyCount(), 0u);
  Work w;
  EXPECT_FALSE(p->GetBackgroundWork(false, &w));
  // A stale completion for the dropped mapping is harmless.
  p->CompleteBackgroundWork(Work{WorkOp::kWriteback, O(1), c}, true);
  EXPECT_EQ(p->Residency(), 0u);
}

TEST(PolicyTest, OverwriteWorkReservesAFreeBlock) {
  auto p = Make("smq", 4);
  CBlock c;
  std::optional<Work> w;
  bool queued;
  EXPECT_FALSE(p->LookupWithWork(O(9), &c, IoDir::kWrite, true, &w, &queued));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->op, WorkOp::kPromote);
  // No second promotion for the same oblock while the first is out.
  p->Lookup(O(9), &c, IoDir::kRead, true, &queued);
  p->Lookup(O(9), &c, IoDir::kRead, true, &queued);
  EXPECT_FALSE(queued);
  p->CompleteBackgroundWork(*w, true);
  p->SetDirty(w->cblock);
  EXPECT_TRUE(Read(*p, O(9)));
  EXPECT_EQ(p->DirtyCount(), 1u);
}

// A read miss the policy promotes comes back as work (the engine fills the
// block from the read's own origin IO), decided exactly as Lookup decides:
// two policies fed the same accesses, one through each call, promote the
// same blocks.
TEST(PolicyTest, ReadWorkIsTheSameDecisionAsAQueuedPromotion) {
  for (const char* name : {"smq", "lru", "tinylfu"}) {
    auto queued_policy = Make(name, 8);
    auto direct_policy = Make(name, 8);
    std::mt19937 rng(3);
    int promoted = 0;
    for (int op = 0; op < 400; ++op) {
      const OBlock o = O(rng() % 64);
      CBlock c;
      bool queued = false;
      const bool hit =
          queued_policy->Lookup(o, &c, IoDir::kRead, true, &queued);
      Work queued_work;
      bool has_queued_promotion = false;
      while (queued_policy->GetBackgroundWork(false, &queued_work)) {
        if (queued_work.op == WorkOp::kPromote && queued_work.oblock == o) {
          has_queued_promotion = true;
        }
        queued_policy->CompleteBackgroundWork(queued_work, true);
      }
      std::optional<Work> w;
      bool direct_queued = false;
      EXPECT_EQ(direct_policy->LookupWithWork(o, &c, IoDir::kRead, true, &w,
                                              &direct_queued),
                hit)
          << name << " op " << op;
      bool direct_promotion = w.has_value();
      if (w) {
        EXPECT_EQ(w->oblock, o);
        direct_policy->CompleteBackgroundWork(*w, true);
        ++promoted;
      }
      // With the cache full, the promotion waits for a demotion: queued.
      Work other;
      while (direct_policy->GetBackgroundWork(false, &other)) {
        if (other.op == WorkOp::kPromote && other.oblock == o) {
          direct_promotion = true;
        }
        direct_policy->CompleteBackgroundWork(other, true);
      }
      EXPECT_EQ(direct_promotion, has_queued_promotion) << name << " op " << op;
    }
    EXPECT_GE(promoted, 8) << name;  // every free cblock filled so
    EXPECT_EQ(queued_policy->Residency(), direct_policy->Residency()) << name;
  }
}

TEST(PolicyTest, ConfigErrorsChangeNothing) {
  auto p = Make("smq", 16);
  EXPECT_FALSE(p->SetConfigValue("no_such_key", "1").ok());
  EXPECT_FALSE(p->SetConfigValue("dirty_target_percent", "101").ok());
  EXPECT_FALSE(p->SetConfigValue("dirty_target_percent", "ten").ok());
  EXPECT_FALSE(p->SetConfigValue("sequential_cutoff", "-1").ok());
  EXPECT_TRUE(p->SetConfigValue("dirty_target_percent", "20").ok());
  bool found = false;
  for (const auto& [k, v] : p->EmitConfigValues()) {
    if (k == "dirty_target_percent") {
      EXPECT_EQ(v, "20");
      found = true;
    }
  }
  EXPECT_TRUE(found);
  std::string error;
  EXPECT_FALSE(CreatePolicy("bogus", {16, 65536}, {}, &error).ok());
  EXPECT_NE(error.find("unknown policy"), std::string::npos);
  EXPECT_FALSE(CreatePolicy("smq", {16, 65536}, {{"x", "1"}}, &error).ok());
  EXPECT_NE(error.find("no config key"), std::string::npos);
}

TEST(QueueTest, PeekStopsAtSentinelsAndRedistributeBalancesLevels) {
  EntrySpace es(2 + 64);
  Queue q(&es, 4);
  es[0].sentinel = 1;
  es[1].sentinel = 1;
  q.Push(0);  // level 0 sentinel first: nothing in level 0 is "old"
  for (uint32_t i = 2; i < 66; ++i) {
    es[i].level = 0;
    q.Push(i);
  }
  EXPECT_EQ(q.size(), 64u);
  EXPECT_EQ(q.Peek(4, false), kNullIndex);
  EXPECT_EQ(q.Peek(4, true), 2u);  // oldest
  q.Redistribute();
  for (unsigned l = 0; l < 4; ++l) EXPECT_EQ(q.level(l).size, 16u) << l;
  // The oldest stay low, the newest go up.
  EXPECT_EQ(es[2].level, 0u);
  EXPECT_EQ(es[65].level, 3u);
  // A requeue moves up one level and swaps an entry down.
  q.Requeue(2, 1, kNullIndex);
  EXPECT_EQ(es[2].level, 1u);
  EXPECT_EQ(q.level(0).size, 16u);
  EXPECT_EQ(q.level(1).size, 16u);
  EXPECT_EQ(q.Pop(), 3u);
  EXPECT_EQ(q.size(), 63u);
}

TEST(PolicyTest, LruKeepsEvictingTheLeastRecentlyUsed) {
  auto p = Make("lru", 4);
  for (uint64_t i = 0; i < 100; ++i) {
    for (int r = 0; r < 2; ++r) {
      Read(*p, O(i));
      Drain(*p);
    }
    EXPECT_TRUE(p->Peek(O(i)).has_value()) << i;
  }
  EXPECT_GE(p->Residency(), 3u);
  EXPECT_FALSE(p->Peek(O(0)).has_value());
}

TEST(PolicyTest, SmqPromotesWhenFullAndDemotesColdBlocks) {
  auto p = Make("smq", 32);
  uint64_t now = 0;
  p->Tick(now, true);
  // Fill the cache with blocks hit once, then make blocks 1000.. hot.
  for (uint64_t i = 0; i < 64; ++i) {
    Read(*p, O(i * 16)), Read(*p, O(i * 16 + 1));
    Drain(*p);
  }
  ASSERT_EQ(p->Residency(), 32u);
  int hits = 0;
  for (int round = 0; round < 200; ++round) {
    for (uint64_t i = 0; i < 8; ++i) hits += Read(*p, O(1000 + i));
    Drain(*p);
    p->Tick(now += 100, true);
  }
  for (uint64_t i = 0; i < 8; ++i) {
    EXPECT_TRUE(p->Peek(O(1000 + i)).has_value()) << i;
  }
  EXPECT_GT(hits, 400);            // cached well before the end
  EXPECT_EQ(p->Residency(), 32u);  // demotions made the room
}

TEST(FrequencySketchTest, CountsSaturatesAndHalves) {
  FrequencySketch off(64);
  off.Record(O(1));
  EXPECT_EQ(off.Estimate(O(1)), 0u);  // sample 0: off
  FrequencySketch s(64);
  s.set_sample(1000);
  for (int i = 0; i < 6; ++i) s.Record(O(1));
  s.Record(O(2, 2));
  EXPECT_EQ(s.Estimate(O(1)), 6u);
  EXPECT_EQ(s.Estimate(O(2, 2)), 1u);
  EXPECT_EQ(s.Estimate(O(3)), 0u);
  for (int i = 0; i < 40; ++i) s.Record(O(5));
  EXPECT_EQ(s.Estimate(O(5)), FrequencySketch::kMaxCount);
  s.Halve();
  EXPECT_EQ(s.Estimate(O(1)), 3u);
  EXPECT_EQ(s.Estimate(O(5)), 7u);
  FrequencySketch aging(64);
  aging.set_sample(10);
  for (int i = 0; i < 9; ++i) aging.Record(O(1));
  EXPECT_EQ(aging.Estimate(O(1)), 9u);
  aging.Record(O(1));  // the 10th access halves every counter
  EXPECT_EQ(aging.Estimate(O(1)), 5u);
}

// With the cache full and the promotion level out of reach (hotspots climb
// one step per tick), a block read clearly more often than the would-be victim
// is still promoted, unless admission_window is 0.
uint64_t AdmittedAfterRereads(ConfigValues config) {
  auto p = Make("smq", 32, std::move(config));
  for (uint64_t i = 0; p->Residency() < 32; ++i) {
    Read(*p, O(i * 16)), Read(*p, O(i * 16 + 1));  // cached, read once
    Drain(*p);
  }
  p->Tick(0, true);  // rebalances the levels: the colder half can demote
  for (int r = 0; r < 4; ++r) Read(*p, O(5000)), Drain(*p);
  EXPECT_EQ(p->Residency(), 32u);
  return p->Peek(O(5000)).has_value();
}

TEST(PolicyTest, SmqAdmitsBlocksMoreFrequentThanTheVictim) {
  EXPECT_TRUE(AdmittedAfterRereads({}));
  EXPECT_FALSE(AdmittedAfterRereads({{"admission_window", "0"}}));
  auto p = Make("smq", 16);
  EXPECT_FALSE(p->SetConfigValue("admission_window", "1001").ok());
  EXPECT_FALSE(p->SetConfigValue("admission_window", "x").ok());
  EXPECT_TRUE(p->SetConfigValue("admission_window", "30").ok());
  bool found = false;
  for (const auto& [k, v] : p->EmitConfigValues()) {
    if (k == "admission_window") found = v == "30";
  }
  EXPECT_TRUE(found);
  EXPECT_FALSE(Make("lru", 16)->SetConfigValue("admission_window", "1").ok());
}

TEST(PolicyTest, SmqScansNeitherPromoteNorHeatHotspots) {
  auto p = Make("smq", 1024);  // default cutoff 4 MiB = 64 blocks
  for (int pass = 0; pass < 2; ++pass) {
    for (uint64_t i = 0; i < 2000; ++i) Read(*p, O(i)), Drain(*p);
  }
  EXPECT_LE(p->Residency(), 64u);
  auto q = Make("smq", 1024, {{"sequential_cutoff", "0"}});
  for (int pass = 0; pass < 2; ++pass) {
    for (uint64_t i = 0; i < 2000; ++i) Read(*q, O(i)), Drain(*q);
  }
  EXPECT_GT(q->Residency(), 900u);
}

// Half the reads hit a hot set of half the cache, half are a stream over
// volume 2 wrapping at `region` blocks; returns the cached volume-2 blocks.
uint64_t CachedStreamBlocks(uint64_t region, ConfigValues config) {
  auto p = Make("smq", 512, std::move(config));
  std::mt19937 rng(3);
  uint64_t now = 0, pos = 0;
  p->Tick(now, true);
  for (int tick = 0; tick < 600; ++tick) {
    for (int i = 0; i < 1000; ++i) {
      if (i % 2 == 0) {
        Read(*p, O(rng() % 256));
      } else {
        Read(*p, O(pos, 2));
        pos = (pos + 1) % region;
      }
      Drain(*p);
    }
    p->Tick(now += 100, true);
  }
  uint64_t cached = 0;
  p->ForEachMapping(
      [&](OBlock o, CBlock, bool) { cached += o.volume.value() == 2; });
  return cached;
}

TEST(PolicyTest, SmqCachesOnlyStreamsThatReReadARegion) {
  // The first 64 blocks (4 MiB, the cutoff) are not yet a stream and fill
  // free cblocks like any miss. Beyond them, a stream that never comes back
  // stays out of the cache: one pass heats a hotspot by a step at most.
  EXPECT_LE(CachedStreamBlocks(uint64_t{1} << 40, {}), 80u) << "one pass";
  // Streams re-reading a region of 1.5 caches make it hot: smq caches part
  // of it, as the hotspot queue says it is reused.
  EXPECT_GT(CachedStreamBlocks(768, {}), 192u) << "re-read";
  // sequential_heat 0 is bcache's bypass: nothing of the stream is cached
  // beyond what it missed before it was recognised as one.
  EXPECT_LE(CachedStreamBlocks(768, {{"sequential_heat", "0"}}), 64u) << "off";
}

TEST(PolicyTest, DirtyTargetOfHundredWritesBackOnlyWhenIdle) {
  auto p = Make("smq", 100, {{"dirty_target_percent", "100"}});
  CBlock c;
  std::optional<Work> w;
  bool queued;
  for (uint64_t i = 0; i < 50; ++i) {
    ASSERT_FALSE(
        p->LookupWithWork(O(i * 100), &c, IoDir::kWrite, true, &w, &queued));
    ASSERT_TRUE(w.has_value());  // free cblocks: whole-block writes promote
    p->CompleteBackgroundWork(*w, true);
    p->SetDirty(w->cblock);
  }
  EXPECT_EQ(Drain(*p, /*idle=*/false), 0);
  EXPECT_EQ(p->DirtyCount(), 50u);
  EXPECT_EQ(Drain(*p, /*idle=*/true), 50);
  EXPECT_EQ(p->DirtyCount(), 0u);
}

// One of the operations the randomized tests mix (choice 0-4): lookups
// (which may hand out work), handing out queued work and completing work.
// False for any other choice, which the test makes itself.
bool RandomWorkOp(Policy& p, std::mt19937& rng, unsigned choice, OBlock o,
                  std::vector<Work>* issued) {
  CBlock c;
  switch (choice) {
    case 0:
    case 1:
      Read(p, o);
      return true;
    case 2: {
      std::optional<Work> w;
      bool queued;
      const IoDir dir = rng() % 2 ? IoDir::kWrite : IoDir::kRead;
      if (!p.LookupWithWork(o, &c, dir, true, &w, &queued) && w) {
        issued->push_back(*w);
      } else if (p.Peek(o)) {
        p.SetDirty(*p.Peek(o));
      }
      return true;
    }
    case 3: {
      Work w;
      if (p.GetBackgroundWork(rng() % 2, &w)) issued->push_back(w);
      return true;
    }
    case 4:
      if (!issued->empty()) {
        const size_t k = rng() % issued->size();
        p.CompleteBackgroundWork((*issued)[k], rng() % 4 != 0);
        issued->erase(issued->begin() + static_cast<long>(k));
      }
      return true;
  }
  return false;
}

// Mappings, dirty count and slots agree: each cblock maps one block, below
// `cache_blocks`, and Residency() and DirtyCount() count them.
void ExpectCoherent(const Policy& p, uint64_t cache_blocks) {
  uint64_t mapped = 0, dirty = 0;
  std::set<uint32_t> slots;
  p.ForEachMapping([&](OBlock ob, CBlock cb, bool d) {
    ++mapped;
    dirty += d;
    EXPECT_TRUE(slots.insert(cb.value()).second);
    EXPECT_LT(cb.value(), cache_blocks);
    EXPECT_EQ(p.Peek(ob), cb);
  });
  ASSERT_EQ(mapped, p.Residency());
  ASSERT_EQ(dirty, p.DirtyCount());
}

// Randomized consistency check: mappings, dirty counts and free slots stay
// coherent whatever the mix of lookups, work outcomes and invalidations.
TEST(PolicyTest, RandomOperationsKeepInvariants) {
  for (const char* name : {"smq", "lru", "cleaner", "tinylfu"}) {
    SCOPED_TRACE(name);
    auto p = Make(name, 64);
    std::mt19937 rng(7);
    std::vector<Work> issued;
    for (int op = 0; op < 20000; ++op) {
      const OBlock o = O(rng() % 300);
      const unsigned choice = rng() % 6;
      if (!RandomWorkOp(*p, rng, choice, o, &issued)) {
        if (auto m = p->Peek(o); m && rng() % 8 == 0) {
          p->InvalidateMapping(*m);
        }
      }
      ASSERT_NO_FATAL_FAILURE(ExpectCoherent(*p, 64));
    }
  }
}

TEST(PolicyTest, MemoryPerCacheBlockIsReported) {
  // 100,000 blocks: not a power of two, so every rounded-up table shows.
  const uint64_t blocks = 100000;
  for (const char* name : {"smq", "tinylfu"}) {
    auto p = Make(name, blocks);
    for (uint64_t i = 0; i < blocks; ++i) {
      ASSERT_TRUE(p->LoadMapping(O(i), CBlock(static_cast<uint32_t>(i)),
                                 i % 3 == 0, 0, false)
                      .ok());
    }
    const double per_block =
        static_cast<double>(p->MemoryBytes()) / static_cast<double>(blocks);
    std::printf("%s memory: %.1f bytes per cache block (fully mapped)\n", name,
                per_block);
    EXPECT_LE(per_block, 48.0) << name;
  }
}

TEST(ShiftDetectorTest, ACollapseOfHitsIsAShiftAndStaysStaleUntilRecovery) {
  ShiftDetector d(400);  // periods of 100 accesses
  auto period = [&](int hits) {
    bool shifted = false;
    for (int i = 0; i < 100; ++i) {
      if (d.Count(i < hits)) {
        shifted = d.Shifted();
        d.EndPeriod();
      }
    }
    return shifted;
  };
  EXPECT_FALSE(period(80));
  EXPECT_FALSE(period(30));  // a phase, not a new working set
  EXPECT_FALSE(d.stale());
  EXPECT_FALSE(period(80));
  EXPECT_TRUE(period(4));  // under a sixteenth of 80
  EXPECT_TRUE(d.stale());
  EXPECT_FALSE(period(30));
  EXPECT_TRUE(d.stale());  // not yet half of the 80 before the shift
  EXPECT_FALSE(period(40));
  EXPECT_FALSE(d.stale());  // recovered
  d.MarkUsed(7);
  EXPECT_TRUE(d.Used(7));
  period(0);
  EXPECT_TRUE(d.Used(7));  // used the period before
  period(0);
  EXPECT_FALSE(d.Used(7));
}

TEST(TinyLfuTest, PromotesOnMissThenHits) {
  auto p = Make("tinylfu", 64);
  EXPECT_FALSE(Read(*p, O(1)));
  EXPECT_EQ(Drain(*p), 1);
  EXPECT_TRUE(Read(*p, O(1)));
  EXPECT_EQ(p->Residency(), 1u);
}

// Work that never runs (migrations stalled behind a slow origin): once the
// free blocks are all reserved, further promotions are dropped, and counted.
TEST(PolicyTest, PromotionsWithNoRoomAreCountedAsDropped) {
  for (const char* name : {"tinylfu", "lru"}) {
    SCOPED_TRACE(name);
    auto p = Make(name, 16);
    for (uint64_t b = 0; b < 16; ++b) Read(*p, O(b));
    Drain(*p);  // full, or but for a reserve kept free
    ASSERT_GE(p->Residency(), 14u);
    EXPECT_EQ(p->DroppedPromotions(), 0u);
    // More misses than promotions may wait for room (256), nothing drains.
    for (int round = 0; round < 3; ++round) {
      for (uint64_t b = 100; b < 700; ++b) Read(*p, O(b));
    }
    EXPECT_GT(p->DroppedPromotions(), 0u);
    Drain(*p);
    const uint64_t dropped = p->DroppedPromotions();
    int hits = 0;
    for (uint64_t b = 0; b < 700; ++b) {
      if (p->Peek(O(b)) && Read(*p, O(b))) ++hits;
    }
    EXPECT_GT(hits, 0);
    EXPECT_EQ(p->DroppedPromotions(), dropped);  // hits drop nothing
  }
}

TEST(TinyLfuTest, WriteMissesWithNoRoomWaitForItReadMissesMakeRoom) {
  // A burst of misses on a full cache while no work completes (a mount
  // whose migrations lag). A written block waits for the cblock a demotion
  // frees (the simulator, whose work completes before each IO, would have
  // taken the write into the cache); a read miss is dropped, promoted late
  // it would evict a block for a reuse long gone, but the room it lacked
  // is made, for the misses to come.
  auto p = Make("tinylfu", 512);  // a reserve of 2
  for (uint64_t b = 0; b < 512; ++b) Read(*p, O(b)), Drain(*p);
  ASSERT_GE(p->Residency(), 510u);
  CBlock c;
  bool queued;
  for (uint64_t b = 1000; b < 1040; ++b) {
    p->Lookup(O(b), &c, IoDir::kWrite, true, &queued);  // nothing drains
  }
  EXPECT_EQ(p->DroppedPromotions(), 0u);
  Drain(*p);
  int promoted = 0;
  for (uint64_t b = 1000; b < 1040; ++b) promoted += p->Peek(O(b)) ? 1 : 0;
  EXPECT_EQ(promoted, 40);

  for (uint64_t b = 2000; b < 2040; ++b) Read(*p, O(b));
  EXPECT_EQ(p->DroppedPromotions(), 38u);  // all but the reserve's two
  auto* t = dynamic_cast<TinyLfuPolicy*>(p.get());
  ASSERT_NE(t, nullptr);
  Drain(*p);
  EXPECT_GE(t->FreeCount(), 38u);
}

TEST(TinyLfuTest, TheLastWriteMissThatFitsWaitsTheNextIsDropped) {
  auto p = Make("tinylfu", 512);  // a reserve of 2
  for (uint64_t b = 0; b < 512; ++b) Read(*p, O(b)), Drain(*p);
  CBlock c;
  bool queued;
  // Two take the reserve, 256 wait (nothing drains), the next is dropped.
  for (uint64_t b = 1000; b < 1000 + 2 + 256; ++b) {
    p->Lookup(O(b), &c, IoDir::kWrite, true, &queued);
  }
  EXPECT_EQ(p->DroppedPromotions(), 0u);
  p->Lookup(O(5000), &c, IoDir::kWrite, true, &queued);
  EXPECT_EQ(p->DroppedPromotions(), 1u);
}

TEST(TinyLfuTest, FrequentBlocksSurviveAScanThatFlushesLru) {
  // A hot set, then a one-pass scan of 20 caches alone. LRU keeps nothing
  // of the hot set. tinylfu without shift detection keeps it all; with it
  // (the default) the collapse of the hits looks like a shift for a while
  // and about half goes - the price of adapting to a new hot set in a few
  // passes (ANewHotSetTakesOverWithinThreePasses). A scan running beside
  // the hot set does not collapse the hits: policy_sim's scan workload.
  struct Case {
    const char* name;
    ConfigValues config;
    int at_least, at_most;
  };
  for (const Case& c : {Case{"tinylfu", {{"shift_detection", "0"}}, 250, 256},
                        Case{"tinylfu", {}, 100, 256}, Case{"lru", {}, 0, 0}}) {
    auto p = Make(c.name, 512, c.config);
    for (int round = 0; round < 8; ++round) {
      for (uint64_t i = 0; i < 256; ++i) Read(*p, O(i)), Drain(*p);
    }
    for (uint64_t i = 0; i < 10000; ++i) Read(*p, O(100000 + i)), Drain(*p);
    int kept = 0;
    for (uint64_t i = 0; i < 256; ++i) kept += p->Peek(O(i)).has_value();
    EXPECT_GE(kept, c.at_least) << c.name << " " << c.config.size();
    EXPECT_LE(kept, c.at_most) << c.name << " " << c.config.size();
  }
}

TEST(TinyLfuTest, ANewHotSetTakesOverWithinThreePasses) {
  // Issue 17's shift test: set A hot for 10 passes, then set B; a pass
  // reads every block of the set once, in a new random order.
  for (const char* detection : {"1", "0"}) {
    auto p = Make("tinylfu", 1024, {{"shift_detection", detection}});
    std::mt19937 rng(1);
    auto pass = [&](uint64_t base) {
      std::vector<uint64_t> blocks(768);
      for (uint64_t i = 0; i < 768; ++i) blocks[i] = base + i;
      std::shuffle(blocks.begin(), blocks.end(), rng);
      int hits = 0;
      for (uint64_t b : blocks) hits += Read(*p, O(b)), Drain(*p);
      return hits;
    };
    for (int i = 0; i < 10; ++i) pass(0);
    std::vector<int> hits;
    for (int i = 0; i < 3; ++i) hits.push_back(pass(10000));
    if (std::string_view(detection) == "1") {
      EXPECT_GE(hits[2], 768 * 9 / 10) << "set B's third pass";
    } else {
      EXPECT_LT(hits[2], 768 / 2);  // frequency alone holds on to set A
    }
  }
}

TEST(TinyLfuTest, WindowGrowsForRecencyAndShrinksForFrequency) {
  TinyLfuPolicy p(PolicyParams{512, 64 * 1024});
  const uint64_t start = p.window_target();
  // Every block is used twice, 200 accesses apart: only a window that
  // large catches the second use (frequency cannot: both uses look new).
  for (uint64_t i = 0; i < 20000; ++i) {
    Read(p, O(i));
    if (i >= 100) Read(p, O(i - 100));
    Drain(p);
  }
  const uint64_t grown = p.window_target();
  EXPECT_GE(grown, 150u) << "from " << start;
  // Now a hot set of 400 blocks and one-time blocks, alternately: the
  // window should give its room back to main.
  std::mt19937 rng(3);
  for (uint64_t i = 0; i < 100000; ++i) {
    Read(p, O(1000000 + rng() % 400));
    Read(p, O(2000000 + i));
    Drain(p);
  }
  EXPECT_LT(p.window_target(), grown / 2);
  int hot = 0;
  for (uint64_t i = 0; i < 400; ++i) hot += p.Peek(O(1000000 + i)).has_value();
  EXPECT_GE(hot, 350);
}

TEST(TinyLfuTest, DirtyVictimsAreWrittenBackNeverDemoted) {
  auto p = Make("tinylfu", 8, {{"dirty_target_percent", "100"}});
  for (uint64_t i = 0; i < 8; ++i) Read(*p, O(i)), Drain(*p);
  for (uint64_t i = 0; i < 8; ++i) {
    if (auto c = p->Peek(O(i))) p->SetDirty(*c);
  }
  int writebacks = 0;
  for (uint64_t i = 100; i < 120; ++i) {
    Read(*p, O(i));
    Work w;
    while (p->GetBackgroundWork(false, &w)) {
      if (w.op == WorkOp::kDemote) {
        EXPECT_FALSE(p->IsDirty(w.cblock)) << "demoting a dirty block";
      }
      writebacks += w.op == WorkOp::kWriteback;
      p->CompleteBackgroundWork(w, true);
    }
  }
  EXPECT_GT(writebacks, 0);
  EXPECT_LE(p->Residency(), 8u);
}

TEST(TinyLfuTest, HintsRoundTripThroughLoadMapping) {
  auto a = Make("tinylfu", 64);
  for (int r = 0; r < 3; ++r) Read(*a, O(5)), Drain(*a);
  const CBlock c = *a->Peek(O(5));
  const uint32_t hint = a->GetHint(c);
  auto b = Make("tinylfu", 64);
  ASSERT_TRUE(b->LoadMapping(O(5), c, true, hint, true).ok());
  EXPECT_EQ(b->GetHint(c), hint);
  EXPECT_TRUE(b->IsDirty(c));
  EXPECT_TRUE(Read(*b, O(5)));
  EXPECT_FALSE(b->LoadMapping(O(6), c, false, 0, false).ok());  // slot taken
  EXPECT_FALSE(b->LoadMapping(O(7), CBlock(64), false, 0, false).ok());
}

TEST(TinyLfuTest, ConfigValuesAreCheckedAndTakeEffect) {
  TinyLfuPolicy p(PolicyParams{1000, 64 * 1024});
  EXPECT_FALSE(p.SetConfigValue("window_percent", "0").ok());
  EXPECT_FALSE(p.SetConfigValue("window_percent", "91").ok());
  EXPECT_FALSE(p.SetConfigValue("adaptive_window", "2").ok());
  EXPECT_FALSE(p.SetConfigValue("promote_level", "1").ok());
  ASSERT_TRUE(p.SetConfigValue("window_percent", "20").ok());
  EXPECT_EQ(p.window_target(), 200u);
  ASSERT_TRUE(p.SetConfigValue("adaptive_window", "0").ok());
  for (uint64_t i = 0; i < 5000; ++i) {
    Read(p, O(i));
    if (i >= 300) Read(p, O(i - 300));
    Drain(p);
  }
  EXPECT_EQ(p.window_target(), 200u);  // fixed when not adaptive
}

TEST(TinyLfuTest, StreamsPastTheCutoffAreNotPromoted) {
  auto p = Make("tinylfu", 1024, {{"sequential_cutoff", "1048576"}});
  for (uint64_t i = 0; i < 200; ++i) Read(*p, O(5000 + i)), Drain(*p);
  EXPECT_LE(p->Residency(), 16u);  // only the head of the stream (1 MiB)
  auto q = Make("tinylfu", 1024);  // cutoff 0: no stream detection
  for (uint64_t i = 0; i < 200; ++i) Read(*q, O(5000 + i)), Drain(*q);
  EXPECT_EQ(q->Residency(), 200u);
}

// Thin caches (Policy::SetCapacity). Every policy, the cleaner included: a
// lowered capacity binds it too.
constexpr const char* kAllPolicies[] = {"smq", "lru", "cleaner", "tinylfu"};

// Maps blocks [0, n) into cblocks [0, n), as the engine's start-up does
// before it sets the capacity. Hint i: smq's upper levels get blocks too
// (the hot half it never demotes for a promotion), tinylfu's window,
// probation and protected.
void LoadBlocks(Policy& p, uint64_t n, bool dirty = false) {
  for (uint64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(p.LoadMapping(O(i), CBlock(static_cast<uint32_t>(i)), dirty,
                              static_cast<uint32_t>(i), true)
                    .ok());
  }
}

// Runs all work like Drain, checking that no completed promotion takes the
// policy past `capacity` and no dirty block is demoted. Returns the number
// of promotions.
int DrainWithin(Policy& p, uint64_t capacity, bool idle = false) {
  int promotions = 0;
  Work w;
  while (p.GetBackgroundWork(idle, &w)) {
    EXPECT_FALSE(w.op == WorkOp::kDemote && p.IsDirty(w.cblock))
        << p.Name() << ": demoting a dirty block";
    p.CompleteBackgroundWork(w, true);
    if (w.op == WorkOp::kPromote) {
      ++promotions;
      EXPECT_LE(p.Residency(), capacity) << p.Name() << ": promoted past it";
    }
  }
  return promotions;
}

// The work queue of a built-in policy.
const BackgroundTracker& TrackerOf(const Policy& p) {
  if (auto* t = dynamic_cast<const TinyLfuPolicy*>(&p)) return t->tracker();
  return dynamic_cast<const SmqPolicy&>(p).tracker();
}

// Misses on blocks [first, first + n), each read twice (smq promotes a
// hotspot's second miss), with no work completing meanwhile: a mount whose
// migrations lag.
void MissBurst(Policy& p, uint64_t first, uint64_t n) {
  for (uint64_t i = first; i < first + n; ++i) Read(p, O(i)), Read(p, O(i));
}

// Reads `o` until it is cached (smq promotes a hotspot's second miss), at
// most three times.
void ReadIn(Policy& p, OBlock o, uint64_t capacity) {
  for (int r = 0; r < 3 && !p.Peek(o); ++r) {
    Read(p, o);
    DrainWithin(p, capacity);
  }
}

TEST(CapacityTest, IsTheCacheSizeUntilSetAndClampedToIt) {
  for (const char* name : kAllPolicies) {
    auto p = Make(name, 64);
    EXPECT_EQ(p->Capacity(), 64u) << name;
    p->SetCapacity(10);
    EXPECT_EQ(p->Capacity(), 10u) << name;
    p->SetCapacity(0);
    EXPECT_EQ(p->Capacity(), 1u) << name;
    p->SetCapacity(1000);
    EXPECT_EQ(p->Capacity(), 64u) << name;
    p->SetCapacity(1);
    for (uint64_t i = 0; i < 20; ++i) ReadIn(*p, O(i * 16), 1);
    EXPECT_LE(p->Residency(), 1u) << name;
  }
}

TEST(CapacityTest, LoweredBelowResidencyDemotesDownToIt) {
  for (const char* name : kAllPolicies) {
    SCOPED_TRACE(name);
    auto p = Make(name, 64);
    uint64_t now = 0;
    p->Tick(now, true);
    LoadBlocks(*p, 48);  // 16 cblocks free
    ASSERT_EQ(p->Residency(), 48u);
    p->SetCapacity(16);
    // Nothing is dropped synchronously, but all the demotions are queued
    // now (tinylfu's one more keeps its free block).
    EXPECT_EQ(p->Residency(), 48u);
    const bool tinylfu = std::string_view(name) == "tinylfu";
    EXPECT_EQ(TrackerOf(*p).Count(WorkOp::kDemote), tinylfu ? 33u : 32u);
    // Misses meanwhile find free cblocks, but none under the capacity.
    MissBurst(*p, 5000, 20);
    EXPECT_EQ(TrackerOf(*p).Count(WorkOp::kPromote), 0u);
    Work w;
    ASSERT_TRUE(p->GetBackgroundWork(false, &w));
    EXPECT_EQ(w.op, WorkOp::kDemote);
    p->CompleteBackgroundWork(w, true);
    EXPECT_EQ(p->Residency(), 47u);
    // Down to the capacity. (The burst's misses may have asked for room of
    // their own - tinylfu: a block each - so not necessarily just down.)
    int promotions = DrainWithin(*p, 16);
    EXPECT_LE(p->Residency(), 16u);
    // Misses on new blocks and re-reads of old ones, with ticks: promotions
    // (not the cleaner's) refill the cache, never past the capacity.
    for (int round = 0; round < 20; ++round) {
      for (uint64_t i = 0; i < 40; ++i) {
        Read(*p, O(i % 2 == 0 ? 1000 + i + 40 * (round % 3) : i));
        promotions += DrainWithin(*p, 16);
      }
      p->Tick(now += 1000, true);
      promotions += DrainWithin(*p, 16);
    }
    EXPECT_LE(p->Residency(), 16u);
    if (std::string_view(name) != "cleaner") {
      EXPECT_GE(promotions, 16);
      EXPECT_GE(p->Residency(), 15u);
    }
  }
}

TEST(CapacityTest, MappingsLoadedPastItAreDemotedAtTheNextTick) {
  for (const char* name : kAllPolicies) {
    SCOPED_TRACE(name);
    auto p = Make(name, 64);
    p->SetCapacity(20);
    LoadBlocks(*p, 64);  // more than the capacity: accepted
    ASSERT_EQ(p->Residency(), 64u);
    p->Tick(0, true);
    // Queued by the Tick (tinylfu's one more keeps its free block).
    EXPECT_GE(TrackerOf(*p).Count(WorkOp::kDemote), 44u);
    DrainWithin(*p, 20);
    EXPECT_LE(p->Residency(), 20u);
    EXPECT_GE(p->Residency(), 19u);  // the victims, no more
  }
}

TEST(CapacityTest, RaisedAgainPromotionsFillUpToIt) {
  for (const char* name : {"smq", "lru", "tinylfu"}) {
    SCOPED_TRACE(name);
    auto p = Make(name, 64);
    p->SetCapacity(16);
    uint64_t next = 0;
    auto fill = [&](uint64_t capacity) {
      for (int n = 0; n < 200 && p->Residency() < capacity - 1; ++n) {
        ReadIn(*p, O(16 * next++), capacity);  // a new hotspot each
      }
    };
    fill(16);
    EXPECT_LE(p->Residency(), 16u);
    // Past a full cache, a miss replaces a block: no more than 16 stay,
    // even when many miss before any work completes (48 cblocks are free).
    for (int n = 0; n < 20; ++n) ReadIn(*p, O(16 * next++), 16);
    MissBurst(*p, 16 * next, 40);
    next += 40;
    DrainWithin(*p, 16);
    EXPECT_LE(p->Residency(), 16u);
    fill(16);  // the burst's room, taken by the misses that follow
    EXPECT_GE(p->Residency(), 15u);
    p->SetCapacity(48);
    fill(48);
    EXPECT_GE(p->Residency(), 47u);  // tinylfu keeps a free block
    EXPECT_LE(p->Residency(), 48u);
    p->SetCapacity(64);
    fill(64);
    EXPECT_GE(p->Residency(), 63u);
  }
}

TEST(CapacityTest, DirtyBlocksOverItAreWrittenBackBeforeTheirDemotion) {
  for (const char* name : kAllPolicies) {
    SCOPED_TRACE(name);
    // A dirty target of 100%: only the lowered capacity asks for writeback.
    auto p = Make(name, 64, {{"dirty_target_percent", "100"}});
    p->Tick(0, true);
    LoadBlocks(*p, 32, /*dirty=*/true);
    ASSERT_EQ(p->DirtyCount(), 32u);
    p->SetCapacity(8);
    std::set<OBlock> written_back;
    int demotions = 0;
    Work w;
    while (p->GetBackgroundWork(false, &w)) {
      ASSERT_NE(w.op, WorkOp::kPromote);
      if (w.op == WorkOp::kWriteback) written_back.insert(w.oblock);
      if (w.op == WorkOp::kDemote) {
        EXPECT_FALSE(p->IsDirty(w.cblock));
        EXPECT_TRUE(written_back.count(w.oblock)) << w.oblock.index;
        ++demotions;
      }
      p->CompleteBackgroundWork(w, true);
    }
    EXPECT_EQ(demotions, 32 - static_cast<int>(p->Residency()));
    EXPECT_LE(p->Residency(), 8u);
    EXPECT_GE(p->Residency(), 7u);
    EXPECT_GE(written_back.size(), 24u);
  }
}

TEST(CapacityTest, DirtyTargetIsAShareOfIt) {
  for (const char* name : {"smq", "lru", "tinylfu"}) {
    SCOPED_TRACE(name);
    for (uint64_t capacity : {64, 25}) {
      auto p = Make(name, 64, {{"dirty_target_percent", "50"}});
      p->Tick(0, true);
      LoadBlocks(*p, 20, /*dirty=*/true);
      p->SetCapacity(capacity);
      // Writeback periods on, the blocks are old.
      for (uint64_t t = 1; t <= 4; ++t) p->Tick(t * 10'001, true);
      Drain(*p, /*idle=*/false);
      EXPECT_EQ(p->Residency(), 20u);
      if (capacity == 64) {
        EXPECT_EQ(p->DirtyCount(), 20u);  // under 32
      } else {
        EXPECT_EQ(p->DirtyCount(), 12u);  // down to half of 25
      }
    }
  }
}

// RandomOperationsKeepInvariants with a capacity that moves: the same
// coherence, and no promotion takes a cblock past Capacity() (counting the
// cblocks of promotions under way; one reserved before the capacity was
// lowered may complete above it - its demotions are queued already).
TEST(CapacityTest, RandomOperationsNeverPromotePastIt) {
  for (const char* name : kAllPolicies) {
    SCOPED_TRACE(name);
    auto p = Make(name, 64);
    std::mt19937 rng(11);
    std::vector<Work> issued;
    uint64_t now = 0;
    auto allocated = [&] {
      return p->Residency() + TrackerOf(*p).Count(WorkOp::kPromote);
    };
    for (int op = 0; op < 20000; ++op) {
      const uint64_t allocated_before = allocated();
      const OBlock o = O(rng() % 300);
      const unsigned choice = rng() % 7;
      if (!RandomWorkOp(*p, rng, choice, o, &issued)) {
        if (choice == 5) {
          if (rng() % 16 == 0) p->SetCapacity(rng() % 80);
        } else {
          p->Tick(now += 100, true);
        }
      }
      ASSERT_NO_FATAL_FAILURE(ExpectCoherent(*p, 64));
      if (allocated() > allocated_before) {
        ASSERT_LE(allocated(), p->Capacity()) << "op " << op;
      }
    }
    // Settled (all work done, none fails): within the capacity.
    for (const Work& w : issued) p->CompleteBackgroundWork(w, true);
    p->SetCapacity(10);
    Drain(*p);
    EXPECT_LE(p->Residency(), 10u);
  }
}

TEST(TinyLfuTest, TheWindowFollowsTheCapacity) {
  TinyLfuPolicy p(PolicyParams{1000, 64 * 1024});
  ASSERT_TRUE(p.SetConfigValue("window_percent", "20").ok());
  ASSERT_TRUE(p.SetConfigValue("adaptive_window", "0").ok());
  p.SetCapacity(500);
  EXPECT_EQ(p.window_target(), 100u);  // fixed: a share of the capacity
  p.SetCapacity(1000);
  EXPECT_EQ(p.window_target(), 200u);
  ASSERT_TRUE(p.SetConfigValue("adaptive_window", "1").ok());
  p.SetCapacity(500);
  EXPECT_EQ(p.window_target(), 200u);  // adaptive: its size, if it fits
  p.SetCapacity(100);
  EXPECT_EQ(p.window_target(), 98u);  // bounded: 100 less the reserve, - 1
  // Loaded into main and window, then squeezed: the window's blocks move
  // on or out like any, and the window fits its target again.
  for (uint64_t i = 0; i < 200; ++i) {
    ASSERT_TRUE(p.LoadMapping(O(i), CBlock(static_cast<uint32_t>(i)), false,
                              i < 100 ? 0 : 1, true)
                    .ok());
  }
  p.SetCapacity(50);
  EXPECT_LE(p.window_target(), 48u);
  DrainWithin(p, 50);
  EXPECT_LE(p.Residency(), 49u);
  EXPECT_LE(p.window_size(), p.window_target());
}

}  // namespace
}  // namespace tierfs::policy
