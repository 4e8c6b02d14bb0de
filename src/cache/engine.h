// The cache engine: routes every read and write of a volume to the cache
// store (SSD copy) or the origin (HDD file), and runs promotions, demotions
// and writebacks on a thread pool. The policy decides; the engine executes.
//
// Foreground IO runs in the caller's thread. A block held by a migration
// parks the request in the prison; the request is resumed on the engine's
// resume pool when the migration unlocks (never queued behind migrations,
// which may wait long on a slow origin), and its completion callback runs
// there.
// No caller thread sleeps on a block lock, except a write whose cache copy
// failed (DropFailedCopy) and a write to a file whose truncate could not
// sync the origin (SettleTruncate): error paths. In passthrough mode no block
// is mapped: each request goes to the origin whole, unsplit.
//
// THE LOCK DISCIPLINE (the kernel dm-cache's; check code against it):
//  1. A block's mapping (cblock <-> oblock) changes only while that
//     block's prison cell is held exclusively, under policy_mu_. One
//     exception: a mode switch, which runs with no request and no
//     migration in flight at all (the IO gate is closed, migrations
//     drained). (A write whose cache copy failed drops the mapping too,
//     after letting go of its shared hold, under the block's exclusive
//     cell: DropFailedCopy.) The dirty bit is set by writes under their
//     shared level-0 hold; work that needs it stable locks level 0
//     exclusively, which waits for writes. This is what lets a read hit
//     look its block up in index_ without policy_mu_: every change goes to
//     the policy and index_ in one policy_mu_ section, and the read's
//     shared cell keeps the block's mapping as it found it.
//  2. A migration holds its block's cell from before it reads its source
//     until its mapping change is committed (durable where the durability
//     rules below need it). A writeback holds it exclusively (level 0)
//     while it copies the cache block, then only shared at the reads' level
//     while it writes the origin: writes go on (on an HDD origin they would
//     wait milliseconds), range operations and demotions still wait. It
//     records the block clean only if no write hit came after its copy
//     (write_hits_, counted under policy_mu_).
//  3. Every operation that changes what a block holds takes the block's
//     cell: writes a shared hold at level 0; discard, punch, truncate,
//     invalidate and forget the exclusive cell of every *mapped* block of
//     their range (LockBlocksForResize). Unmapped blocks of the range are
//     covered by the volume's range generation (mapping_index.h): work that
//     read the origin while a range operation ran never installs a mapping.
//  4. Issued work re-checks once it holds its cell: the same cblock <->
//     oblock pair (demotion, writeback), still dirty (writeback), still
//     inside the file, the volume still alive and cacheable, the mode still
//     allows it. Otherwise it completes as aborted and records nothing.
//  5. Durability order (DESIGN.md "Durability contract"): the clean->dirty
//     record is durable before the cache copy changes; a new dirty mapping
//     (overwrite) is written to the journal before its write returns (kill
//     -9 keeps it) and durable before a read returns its data or an fsync
//     returns (a power loss may drop a write never fsynced, never one read
//     back); a new clean mapping
//     (promotion) may be served before it is durable (its copy equals the
//     origin, the cache data is synced before any commit that carries it,
//     and every later record of the block follows it in the journal); a
//     dropped clean mapping is durable before
//     the origin is written past it; a dropped dirty mapping only after the
//     origin change that supersedes it (punch, truncate) is durable; a freed
//     cblock takes new data only once its unmap is durable.
// Lock order: admin_mu_, volumes_mu_, Volume::mu_, policy_mu_, the metadata
// store's own lock. index_'s and hits_'s own locks are leaves: taken alone
// or under policy_mu_, nothing is taken under them. Prison cells are never
// waited for under any of them.
//
// Thread-safety: all public methods are thread-safe.
#ifndef TIERFS_SRC_CACHE_ENGINE_H_
#define TIERFS_SRC_CACHE_ENGINE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meta/store.h"
#include "meta/volumes.h"
#include "policy/policy.h"
#include "src/cache/hit_log.h"
#include "src/cache/io_gate.h"
#include "src/cache/mapping_index.h"
#include "src/cache/stats.h"
#include "src/cache/store_health.h"
#include "src/cache/volume.h"
#include "src/io/file.h"
#include "src/util/geometry.h"
#include "src/util/ids.h"
#include "src/util/result.h"
#include "src/util/unique_function.h"

namespace tierfs::prison {
class Prison;
}

namespace tierfs::cache {

class WorkerPool;

enum class Mode { kWriteback, kWritethrough, kPassthrough };
std::optional<Mode> ParseMode(std::string_view name);
const char* ModeName(Mode mode);

struct EngineOptions {
  uint64_t block_size = 64 * 1024;  // power of two, 4 KiB .. 2 MiB
  uint64_t cache_blocks = 0;
  // A thin cache (thin.cc): more cblocks than it may fill. Its blocks may
  // hold as many sectors as budget_blocks whole blocks; a read miss caches
  // only the sectors it reads, and the policy keeps as many blocks as the
  // budget allows at their current fill. 0: every cblock may be whole.
  uint64_t budget_blocks = 0;
  Mode mode = Mode::kWriteback;
  std::string policy = "tinylfu";
  policy::ConfigValues policy_config;
  // Bytes of migrations (promotions, demotions, writebacks) in flight.
  uint64_t migration_threshold = 16ull << 20;
  unsigned migration_threads = 4;
  // Period of the policy's clock and of the idle check.
  std::chrono::milliseconds tick{100};
  // Persistent metadata (journal + checkpoints); none: the cache starts
  // cold and forgets everything at exit (unit tests).
  std::shared_ptr<meta::MetaStore> metadata;
  // Serve reads only (damaged metadata): no writes, no migrations.
  bool read_only = false;
};

struct VolumeInfo {
  VolumeId id;
  std::string name;
  uint64_t size = 0, cached_blocks = 0, dirty_blocks = 0;
  uint64_t read_hits = 0, read_misses = 0, write_hits = 0, write_misses = 0;
  uint64_t bypassed = 0, bytes_read = 0, bytes_written = 0;
  int opens = 0;
};

struct EngineSnapshot {
  uint64_t block_size = 0, cache_blocks = 0, used_blocks = 0, dirty_blocks = 0;
  uint64_t read_hits = 0, read_misses = 0, write_hits = 0, write_misses = 0;
  uint64_t promotions = 0, demotions = 0, writebacks = 0, overwrites = 0;
  uint64_t promotions_on_read = 0;
  // Cached blocks holding only some sectors (the origin has the rest), and
  // how many such blocks reads made whole.
  uint64_t partial_blocks = 0, sector_fills = 0;
  // The sectors cached blocks hold, in bytes; a thin cache's budget (bytes)
  // and the blocks its policy may keep now (0 for other caches).
  uint64_t held_bytes = 0, budget_bytes = 0, capacity_blocks = 0;
  // Promotions the policy decided and dropped (policy.h DroppedPromotions).
  uint64_t promotions_dropped = 0;
  uint64_t bypassed = 0, migration_failures = 0, migration_aborts = 0,
           cache_errors = 0, origin_errors = 0, hole_skips = 0;
  uint64_t policy_lock_waits = 0;
  bool read_only = false;
  std::string read_only_reason;
  bool persistent = false;
  meta::MetaStore::Stats metadata;
  uint64_t migrations_in_flight = 0, migration_bytes_in_flight = 0;
  uint64_t read_p50_us = 0, read_p99_us = 0, read_p999_us = 0;
  uint64_t write_p50_us = 0, write_p99_us = 0, write_p999_us = 0;
  Mode mode = Mode::kWriteback;
  std::string policy;
  policy::ConfigValues policy_config;
  uint64_t migration_threshold = 0;
  bool cache_direct_io = true;
  double writeback_rate = 0;  // blocks per second, recent average
  bool migrations_allowed = true;
  // Why background work is failing (empty if it never did since the mount)
  // and for how long it pauses after each failure (0 when healthy).
  std::string cache_last_error, origin_last_error;
  bool cache_failing = false, origin_failing = false;
  uint64_t migration_backoff_ms = 0;
};

class CacheEngine {
 public:
  using ReadDone = UniqueFunction<void(Result<std::span<const std::byte>>)>;
  using Done = UniqueFunction<void(Status)>;

  // `cache_store` must be at least cache_blocks * block_size bytes.
  // On failure returns an error and sets *error_message.
  static Result<std::unique_ptr<CacheEngine>> Create(
      const EngineOptions& options, std::unique_ptr<io::File> cache_store,
      std::string* error_message);
  // An engine without a cache (tierfs mount --no-cache): passthrough for
  // good, so every file still takes the one engine path. SetMode refuses.
  static std::unique_ptr<CacheEngine> CreateUncached();
  ~CacheEngine();  // Shutdown()

  // Returns the volume for origin file (dev, ino), creating it on first use.
  // Each OpenVolume is matched by one CloseVolume. `origin` becomes the
  // volume's origin handle if it has none or only a read-only one and
  // `writable` is true. `name` (the path in the slow dir, for display) is
  // refreshed every open.
  std::shared_ptr<Volume> OpenVolume(uint64_t dev, uint64_t ino,
                                     std::shared_ptr<io::File> origin,
                                     bool writable, std::string name = {});
  // `unlinked`: the origin file has no names left, so when the last opener
  // closes, its cached blocks (dirty or not) are dropped. Otherwise a volume
  // with cached blocks stays known; one without is forgotten.
  void CloseVolume(const std::shared_ptr<Volume>& volume, bool unlinked);
  // Looks a volume up without opening it (nullptr if unknown).
  std::shared_ptr<Volume> FindVolume(uint64_t dev, uint64_t ino);
  // The origin (dev, ino) lost its last name (unlink, rename over it).
  // Returns once the volume's blocks are dropped durably, so a crash never
  // leaves cached blocks of a file that no longer exists: the next mount
  // needs no flag. A volume still open keeps working uncached; its dirty
  // blocks are written back to the (unlinked) origin first, since openers
  // can still read them.
  Status ForgetVolume(uint64_t dev, uint64_t ino);
  // fallocate(mode 0) on the origin; the file may grow.
  Status Allocate(Volume& volume, uint64_t offset, uint64_t length);

  // Reads `size` bytes at `offset` (short at end of file). `done` runs
  // exactly once, possibly before Read returns.
  void Read(const std::shared_ptr<Volume>& volume, uint64_t offset, size_t size,
            ReadDone done);
  // Writes `data` at `offset`. `data` need only stay valid until Write
  // returns. `done` runs exactly once, possibly before Write returns.
  void Write(const std::shared_ptr<Volume>& volume, uint64_t offset,
             std::span<const std::byte> data, Done done);
  // Makes every completed write, truncate, punch and allocation of the
  // volume durable.
  Status Fsync(Volume& volume);
  // Size changes go to the origin synchronously; cached blocks past the new
  // end are dropped (dirty data inside the new size is written back first).
  Status Truncate(Volume& volume, uint64_t new_size);
  // Discards a range (punch, keeping the size): mappings of whole blocks
  // inside it are dropped, the origin range is punched; partial blocks are
  // zeroed through the cache. Nothing past the end of the file changes.
  Status Discard(const std::shared_ptr<Volume>& volume, uint64_t offset,
                 uint64_t length);

  // SEEK_DATA (data=true) / SEEK_HOLE over the origin, counting cached
  // blocks as data (a dirty block may sit over an origin hole). Returns the
  // file size where the origin has no more data / holes.
  Result<uint64_t> Seek(Volume& volume, uint64_t offset, bool data);

  // Switching to passthrough requires a clean cache (EBUSY otherwise); it
  // drops all mappings so the origin is the only copy. An uncached engine
  // stays in passthrough (EINVAL).
  Status SetMode(Mode mode);
  Mode mode() const { return mode_.load(std::memory_order_acquire); }
  void SetMigrationThreshold(uint64_t bytes);
  Status SetPolicyConfig(std::string_view key, std::string_view value);
  // Replaces the policy at run time (e.g. "cleaner" to decommission),
  // keeping every mapping and dirty bit. Waits for in-flight migrations.
  Status SwitchPolicy(std::string_view name, std::string* error_message);
  void AllowMigrations(bool allow);

  // Writes back every dirty block; returns once none is left, or ETIMEDOUT.
  Status Flush(std::chrono::milliseconds timeout);
  // Stops migrations and waits for those in flight; IO still works after.
  void Shutdown();
  // Clean unmount: Shutdown, then records every volume's current size and
  // mtime and writes the final checkpoint with hints and CLEAN_SHUTDOWN.
  // Dirty blocks stay dirty (and cached) for the next mount.
  Status CloseCleanly();

  // Start-up from persistent metadata, before any IO: registers the
  // volumes (with their recorded ids) and loads `mappings` into the policy.
  // Mappings must name volumes in `volumes`.
  Status Restore(std::vector<meta::ResolvedVolume> volumes,
                 const std::vector<meta::MappingRecord>& mappings,
                 bool hints_valid, std::string_view hints_policy);
  // A thin cache, once the mappings Restore loaded are durable: gives back
  // the space of every cblock not mapped (a crash may have left data in
  // slots whose frees were not punched yet). Best effort.
  void ReclaimUnmappedSlots();
  // The held-sector counter and a recount from scratch, taken together
  // (they are equal unless the bookkeeping is wrong; for tests).
  std::pair<uint64_t, uint64_t> HeldSectors() const;

  EngineSnapshot Snapshot() const;
  std::vector<VolumeInfo> Volumes();
  // Drops the clean mappings of one volume (or of all, when `name` is
  // empty); dirty blocks stay. Returns the number dropped, or ENOENT.
  Result<uint64_t> InvalidateClean(std::string_view name);
  uint64_t block_size() const { return options_.block_size; }

 private:
  struct Request;
  struct Migration;

  // Writes ask level 0, reads level 1 (DESIGN.md "Locking"): a promotion's
  // level-0 lock stops writes while reads of the origin continue.
  static constexpr int kWriteLevel = 0;
  static constexpr int kReadLevel = 1;
  static constexpr unsigned kResumeThreads = 4;

  CacheEngine(const EngineOptions& options, std::unique_ptr<io::File> cache,
              std::unique_ptr<policy::Policy> policy, bool uncached = false);

  // The IO path (io_path.cc).
  // Enters the IO gate for a passthrough request; false (not entered) in
  // any other mode or while a mode switch is under way.
  bool EnterPassthrough();
  void Process(Request* req);
  enum class Step { kDone, kParked, kFailed };
  Step ReadBlock(Request* req, uint64_t index, uint64_t in_block, size_t len);
  Step WriteBlock(Request* req, uint64_t index, uint64_t in_block, size_t len);
  // Writes a hit in writethrough mode, or one whose block was dirty
  // before; see the definition. REQUIRES: the block's shared cell held.
  std::error_code WriteHit(Volume& volume, uint64_t index, uint64_t in_block,
                           std::span<const std::byte> src, CBlock cblock,
                           Mode mode, bool was_dirty, bool writethrough_dirty,
                           uint64_t dirty_seq, bool* copy_failed);
  // After WriteHit set `copy_failed` (the cache copy of a block that was
  // clean, or is written through, failed to take the write), with the
  // block's cell no longer held: waits (this thread sleeps) until no IO or
  // migration holds the block, then drops the copy durably and writes
  // `src` to the origin. If another write hit the block since this one
  // (`write_hits` = its count, ours included), its bytes may be in the copy
  // alone: the copy stays and this fails with EIO, as it does if migrations
  // gave the block another copy meanwhile.
  std::error_code DropFailedCopy(Volume& volume, uint64_t index, CBlock cblock,
                                 uint32_t write_hits, uint64_t in_block,
                                 std::span<const std::byte> src);
  // Returns true if done, false if contended (the caller takes the normal
  // path), or an error (the request is not finished yet).
  // A write miss that covers whole sectors (in writeback mode): its bytes
  // go into the fresh cblock of `work`, without reading the origin block.
  Result<bool> TryOverwrite(Request* req, uint64_t index, uint64_t in_block,
                            size_t len, const policy::Work& work,
                            uint64_t generation);
  // Installs an overwrite's mapping if nothing invalidated it meanwhile.
  // Returns whether it did, and in *seq the record to wait for.
  // `invalid`: the sectors the write did not cover.
  bool CompleteOverwrite(Volume& volume, const policy::Work& work, bool success,
                         uint64_t generation, uint16_t invalid, uint64_t* seq);
  // Sub-block validity (partial_blocks.cc): a cblock may hold only some
  // sectors of its block (invalid_); the origin has the others.
  // How a write hit splits over a block whose sectors `invalid` the cache
  // does not hold: the head and tail that fall in invalid sectors the write
  // does not cover wholly go to the origin; the middle goes to the cache,
  // and the invalid sectors it covers (`taken`) become valid.
  struct WriteSplit {
    size_t head = 0, mid = 0, tail = 0;
    uint16_t taken = 0;
  };
  WriteSplit SplitWrite(uint16_t invalid, uint64_t in_block, size_t len) const;
  // Records that `cblock` holds sectors `taken` too (their data is in the
  // cache) and waits until the record is written. Were the mapping gone
  // (nothing drops one while the cell is held; the safe answer is kept),
  // `mid` would go to the origin at block offset `mid_at` instead.
  // REQUIRES: the block's write cell held.
  std::error_code TakeSectors(Volume& volume, uint64_t index, CBlock cblock,
                              uint16_t taken, uint64_t mid_at,
                              std::span<const std::byte> mid);
  // A read hit on a block the cache holds only part of (`invalid` sectors
  // missing). Fills the block from one origin read when nothing else holds
  // it; otherwise reads the origin and lays the cache's sectors over it.
  // Returns the bytes read into `dest`. *dirty: the block's dirty bit as
  // the caller looked it up; on return, as of the bytes returned (a fill
  // reads it again), for the caller's durability wait.
  // REQUIRES: the block's read cell held.
  Result<size_t> ReadPartial(Volume& volume, uint64_t index, uint64_t in_block,
                             std::span<std::byte> dest, CBlock cblock,
                             uint16_t invalid, bool* dirty);
  // Writes foreground data to the origin, counting errors and syncs.
  std::error_code WriteOrigin(Volume& volume, uint64_t offset,
                              std::span<const std::byte> data);
  void Park(Request* req);
  void Resume(Request* req);
  void Finish(Request* req, std::error_code ec);
  void CountIo(Volume& volume, Counter VolumeCounters::*counter);
  // Counts the blocks of a passthrough request as bypassed and as `miss`.
  void CountPassthrough(Volume& volume, uint64_t offset, size_t size,
                        Counter VolumeCounters::*miss);
  // Records that the origin grew to at least `size`.
  void GrowTo(Volume& volume, uint64_t size);

  // Block `index` of `volume` lies wholly below its end (the partial tail
  // block and those past the end do not).
  bool WholeBlock(const Volume& volume, uint64_t index) const {
    return (index + 1) * options_.block_size <= volume.size();
  }
  // Stable while the caller holds the block's cell and is inside the gate.
  bool Cacheable(const Volume& volume, uint64_t index) const;

  // Mapping changes; each REQUIRES policy_mu_, keeps index_ in step with the
  // policy, and returns the record's sequence (0 without metadata).
  uint64_t Unmap(CBlock cblock);
  uint64_t MarkDirty(CBlock cblock);
  // Re-reads oblock's mapping from the policy (and its sector mask) into
  // index_. Call it after every change of either.
  void Reindex(OBlock oblock);
  // Waits until record `seq` is durable; on failure the engine goes
  // read-only. REQUIRES: policy_mu_ not held.
  std::error_code Durable(uint64_t seq);
  // The same for record `seq` written to the journal, not yet synced (it
  // survives kill -9, not a power loss).
  std::error_code Written(uint64_t seq);
  std::error_code WaitForRecord(uint64_t seq, bool durable);
  std::error_code AllDurable();
  // A cblock the policy handed out may still be named by the record that
  // freed it, not durable yet; new data may go into it only after that.
  // (Free cblocks are reused oldest first: rarely a wait.)
  std::error_code FreedSlotDurable(CBlock cblock);

  // Thin caches and the count of held sectors (thin.cc).
  bool thin() const { return options_.budget_blocks != 0; }
  // The sector bookkeeping of a mapping: made with `invalid`, its mask
  // shrunk to `invalid`, dropped. Each REQUIRES policy_mu_.
  void HoldSectors(CBlock cblock, uint16_t invalid);
  void ShrinkInvalid(CBlock cblock, uint16_t invalid);
  void ReleaseSectors(CBlock cblock);
  // A thin cache: tells the policy how many blocks the budget allows at
  // the blocks' current fill. REQUIRES: policy_mu_.
  void UpdateCapacity();
  // A thin cache: cblock was freed by record `seq` (0: none); its space is
  // given back once that record is durable. REQUIRES: policy_mu_.
  void SlotFreed(CBlock cblock, uint64_t seq);
  // Punches the freed slots whose record is durable (all of them with
  // `wait`, waiting first). REQUIRES: policy_mu_ not held.
  void PunchFreedSlots();
  // Punches cblock's slot if it was freed and not punched yet. Its freeing
  // record is durable. REQUIRES: punch_mu_.
  void PunchSlotLocked(uint32_t cblock);
  // Punches `count` slots from `first`; warns once if the store cannot.
  // REQUIRES: punch_mu_.
  void PunchLocked(uint64_t first, uint64_t count);
  void EnterReadOnly(const std::string& reason);
  void TakeCheckpoint(meta::Checkpoint* cp,
                      const std::function<void()>& capture);
  meta::VolumeRecord VolumeRecordOf(const Volume& volume);
  uint64_t CacheOffset(CBlock cblock) const {
    return static_cast<uint64_t>(cblock.value()) * options_.block_size;
  }
  std::shared_ptr<Volume> VolumeById(VolumeId id);
  void Dispatch(std::vector<UniqueFunction<void()>> continuations);
  void MarkIo();
  // policy_mu_ for one block's lookup, counting the times it was taken;
  // the policy hears of the hits logged before it first.
  std::unique_lock<std::mutex> LockPolicyForIo();
  // Hands the logged read hits (or one hit) to the policy.
  // REQUIRES: policy_mu_.
  void AccountHits();
  void AccountHit(const HitLog::Hit& hit);
  // Drops a closed volume's origin handle when nothing needs it; forgets
  // the oldest closed volumes with nothing cached beyond kMaxIdleVolumes.
  void MaybeRelease(const std::shared_ptr<Volume>& volume);
  // REQUIRES: volumes_mu_.
  void EraseVolumeLocked(const std::shared_ptr<Volume>& volume);
  static constexpr size_t kMaxIdleVolumes = 1024;

  // Range operations (range_ops.cc).
  // Takes exclusive level-1 locks on `indices` of a volume, waiting (this
  // thread sleeps) while migrations or IO hold them. Used by the rare
  // range operations and by a write whose cache copy failed, never on the
  // way of ordinary reads and writes.
  std::vector<void*> LockBlocksForResize(VolumeId volume,
                                         const std::vector<uint64_t>& indices);
  void UnlockBlocks(std::vector<void*> cells);
  // Drops the mappings of blocks [first, end) of `volume` around
  // `change_origin` (a truncate or punch of the origin, given the range's
  // dirty blocks), in the crash order of range_ops.cc: clean copies go
  // durably before the origin changes, dirty ones only after the change is
  // durable. REQUIRES: admin_mu_ shared.
  Status DropRange(
      Volume& volume, uint64_t first, uint64_t end,
      const std::function<Status(
          const std::vector<MappingIndex::Block>& dirty)>& change_origin);
  // Write without settling a truncate first (Discard settles before it takes
  // admin_mu_, and its edge writes run under it).
  void WriteSettled(const std::shared_ptr<Volume>& volume, uint64_t offset,
                    std::span<const std::byte> data, Done done);
  // Truncate's work. REQUIRES: admin_mu_ shared.
  Status TruncateTo(Volume& volume, uint64_t new_size);
  // Finishes a truncate whose origin sync failed (Volume::
  // truncate_unsettled_): its dirty copies past the end stay mapped, since
  // their unmaps must not be durable before the truncate is, until this
  // truncates to the same size again and the origin sync succeeds. Every
  // operation that could reach them (a write, which may grow the file or
  // write the tail block that the truncate copied to the origin; a grow;
  // a flush or fsync, which would wait for them) calls this first. Not
  // covered: a write already past that check while the truncate fails (it
  // may grow the file over the copies); the kernel's inode lock keeps
  // writes and truncates of one FUSE file apart, so only a direct caller
  // of both at once could get there. REQUIRES: admin_mu_ not held.
  Status SettleTruncate(Volume& volume);
  // Drops every mapping of `volume` (durably), writing dirty blocks back
  // first if `keep_dirty`. REQUIRES: admin_mu_ shared.
  Status DropVolumeBlocks(Volume& volume, bool keep_dirty);
  // Copies the first `length` bytes of a cached block to the origin (the
  // sectors the cache holds). REQUIRES: the block's exclusive cell held.
  Status CopyToOrigin(Volume& volume, uint64_t index, CBlock cblock,
                      size_t length);

  // Migrations (migration.cc).
  void KickMigrations();
  void PullWork();
  void StartMigration(const policy::Work& work, std::shared_ptr<Volume> volume);
  void RunPromotion(std::shared_ptr<Migration> m);
  // A read miss whose promotion the policy handed out at lookup (counted in
  // flight by the caller): one origin read of the whole block answers the
  // read (`in_block`.. into `dest`) and fills the cache, whose write and
  // commit go on on the pool. Returns the bytes copied into `dest`, nothing
  // when the block is contended or not worth it (the work is given back;
  // the caller takes the ordinary path), or the origin's error.
  Result<std::optional<size_t>> PromoteOnRead(std::shared_ptr<Volume> volume,
                                              const policy::Work& work,
                                              uint64_t in_block,
                                              std::span<std::byte> dest);
  // A promotion's first half, under its level-0 cell: re-check, skip holes,
  // read the whole block into m.buffer. Returns the bytes read (short:
  // m.aborted set), nothing if not worth it (m.aborted set), or the origin's
  // error (m.error set).
  Result<std::optional<size_t>> ReadPromotionSource(Migration& m);
  // A promotion's second half: the origin block read, the cache filled and
  // the mapping committed.
  void InstallPromotion(std::shared_ptr<Migration> m);
  // Whether a migration may start now (not shut down, allowed, no store
  // backoff). REQUIRES: policy_mu_ (with PullWork's accounting).
  bool MigrationsMayStart();
  void RunDemotion(std::shared_ptr<Migration> m);
  void RunWriteback(std::shared_ptr<Migration> m);
  // Re-checks issued work under its cell (discipline point 4).
  bool StillValid(Migration& m);
  void FinishMigration(std::shared_ptr<Migration> m, bool success);
  void OnTick();
  // Stops migrations and waits for those in flight; returns whether they
  // were allowed before.
  bool DrainMigrations();

  const EngineOptions options_;
  const bool uncached_;
  std::unique_ptr<io::File> cache_;  // null when uncached_
  std::unique_ptr<prison::Prison> prison_;
  std::atomic<Mode> mode_;
  IoGate gate_;
  // Range operations hold it shared; mode and policy switches exclusive.
  std::shared_mutex admin_mu_;

  mutable std::mutex policy_mu_;
  std::unique_ptr<policy::Policy> policy_;  // guarded by policy_mu_
  // Dropped promotions of the policies switched away from.
  uint64_t dropped_before_switch_ = 0;  // guarded by policy_mu_
  // Changed under policy_mu_; read hits read it without (it has its own
  // lock), holding their block's cell.
  MappingIndex index_;
  HitLog hits_;  // read hits found in index_, for the policy
  // A logged hit made the policy queue work (none of the built-in
  // policies does): the tick starts it.
  std::atomic<bool> hits_queued_work_{false};
  // Writethrough write hits in flight per cblock that they marked dirty:
  // the block is clean again once the last of them wrote both copies.
  std::map<uint32_t, int> writethrough_writers_;  // guarded by policy_mu_
  // Write hits per cblock (wrapping): a writeback that copied the block
  // marks it clean only if no write came after its copy.
  std::vector<uint32_t> write_hits_;  // guarded by policy_mu_
  // Per cblock, the sectors of its block the cache does not hold (0: all
  // held). Set when a mapping is made; then only cleared, by writes under
  // their shared level-0 hold and by read fills under the exclusive one,
  // so work that locks level 0 sees it stable.
  std::vector<uint16_t> invalid_;  // guarded by policy_mu_
  const Sectors sectors_;
  // Sectors held by the mapped cblocks (held_sectors_ == the sum over
  // them of the sectors invalid_ does not name).
  uint64_t held_sectors_ = 0;  // guarded by policy_mu_
  // Thin caches: per cblock, the sequence of the record that freed it
  // while its slot still takes space (kNotFreed: punched or mapped), and
  // the cblocks that may be such. New data goes into a slot only after
  // PunchSlotLocked (FreedSlotDurable), so a punch never hits it.
  static constexpr uint64_t kNotFreed = UINT64_MAX;
  std::mutex punch_mu_;
  std::vector<uint64_t> freed_seq_;    // guarded by punch_mu_
  std::vector<uint32_t> punch_queue_;  // guarded by punch_mu_
  bool punch_failed_ = false;          // guarded by punch_mu_

  std::mutex volumes_mu_;
  std::map<std::pair<uint64_t, uint64_t>, std::shared_ptr<Volume>>
      volumes_;                                        // guarded by volumes_mu_
  std::map<uint32_t, std::shared_ptr<Volume>> by_id_;  // guarded by volumes_mu_
  uint32_t next_volume_id_ = 1;                        // guarded by volumes_mu_
  // Closed volumes, oldest first, to forget once nothing is cached.
  std::deque<std::shared_ptr<Volume>> idle_;  // guarded by volumes_mu_

  meta::MetaStore* const meta_;  // options_.metadata, may be null
  std::atomic<bool> read_only_;
  std::string read_only_reason_;  // guarded by policy_mu_
  std::atomic<bool> meta_job_scheduled_{false};

  SyncTracker cache_sync_;
  std::atomic<uint64_t> last_io_ms_{0};
  std::atomic<bool> flushing_{false};
  std::atomic<bool> migrations_allowed_{true};
  std::atomic<uint64_t> migration_threshold_;
  std::atomic<uint64_t> in_flight_bytes_{0};
  std::atomic<uint64_t> in_flight_{0};  // changed under policy_mu_ upwards
  std::atomic<bool> pull_scheduled_{false};
  std::atomic<bool> shut_down_{false};
  std::mutex drain_mu_;
  std::condition_variable drain_cv_;

  EngineCounters counters_;
  StoreHealth cache_health_{"cache",
                            "promotions stop and IO is served from the origin"};
  StoreHealth origin_health_{
      "origin", "dirty blocks stay in the cache until writeback succeeds"};
  MigrationBackoff backoff_;
  int overwrites_pending_ = 0;         // guarded by policy_mu_
  std::condition_variable policy_cv_;  // overwrites_pending_ reached 0
  // Writeback rate, updated each tick.
  std::atomic<double> writeback_rate_{0};
  uint64_t rate_last_ms_ = 0, rate_last_writebacks_ = 0;  // tick thread only

  std::unique_ptr<WorkerPool> pool_;  // Boost.Asio thread pool + tick timer
  // Resumes parked requests: never behind migrations, whose threads may
  // wait long on a slow origin.
  std::unique_ptr<WorkerPool> resume_pool_;
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_ENGINE_H_
