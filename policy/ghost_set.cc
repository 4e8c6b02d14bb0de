#include "policy/ghost_set.h"

#include <algorithm>
#include <bit>

namespace tierfs::policy {

GhostSet::GhostSet(uint32_t capacity)
    : capacity_(capacity),
      nodes_(capacity),
      buckets_(std::bit_ceil(std::max<uint32_t>(capacity / 4, 16)), kNull) {
  for (uint32_t i = capacity; i-- > 0;) {
    nodes_[i].next = free_;
    free_ = i;
  }
}

uint32_t GhostSet::Fingerprint(OBlock oblock) {
  // splitmix64 of (volume, index), seeded apart from std::hash<OBlock>.
  uint64_t z = oblock.index ^ (uint64_t{oblock.volume.value()} << 48) ^
               0x5851f42d4c957f2dULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return static_cast<uint32_t>((z ^ (z >> 31)) >> 33);
}

uint32_t GhostSet::Find(uint32_t fingerprint, uint32_t** link) {
  *link = &buckets_[Bucket(fingerprint)];
  while (**link != kNull) {
    if (nodes_[**link].tag >> 1 == fingerprint) return **link;
    *link = &nodes_[**link].hash_next;
  }
  return kNull;
}

void GhostSet::Unlink(uint32_t i, uint32_t* link) {
  Node& n = nodes_[i];
  *link = n.hash_next;
  List& l = lists_[n.tag & 1];
  (n.prev == kNull ? l.head : nodes_[n.prev].next) = n.next;
  (n.next == kNull ? l.tail : nodes_[n.next].prev) = n.prev;
  --l.size;
  n.next = free_;
  free_ = i;
}

void GhostSet::Add(OBlock oblock, Kind kind) {
  const uint32_t fp = Fingerprint(oblock);
  uint32_t* link;
  if (Find(fp, &link) != kNull) return;
  if (free_ == kNull) {
    const Kind other = kind == kFirst ? kSecond : kFirst;
    DropOldest(lists_[other].size != 0 ? other : kind);
  }
  const uint32_t i = free_;
  free_ = nodes_[i].next;
  Node& n = nodes_[i];
  n.tag = fp << 1 | kind;
  List& l = lists_[kind];
  n.prev = l.tail;
  n.next = kNull;
  (l.tail == kNull ? l.head : nodes_[l.tail].next) = i;
  l.tail = i;
  ++l.size;
  uint32_t& bucket = buckets_[Bucket(fp)];
  n.hash_next = bucket;
  bucket = i;
}

std::optional<GhostSet::Kind> GhostSet::Take(OBlock oblock) {
  uint32_t* link;
  const uint32_t i = Find(Fingerprint(oblock), &link);
  if (i == kNull) return std::nullopt;
  const Kind kind = static_cast<Kind>(nodes_[i].tag & 1);
  Unlink(i, link);
  return kind;
}

void GhostSet::DropOldest(Kind kind) {
  const uint32_t i = lists_[kind].head;
  if (i == kNull) return;
  uint32_t* link;
  Find(nodes_[i].tag >> 1, &link);  // fingerprints are unique in the set
  Unlink(i, link);
}

}  // namespace tierfs::policy
