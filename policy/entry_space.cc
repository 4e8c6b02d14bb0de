#include "policy/entry_space.h"

#include <algorithm>
#include <bit>
#include <functional>

namespace tierfs::policy {

void IList::PushBack(EntrySpace& es, uint32_t i) {
  Entry& e = es[i];
  e.prev = tail;
  e.next = kNullIndex;
  if (tail != kNullIndex) {
    es[tail].next = i;
  } else {
    head = i;
  }
  tail = i;
  if (!e.sentinel) ++size;
}

void IList::PushFront(EntrySpace& es, uint32_t i) {
  Entry& e = es[i];
  e.next = head;
  e.prev = kNullIndex;
  if (head != kNullIndex) {
    es[head].prev = i;
  } else {
    tail = i;
  }
  head = i;
  if (!e.sentinel) ++size;
}

void IList::InsertBefore(EntrySpace& es, uint32_t before, uint32_t i) {
  Entry& b = es[before];
  if (b.prev == kNullIndex) {
    PushFront(es, i);
    return;
  }
  Entry& e = es[i];
  e.prev = b.prev;
  e.next = before;
  es[b.prev].next = i;
  b.prev = i;
  if (!e.sentinel) ++size;
}

void IList::Remove(EntrySpace& es, uint32_t i) {
  Entry& e = es[i];
  if (e.prev != kNullIndex) {
    es[e.prev].next = e.next;
  } else {
    head = e.next;
  }
  if (e.next != kNullIndex) {
    es[e.next].prev = e.prev;
  } else {
    tail = e.prev;
  }
  e.prev = e.next = kNullIndex;
  if (!e.sentinel) --size;
}

uint32_t IList::PopFront(EntrySpace& es) {
  const uint32_t i = head;
  if (i != kNullIndex) Remove(es, i);
  return i;
}

uint32_t IList::PopBack(EntrySpace& es) {
  const uint32_t i = tail;
  if (i != kNullIndex) Remove(es, i);
  return i;
}

EntryAllocator::EntryAllocator(EntrySpace* es, uint32_t begin, uint32_t end)
    : es_(es), begin_(begin), end_(end) {
  for (uint32_t i = begin; i < end; ++i) free_.PushBack(*es_, i);
}

uint32_t EntryAllocator::Alloc() {
  const uint32_t i = free_.PopFront(*es_);
  if (i == kNullIndex) return i;
  (*es_)[i] = Entry{};
  (*es_)[i].allocated = 1;
  ++allocated_;
  return i;
}

bool EntryAllocator::AllocParticular(uint32_t i) {
  if (i < begin_ || i >= end_ || (*es_)[i].allocated) return false;
  free_.Remove(*es_, i);
  (*es_)[i] = Entry{};
  (*es_)[i].allocated = 1;
  ++allocated_;
  return true;
}

void EntryAllocator::Free(uint32_t i) {
  (*es_)[i] = Entry{};
  --allocated_;
  // Recently freed slots go last, so slots are reused round-robin.
  free_.PushBack(*es_, i);
}

HashTable::HashTable(EntrySpace* es, uint32_t nr_entries)
    : es_(es),
      buckets_(std::bit_ceil(std::max<uint32_t>(nr_entries / 4, 16)),
               kNullIndex) {}

size_t HashTable::Bucket(OBlock oblock) const {
  return std::hash<OBlock>{}(oblock) & (buckets_.size() - 1);
}

uint32_t HashTable::Find(OBlock oblock) const {
  for (uint32_t i = buckets_[Bucket(oblock)]; i != kNullIndex;
       i = (*es_)[i].hash_next) {
    if ((*es_)[i].oblock() == oblock) return i;
  }
  return kNullIndex;
}

uint32_t HashTable::Lookup(OBlock oblock) {
  const size_t b = Bucket(oblock);
  uint32_t prev = kNullIndex;
  for (uint32_t i = buckets_[b]; i != kNullIndex; i = (*es_)[i].hash_next) {
    if ((*es_)[i].oblock() == oblock) {
      if (prev != kNullIndex) {
        // Likely to be looked up again soon: move it to the front.
        (*es_)[prev].hash_next = (*es_)[i].hash_next;
        (*es_)[i].hash_next = buckets_[b];
        buckets_[b] = i;
      }
      return i;
    }
    prev = i;
  }
  return kNullIndex;
}

void HashTable::Insert(uint32_t i) {
  const size_t b = Bucket((*es_)[i].oblock());
  (*es_)[i].hash_next = buckets_[b];
  buckets_[b] = i;
}

void HashTable::Remove(uint32_t i) {
  const size_t b = Bucket((*es_)[i].oblock());
  uint32_t* link = &buckets_[b];
  while (*link != kNullIndex) {
    if (*link == i) {
      *link = (*es_)[i].hash_next;
      (*es_)[i].hash_next = kNullIndex;
      return;
    }
    link = &(*es_)[*link].hash_next;
  }
}

}  // namespace tierfs::policy
