// The metadata store: loads the cache's persistent state at mount and keeps
// it durable while the cache runs (journal with group commit, checkpoints).
//
// Runtime contract (see DESIGN.md "Durability contract"):
//  * Append* record a change in memory and return its sequence number. The
//    caller must hold the lock that also guards the state the change is
//    applied to (the engine's policy lock), so that a checkpoint snapshot
//    taken under that lock matches the records before it.
//  * WaitDurable(seq) returns once record `seq` (and every one before) is
//    durable, sharing one journal write + fdatasync among concurrent
//    callers. Before a batch holding kMap records is written, the cache
//    store is fdatasynced, so a durable mapping never points at data that
//    is not. Never call it while holding the engine's policy lock.
//  * A checkpoint (journal getting full, or clean shutdown) writes the
//    whole state from the engine's snapshot callback into the older slot.
//  * After any write or sync failure the store is failed: every later
//    WaitDurable (WaitWritten) of a record not durable (written) by then
//    returns the error, and the engine goes read-only. A batch whose write
//    succeeded counts as written even if its sync then failed.
//
// Thread-safety: all methods are thread-safe.
#ifndef TIERFS_META_STORE_H_
#define TIERFS_META_STORE_H_

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "meta/format.h"
#include "src/io/file.h"
#include "src/util/geometry.h"
#include "src/util/result.h"

namespace tierfs::meta {

struct FormatOptions {
  uint64_t block_size = kDefaultBlockSize;
  uint64_t cache_blocks = 0;
  uint64_t budget_blocks = 0;  // thin caches (Superblock::budget_blocks)
  std::string policy = "tinylfu";
  uint64_t journal_size = 0;  // 0: sized from cache_blocks
};

// What a mount starts from.
struct LoadedState {
  Superblock super;
  bool clean_shutdown = false;
  // Non-empty when the metadata is damaged: the state below is what could
  // be read, and the cache must be used read-only until `tierfs check`.
  std::string damage;
  uint32_t next_volume_id = 1;
  // Hints (of policy `hints_policy`) are valid only after a clean shutdown
  // with nothing replayed.
  bool hints_valid = false;
  std::string hints_policy;
  std::vector<VolumeRecord> volumes;
  std::vector<MappingRecord> mappings;  // sorted by cblock
  uint64_t checkpoint_sequence = 0;
  uint64_t replay_pos = 0;  // of that checkpoint
  uint64_t replayed_batches = 0, replayed_records = 0;
  // Where the journal continues, and the next record sequence.
  uint64_t journal_end = 0, next_seq = 1;
  // Oddities that do not make the metadata unusable (for `tierfs check`).
  std::vector<std::string> warnings;
  // Per structure, why it is not valid (empty: valid), for `tierfs check`.
  std::string superblock_damage[kSuperblockCopies];
  std::string checkpoint_damage[2];
  bool has_checkpoint = false;
  // NEEDS_CHECK was set (by a daemon that hit damage or a write error).
  bool needs_check = false;
  // One past the highest record sequence of any batch of this cache in the
  // ring, replayed or not: fresh metadata written over this journal must
  // start above it so that no stale batch is ever replayed.
  uint64_t journal_seq_limit = 1;
};

// Reads and checks every structure without changing anything.
// An error only when the files cannot be read or are not tierfs metadata
// at all; damage inside is reported in state->damage.
Result<LoadedState> Load(io::Env* env, const std::string& dir,
                         std::string* error_message);

class MetaStore {
 public:
  // Creates fresh metadata in `dir` (replacing any there).
  static Result<std::unique_ptr<MetaStore>> Format(io::Env* env,
                                                   const std::string& dir,
                                                   const FormatOptions& options,
                                                   std::string* error_message);
  // Opens metadata for a read-write mount. `state` must come from Load on
  // the same dir, without damage. Clears CLEAN_SHUTDOWN on disk before
  // returning, so a crash from here on is recognised.
  static Result<std::unique_ptr<MetaStore>> Open(io::Env* env,
                                                 const std::string& dir,
                                                 const LoadedState& state,
                                                 std::string* error_message);
  ~MetaStore();

  const Superblock& super() const { return super_; }

  // Called by a checkpoint: takes the engine's lock, fills cp->mappings
  // (with hints) and cp->policy, and calls `capture` once under that lock.
  using Snapshot = std::function<void(meta::Checkpoint* cp,
                                      const std::function<void()>& capture)>;
  void SetSnapshot(Snapshot snapshot);
  // The cache data file, synced before mappings to it become durable.
  void SetCacheStore(io::File* cache_store);

  // `invalid`: the block's sectors the cache does not hold (0: all held).
  // Mapping a mapped cblock to the same oblock again records a new mask.
  uint64_t AppendMap(CBlock cblock, OBlock oblock, bool dirty,
                     uint16_t invalid = 0);
  uint64_t AppendUnmap(CBlock cblock);
  uint64_t AppendDirty(CBlock cblock);
  uint64_t AppendClean(CBlock cblock);
  uint64_t AppendVolume(const VolumeRecord& volume);
  uint64_t AppendVolumeGone(VolumeId volume);
  VolumeId NewVolumeId();

  // Sequence of the newest record.
  uint64_t last_seq() const;
  // The sequence of cblock's kDirty record if it is not durable yet.
  std::optional<uint64_t> PendingDirty(CBlock cblock) const;
  // The sequence of cblock's dirty kMap record (a new dirty mapping, whose
  // data nothing durable records yet) if it is not durable yet.
  std::optional<uint64_t> PendingNewDirty(CBlock cblock) const;
  // The sequence of the kUnmap that freed cblock if it is not durable yet
  // (new data may go into the cblock only once it is).
  std::optional<uint64_t> PendingUnmap(CBlock cblock) const;

  // Whether record `seq` (and every one before) is durable.
  bool IsDurable(uint64_t seq) const;
  // Records appended but not yet durable.
  bool HasPending() const;
  // EINVAL for a sequence not appended yet.
  Status WaitDurable(uint64_t seq);
  // Returns once record `seq` (and every one before) is written to the
  // journal file, not necessarily synced: it survives the daemon's death
  // (kill -9), not a power loss. Shares writes like WaitDurable.
  Status WaitWritten(uint64_t seq);
  Status Commit() { return WaitDurable(last_seq()); }
  // Writes a checkpoint of the current state. `clean`: the final one of a
  // clean shutdown (hints valid, CLEAN_SHUTDOWN set after it).
  Status Checkpoint(bool clean);
  // The journal is more than half used: time for a checkpoint.
  bool WantsCheckpoint() const;
  // Records that the metadata needs `tierfs check` (best effort).
  void MarkNeedsCheck(const std::string& reason);
  Status failure() const;

  struct Stats {
    uint64_t commits = 0, checkpoints = 0, journal_bytes = 0;
    uint64_t journal_used = 0, journal_size = 0;
  };
  Stats GetStats() const;

 private:
  MetaStore(io::Env* env, std::string dir, Superblock super,
            std::unique_ptr<io::File> meta_file);
  uint64_t Append(const Record& r);
  uint64_t AppendLocked(const Record& r);  // REQUIRES: mu_ held
  // WaitDurable (durable) or WaitWritten.
  Status Wait(uint64_t seq, bool durable);
  // Drops the pending entries that are durable now. REQUIRES: mu_ held.
  void ForgetDurablePending();
  // One round as commit leader; mu_ held on entry and exit.
  // Writes the next batch of pending records, and with `sync` makes every
  // written record durable (without: kill -9 keeps it, power loss may not).
  Status LeadCommit(std::unique_lock<std::mutex>& lock, bool sync);
  Status LeadCheckpoint(std::unique_lock<std::mutex>& lock, bool clean);
  // Writes super_ (under mu_ held by `lock`) into the older copy.
  Status WriteSuperblock(std::unique_lock<std::mutex>& lock);
  // Runs `fn` as the only leader; mu_ held by `lock` on entry and exit.
  template <typename Fn>
  Status AsLeader(std::unique_lock<std::mutex>& lock, Fn fn);

  io::Env* const env_;
  const std::string dir_;
  std::unique_ptr<io::File> meta_file_;
  std::unique_ptr<io::File> checkpoint_files_[2];
  io::File* cache_store_ = nullptr;
  Snapshot snapshot_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Superblock super_;                  // guarded by mu_ (leader writes it)
  std::vector<std::byte> pending_;    // guarded by mu_: encoded records
  std::vector<size_t> pending_ends_;  // guarded by mu_: end of each record
  bool pending_maps_ = false;         // guarded by mu_: needs a cache sync
  uint64_t next_seq_ = 1;             // guarded by mu_
  uint64_t durable_seq_ = 1;          // guarded by mu_: first not durable
  uint64_t written_seq_ = 1;          // guarded by mu_: first not written
  // Written batches not yet synced hold kMap records: the cache store is
  // synced before the sync that makes them durable.
  bool unsynced_maps_ = false;                                // guarded by mu_
  std::unordered_map<uint32_t, uint64_t> pending_dirty_;      // guarded by mu_
  std::unordered_map<uint32_t, uint64_t> pending_new_dirty_;  // guarded by mu_
  std::unordered_map<uint32_t, uint64_t> pending_unmap_;      // guarded by mu_
  std::map<uint32_t, VolumeRecord> volumes_;                  // guarded by mu_
  uint32_t next_volume_id_ = 1;                               // guarded by mu_
  bool leader_ = false;                                       // guarded by mu_
  Status failure_;                                            // guarded by mu_
  // Written by the leader under mu_.
  uint64_t journal_end_ = 0;  // guarded by mu_: logical position of next batch
  uint64_t replay_pos_ = 0;   // guarded by mu_: of the newest checkpoint
  uint64_t checkpoint_sequence_ = 0;  // guarded by mu_
  Stats stats_;                       // guarded by mu_
};

}  // namespace tierfs::meta

#endif  // TIERFS_META_STORE_H_
