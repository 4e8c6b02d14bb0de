// Ghosts: origin blocks recently dropped from the cache, remembered
// without their data so that a policy can tell "dropped too early" from
// "new" when one is missed again (ARC's B1/B2). Two kinds, each a FIFO.
// A ghost is a 31-bit fingerprint of its oblock (whose low bits pick its
// hash bucket) plus list and hash links: 16 bytes, plus about one byte of
// hash buckets. A fingerprint collision (a few in 2^31 per lookup) only
// misleads a policy decision, never a mapping. Pure and deterministic.
#ifndef TIERFS_POLICY_GHOST_SET_H_
#define TIERFS_POLICY_GHOST_SET_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "src/util/ids.h"

namespace tierfs::policy {

class GhostSet {
 public:
  enum Kind : uint32_t { kFirst = 0, kSecond = 1 };

  // REQUIRES: 0 < capacity < 2^32 - 1.
  explicit GhostSet(uint32_t capacity);

  // Remembers `oblock` as the newest ghost of `kind`. When the set is
  // full, the oldest ghost of the other kind goes first (of `kind` if the
  // other has none); callers that bound each kind drop their own first.
  // An oblock already remembered is not added twice.
  void Add(OBlock oblock, Kind kind);
  // Forgets `oblock`'s ghost and returns its kind; nullopt if none.
  std::optional<Kind> Take(OBlock oblock);
  // Forgets the oldest ghost of `kind`, if any.
  void DropOldest(Kind kind);

  uint32_t size(Kind kind) const { return lists_[kind].size; }
  uint32_t size() const { return lists_[0].size + lists_[1].size; }
  uint32_t capacity() const { return capacity_; }
  size_t MemoryBytes() const {
    return nodes_.capacity() * sizeof(Node) +
           buckets_.capacity() * sizeof(uint32_t);
  }

 private:
  static constexpr uint32_t kNull = UINT32_MAX;
  struct Node {
    uint32_t tag;  // fingerprint << 1 | kind
    uint32_t prev, next, hash_next;
  };
  struct List {
    uint32_t head = kNull, tail = kNull, size = 0;  // head: oldest
  };

  static uint32_t Fingerprint(OBlock oblock);
  uint32_t Bucket(uint32_t fingerprint) const {
    return fingerprint & static_cast<uint32_t>(buckets_.size() - 1);
  }
  // The node with `fingerprint` (kNull if none) and, in *link, the slot
  // that points at it (or the end of its chain).
  uint32_t Find(uint32_t fingerprint, uint32_t** link);
  void Unlink(uint32_t i, uint32_t* link);

  const uint32_t capacity_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> buckets_;
  List lists_[2];
  uint32_t free_ = kNull;  // chained through Node::next
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_GHOST_SET_H_
