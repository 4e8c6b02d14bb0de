// The on-SSD metadata format (DESIGN.md "Durability contract").
//
// Files under FAST/tierfs/:
//   meta     superblock (two copies, pages 0 and 1) + the journal ring
//   ckpt.0   checkpoint slots, written alternately; the valid one with the
//   ckpt.1   higher sequence number wins
//
// Journal: batches of records, each batch a whole number of 4 KiB pages
// starting on a page boundary, with a header carrying the cache's uuid, the
// sequence number of its first record and crc32c over header and payload.
// Replay starts at the checkpoint's position and stops at the first batch
// that is not the expected next one (a torn or stale tail).
//
// Integers are little-endian (the only byte order tierfs builds for).
// Everything read back is checked (magic, uuid, crc, ranges) before use.
#ifndef TIERFS_META_FORMAT_H_
#define TIERFS_META_FORMAT_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "src/util/ids.h"
#include "src/util/result.h"

namespace tierfs::meta {

// Version 2 adds sub-block validity (the invalid-sector masks below); a
// version 1 cache is read as one whose blocks are all whole, and is
// written as version 2 from its first mount on, so that an older tierfs
// refuses it instead of serving sectors the cache does not hold.
// Version 3 adds the superblock's budget (thin caches); a thin cache is
// written as version 3, any other as version 2, which older tierfs reads.
inline constexpr uint32_t kFormatVersion = 3;
inline constexpr uint32_t kThickFormatVersion = 2;
inline constexpr uint32_t kOldestFormatVersion = 1;
inline constexpr uint64_t kPage = 4096;
inline constexpr uint64_t kSuperblockCopies = 2;
inline constexpr uint64_t kJournalOffset = kSuperblockCopies * kPage;
// A batch never crosses the end of the ring: when less than this is left
// before the end, the writer (and the reader) continue at the next lap.
inline constexpr uint64_t kMaxBatchBytes = 256 * 1024;
inline constexpr size_t kMaxPathBytes = 4000;

inline constexpr const char* kMetaFileName = "meta";
inline constexpr const char* kCheckpointNames[2] = {"ckpt.0", "ckpt.1"};

using Uuid = std::array<uint8_t, 16>;
std::string UuidString(const Uuid& uuid);

// The version a superblock is written with: the oldest that has its fields.
inline uint32_t VersionFor(uint64_t budget_blocks) {
  return budget_blocks != 0 ? kFormatVersion : kThickFormatVersion;
}

enum SuperFlags : uint32_t {
  kCleanShutdown = 1 << 0,
  kNeedsCheck = 1 << 1,
};

struct Superblock {
  uint32_t version = kFormatVersion;
  uint32_t flags = 0;
  Uuid uuid{};
  uint64_t generation = 0;  // bumped at every write; the newer copy wins
  uint64_t block_size = 0;
  uint64_t cache_blocks = 0;  // slots in the cache store
  uint64_t journal_size = 0;  // bytes of ring after kJournalOffset
  // Thin caches (version 3): the blocks' worth of sectors the cache may
  // hold, below cache_blocks; the store is sparse and a slot takes space
  // only for the sectors it holds. 0: every slot may be whole.
  uint64_t budget_blocks = 0;
  std::string policy;  // at most 31 bytes
  std::string reason;  // why NEEDS_CHECK was set; at most 199 bytes
};

// One origin file: stable id <-> identity. The identity (inode number,
// inode generation, birth time) survives rename and restart and differs
// for a new file that reuses a name or an inode number.
struct VolumeRecord {
  VolumeId id;
  uint64_t ino = 0, generation = 0;
  int64_t btime_ns = 0;
  // What the file looked like when last recorded (clean shutdown): a
  // mismatch at the next mount means it changed behind tierfs's back.
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  std::string path;  // relative to the slow dir, at most kMaxPathBytes

  bool SameFile(const VolumeRecord& o) const {
    return ino == o.ino && generation == o.generation && btime_ns == o.btime_ns;
  }
};

struct MappingRecord {
  CBlock cblock;
  OBlock oblock;
  bool dirty = false;
  uint32_t hint = 0;
  // The block's sectors the cache does not hold (src/util/geometry.h
  // Sectors); 0: the whole block.
  uint16_t invalid = 0;
};

enum class RecordType : uint16_t {
  kMap = 1,     // cblock -> oblock (dirty flag, invalid sectors)
  kUnmap = 2,   // cblock free
  kDirty = 3,   // clean -> dirty
  kClean = 4,   // dirty -> clean
  kVolume = 5,  // volume added or its path/stat updated
  kVolumeGone = 6,
};

struct Record {
  RecordType type = RecordType::kMap;
  CBlock cblock;
  OBlock oblock;  // kMap
  bool dirty = false;
  uint16_t invalid = 0;  // kMap: sectors the cache does not hold
  VolumeRecord volume;   // kVolume; kVolumeGone uses volume.id
};

// Appends the encoding of `r` (8-byte aligned) to `out`.
void EncodeRecord(const Record& r, std::vector<std::byte>* out);
// Decodes every record of a payload; an error if any is malformed.
Result<std::vector<Record>> DecodeRecords(std::span<const std::byte> payload,
                                          uint32_t count);

// Superblock page (kPage bytes).
std::vector<std::byte> EncodeSuperblock(const Superblock& sb);
// nullopt with *why set when the page is not a valid superblock.
std::optional<Superblock> DecodeSuperblock(std::span<const std::byte> page,
                                           std::string* why);

// A journal batch: header + payload, padded to whole pages.
struct BatchHeader {
  Uuid uuid{};
  uint64_t first_seq = 0;
  uint32_t count = 0;
  uint32_t payload_bytes = 0;
};
inline constexpr size_t kBatchHeaderBytes = 48;
std::vector<std::byte> EncodeBatch(const Uuid& uuid, uint64_t first_seq,
                                   uint32_t count,
                                   std::span<const std::byte> payload);
// Checks the header (magic, uuid, crc of the header fields). The payload
// crc is checked by CheckBatchPayload once the whole batch is read.
std::optional<BatchHeader> DecodeBatchHeader(std::span<const std::byte> head,
                                             const Uuid& uuid);
bool CheckBatchPayload(std::span<const std::byte> batch);
// Where a batch may start at or after logical position `pos`: on the next
// lap when too little of the ring is left for a batch of any size.
inline uint64_t BatchStart(uint64_t pos, uint64_t journal_size) {
  const uint64_t left = journal_size - pos % journal_size;
  return left < kMaxBatchBytes ? pos + left : pos;
}
inline uint64_t RingOffset(uint64_t pos, uint64_t journal_size) {
  return kJournalOffset + pos % journal_size;
}
inline uint64_t BatchBytes(uint64_t payload_bytes) {
  return (kBatchHeaderBytes + payload_bytes + kPage - 1) / kPage * kPage;
}

// A checkpoint: the whole mapping table and volume table as of record
// sequence `next_seq` - 1; replay continues at journal position `replay_pos`
// (a logical byte position: laps * ring size + offset in the ring).
struct Checkpoint {
  Uuid uuid{};
  uint64_t sequence = 0;  // of the checkpoint itself; the slot is sequence % 2
  uint64_t next_seq = 1;
  uint64_t replay_pos = 0;
  uint32_t next_volume_id = 1;
  bool hints_valid = false;  // written at a clean shutdown
  std::string policy;        // whose hints these are
  std::vector<VolumeRecord> volumes;
  std::vector<MappingRecord> mappings;
};
std::vector<std::byte> EncodeCheckpoint(const Checkpoint& cp);
// nullopt with *why when damaged (bad magic, uuid, crc, or field out of range
// for a cache of `cache_blocks`).
std::optional<Checkpoint> DecodeCheckpoint(std::span<const std::byte> data,
                                           const Uuid& uuid,
                                           uint64_t cache_blocks,
                                           std::string* why);

}  // namespace tierfs::meta

#endif  // TIERFS_META_FORMAT_H_
