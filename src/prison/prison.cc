#include "src/prison/prison.h"

#include <array>
#include <bit>
#include <cassert>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace tierfs::prison {

using internal::Shard;

namespace {

// Keys are unique by (volume, begin): overlapping keys must be identical.
struct KeyHash {
  size_t operator()(const Key& key) const noexcept {
    // begin is spread first (golden ratio) so that neighbouring ranges of
    // one volume land far apart before the mix.
    return static_cast<size_t>(
        MixBits((static_cast<uint64_t>(key.volume.value()) << 40) ^
                (key.begin * 0x9e3779b97f4a7c15ULL)));
  }
};

struct KeyStart {
  bool operator()(const Key& a, const Key& b) const noexcept {
    return a.volume == b.volume && a.begin == b.begin;
  }
};

// Freed cells kept per shard for reuse, so the steady state of Get/Put on
// fresh keys does not allocate; beyond this they go back to the heap.
constexpr size_t kSpareCellsPerShard = 32;

constexpr int kExclusive = -1;

void CheckLevel(int level) {
  assert(level >= 0 && level < kLevelCount && "prison level out of range");
  (void)level;
}

}  // namespace

struct CellState;

// A handle: the cell plus the level of the hold (kExclusive for Lock()).
// Each CellState embeds one per level and one exclusive handle, so Put()
// knows the level it releases without the caller passing it back.
class Cell {
 public:
  CellState* state = nullptr;
  int level = 0;
};

struct CellState {
  explicit CellState(Shard* owner) : shard(owner) {
    for (int level = 0; level < kLevelCount; ++level) {
      shared_handles[level] = Cell{this, level};
    }
    exclusive_handle = Cell{this, kExclusive};
  }
  // Handles point into this object.
  CellState(const CellState&) = delete;
  CellState& operator=(const CellState&) = delete;

  // Shared holders the exclusive level bars. REQUIRES: exclusive.
  uint32_t Barred() const {
    uint32_t n = 0;
    for (int level = 0; level <= exclusive_level; ++level) n += shared[level];
    return n;
  }

  bool Unused() const { return shared_total == 0 && !exclusive; }

  // All fields below are guarded by shard->mu.
  Key key;
  Shard* const shard;
  std::array<uint32_t, kLevelCount> shared{};
  uint32_t shared_total = 0;
  bool exclusive = false;
  int exclusive_level = 0;
  Continuation quiesce;              // pending Quiesce(), if any
  std::vector<Continuation> parked;  // refused Get()s, oldest first
  std::array<Cell, kLevelCount> shared_handles;
  Cell exclusive_handle;
};

// Aligned so that two shards' mutexes never share a cache line.
struct alignas(64) internal::Shard {
  using Table = std::unordered_map<Key, CellState, KeyHash, KeyStart>;

  // Put() must not allocate, including when it returns a cell to the pool.
  Shard() { spare.reserve(kSpareCellsPerShard); }

  // REQUIRES: mu held.
  CellState& FindOrInsert(const Key& key) {
    assert(key.begin < key.end && "empty prison key");
    auto it = cells.find(key);
    if (it != cells.end()) {
      assert(it->second.key.end == key.end &&
             "overlapping prison keys must be identical");
      return it->second;
    }
    CellState* cell;
    if (!spare.empty()) {
      Table::node_type node = std::move(spare.back());
      spare.pop_back();
      node.key() = key;
      cell = &cells.insert(std::move(node)).position->second;
    } else {
      cell = &cells.try_emplace(key, this).first->second;
    }
    cell->key = key;
    return *cell;
  }

  // REQUIRES: mu held; cell.Unused().
  void Free(CellState& cell) {
    assert(cell.Unused() && !cell.quiesce && cell.parked.empty());
    Table::node_type node = cells.extract(cell.key);
    assert(!node.empty());
    if (spare.size() < kSpareCellsPerShard) spare.push_back(std::move(node));
  }

  mutable std::mutex mu;
  Table cells;                          // guarded by mu
  std::vector<Table::node_type> spare;  // guarded by mu
};

Prison::Prison(size_t shard_count) {
  const size_t n = std::bit_ceil(shard_count == 0 ? size_t{1} : shard_count);
  shards_ = std::make_unique<internal::Shard[]>(n);
  shard_mask_ = n - 1;
}

Prison::~Prison() = default;

Shard& Prison::ShardFor(const Key& key) {
  // The table hashes the same value modulo its bucket count; take the shard
  // from the high bits so the two stay independent.
  return shards_[(KeyHash{}(key) >> 40) & shard_mask_];
}

Cell* Prison::Get(const Key& key, int level, Continuation& retry) {
  CheckLevel(level);
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  CellState& cell = shard.FindOrInsert(key);
  if (cell.exclusive && cell.exclusive_level >= level) {
    assert(retry && "Get() refused a hold without a continuation to park");
    cell.parked.push_back(std::move(retry));
    return nullptr;
  }
  ++cell.shared[level];
  ++cell.shared_total;
  return &cell.shared_handles[level];
}

Cell* Prison::TryGet(const Key& key, int level) {
  CheckLevel(level);
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  CellState& cell = shard.FindOrInsert(key);
  if (cell.exclusive && cell.exclusive_level >= level) return nullptr;
  ++cell.shared[level];
  ++cell.shared_total;
  return &cell.shared_handles[level];
}

void Prison::Put(Cell* handle) {
  assert(handle != nullptr && handle->level != kExclusive &&
         "Put() takes a handle from Get()");
  CellState& cell = *handle->state;
  Continuation quiesced;
  {
    std::lock_guard<std::mutex> lock(cell.shard->mu);
    assert(cell.shared[handle->level] > 0 && "Put() without a Get()");
    --cell.shared[handle->level];
    --cell.shared_total;
    if (cell.exclusive) {
      if (cell.quiesce && handle->level <= cell.exclusive_level &&
          cell.Barred() == 0) {
        quiesced = std::exchange(cell.quiesce, nullptr);
      }
    } else if (cell.shared_total == 0) {
      cell.shard->Free(cell);
    }
  }
  if (quiesced) quiesced();
}

LockResult Prison::Lock(const Key& key, int level) {
  CheckLevel(level);
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  CellState& cell = shard.FindOrInsert(key);
  if (cell.exclusive) return LockResult{nullptr, LockStatus::kBusy};
  cell.exclusive = true;
  cell.exclusive_level = level;
  return LockResult{&cell.exclusive_handle,
                    cell.Barred() > 0 ? LockStatus::kLockedNeedsQuiesce
                                      : LockStatus::kLocked};
}

void Prison::Quiesce(Cell* handle, Continuation done) {
  assert(handle != nullptr && handle->level == kExclusive &&
         "Quiesce() takes the handle from Lock()");
  assert(done);
  CellState& cell = *handle->state;
  {
    std::lock_guard<std::mutex> lock(cell.shard->mu);
    assert(cell.exclusive && !cell.quiesce && "Quiesce() already pending");
    if (cell.Barred() > 0) {
      cell.quiesce = std::move(done);
      return;
    }
  }
  done();
}

bool Prison::Promote(Cell* handle, int new_level) {
  assert(handle != nullptr && handle->level == kExclusive &&
         "Promote() takes the handle from Lock()");
  CheckLevel(new_level);
  CellState& cell = *handle->state;
  std::lock_guard<std::mutex> lock(cell.shard->mu);
  assert(cell.exclusive && !cell.quiesce &&
         "Promote() while a Quiesce() is pending");
  cell.exclusive_level = new_level;
  return cell.Barred() > 0;
}

std::vector<Continuation> Prison::Unlock(Cell* handle) {
  assert(handle != nullptr && handle->level == kExclusive &&
         "Unlock() takes the handle from Lock()");
  CellState& cell = *handle->state;
  std::lock_guard<std::mutex> lock(cell.shard->mu);
  assert(cell.exclusive && !cell.quiesce &&
         "Unlock() while a Quiesce() is pending");
  std::vector<Continuation> parked = std::exchange(cell.parked, {});
  cell.exclusive = false;
  if (cell.shared_total == 0) cell.shard->Free(cell);
  return parked;
}

size_t Prison::CellCount() const {
  size_t n = 0;
  for (size_t i = 0; i <= shard_mask_; ++i) {
    std::lock_guard<std::mutex> lock(shards_[i].mu);
    n += shards_[i].cells.size();
  }
  return n;
}

}  // namespace tierfs::prison
