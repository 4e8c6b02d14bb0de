// The compact storage under smq (dm-cache's entry_space): every cache
// block, hotspot block and sentinel is an Entry in one array, addressed by
// 32-bit index. Lists and hash chains link entries by index, so a mapped
// cache block costs one 24-byte Entry plus a share of a hash bucket.
#ifndef TIERFS_POLICY_ENTRY_SPACE_H_
#define TIERFS_POLICY_ENTRY_SPACE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/util/ids.h"

namespace tierfs::policy {

inline constexpr uint32_t kNullIndex = UINT32_MAX;
// Entry::index has 48 bits: 2^48 blocks of at least 4 KiB is 1 EiB.
inline constexpr uint64_t kMaxBlockIndex = (uint64_t{1} << 48) - 1;

struct Entry {
  uint64_t index : 48 = 0;  // origin block (or hotspot block) index
  uint64_t level : 6 = 0;
  uint64_t dirty : 1 = 0;
  uint64_t allocated : 1 = 0;
  uint64_t sentinel : 1 = 0;
  uint64_t pending_work : 1 = 0;  // out of its queue: work queued or issued
  uint64_t hit : 1 = 0;           // already requeued this period
  uint64_t mapped : 1 = 0;        // in the hash table
  // Written in this writeback period / the one before (tinylfu): a block
  // being written is not old enough to write back under load.
  uint64_t written : 1 = 0;
  uint64_t written_before : 1 = 0;
  uint32_t volume = 0;
  uint32_t hash_next = kNullIndex;
  uint32_t prev = kNullIndex;
  uint32_t next = kNullIndex;

  OBlock oblock() const { return OBlock{VolumeId(volume), index}; }
  void set_oblock(OBlock o) {
    volume = o.volume.value();
    index = o.index;
  }
};
static_assert(sizeof(Entry) == 24, "Entry must stay 24 bytes");

using EntrySpace = std::vector<Entry>;

// A doubly linked list threaded through Entry::prev/next. `size` counts
// entries that are not sentinels.
struct IList {
  uint32_t head = kNullIndex;
  uint32_t tail = kNullIndex;
  uint32_t size = 0;

  bool empty() const { return head == kNullIndex; }
  void PushBack(EntrySpace& es, uint32_t i);
  void PushFront(EntrySpace& es, uint32_t i);
  // Inserts `i` just before `before` (a member of this list).
  void InsertBefore(EntrySpace& es, uint32_t before, uint32_t i);
  void Remove(EntrySpace& es, uint32_t i);
  uint32_t PopFront(EntrySpace& es);  // kNullIndex if empty
  uint32_t PopBack(EntrySpace& es);   // kNullIndex if empty
};

// Hands out the entries of [begin, end) (dm-cache's entry_alloc); free
// entries are chained on a list.
class EntryAllocator {
 public:
  EntryAllocator(EntrySpace* es, uint32_t begin, uint32_t end);

  // kNullIndex when none is free. The entry comes back reset.
  uint32_t Alloc();
  // False if `i` is out of range or already allocated.
  bool AllocParticular(uint32_t i);
  void Free(uint32_t i);

  bool empty() const { return free_.empty(); }
  uint32_t allocated() const { return allocated_; }
  uint32_t capacity() const { return end_ - begin_; }
  uint32_t begin() const { return begin_; }

 private:
  EntrySpace* es_;
  uint32_t begin_, end_;
  uint32_t allocated_ = 0;
  IList free_;
};

// Chained hash table over entries, keyed by Entry::oblock(), chains linked
// through Entry::hash_next. About one bucket per four entries.
class HashTable {
 public:
  HashTable(EntrySpace* es, uint32_t nr_entries);

  // Moves the found entry to the front of its chain.
  uint32_t Lookup(OBlock oblock);
  uint32_t Find(OBlock oblock) const;
  void Insert(uint32_t i);
  void Remove(uint32_t i);
  size_t MemoryBytes() const { return buckets_.capacity() * sizeof(uint32_t); }

 private:
  size_t Bucket(OBlock oblock) const;

  EntrySpace* es_;
  std::vector<uint32_t> buckets_;
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_ENTRY_SPACE_H_
