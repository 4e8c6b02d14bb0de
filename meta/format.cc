#include "meta/format.h"

#include <cstdio>
#include <cstring>

#include "src/util/crc32c.h"
#include "src/util/geometry.h"

namespace tierfs::meta {
namespace {

constexpr char kSuperMagic[8] = {'T', 'I', 'E', 'R', 'F', 'S', 'M', 'D'};
constexpr char kBatchMagic[8] = {'T', 'I', 'E', 'R', 'F', 'S', 'J', 'B'};
constexpr char kCheckpointMagic[8] = {'T', 'I', 'E', 'R', 'F', 'S', 'C', 'K'};
constexpr size_t kPolicyBytes = 32;
constexpr size_t kReasonBytes = 200;
constexpr size_t kCheckpointHeaderBytes = 128;
constexpr size_t kMappingBytes = 24;

class Writer {
 public:
  explicit Writer(std::vector<std::byte>* out) : out_(out) {}
  void Bytes(const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out_->insert(out_->end(), b, b + n);
  }
  template <typename T>
  void Put(T v) {
    Bytes(&v, sizeof(v));
  }
  // A fixed-size, zero-padded string field.
  void Fixed(const std::string& s, size_t n) {
    std::string f = s.substr(0, n - 1);
    f.resize(n, '\0');
    Bytes(f.data(), n);
  }
  void Pad(size_t align) {
    while (out_->size() % align != 0) out_->push_back(std::byte{0});
  }

 private:
  std::vector<std::byte>* out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  bool Bytes(void* p, size_t n) {
    if (in_.size() - pos_ < n) return ok_ = false;
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  template <typename T>
  T Get() {
    T v{};
    Bytes(&v, sizeof(v));
    return v;
  }
  std::string Fixed(size_t n) {
    std::string s(n, '\0');
    Bytes(s.data(), n);
    s.resize(::strnlen(s.data(), n));
    return s;
  }
  void Align(size_t a) { pos_ = std::min(in_.size(), (pos_ + a - 1) / a * a); }
  size_t pos() const { return pos_; }
  bool ok() const { return ok_; }

 private:
  std::span<const std::byte> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

void EncodeVolume(Writer& w, const VolumeRecord& v) {
  w.Put<uint32_t>(v.id.value());
  w.Put<uint32_t>(static_cast<uint32_t>(v.path.size()));
  w.Put<uint64_t>(v.ino);
  w.Put<uint64_t>(v.generation);
  w.Put<int64_t>(v.btime_ns);
  w.Put<uint64_t>(v.size);
  w.Put<int64_t>(v.mtime_ns);
  w.Bytes(v.path.data(), v.path.size());
  w.Pad(8);
}

// A path from metadata is used to open files beneath the slow dir: it must
// be relative, without "." or ".." components or NUL bytes.
bool SafeRelativePath(const std::string& path) {
  if (path.empty() || path.size() > kMaxPathBytes || path[0] == '/') {
    return false;
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string_view part(path.data() + start, end - start);
    if (part.empty() || part == "." || part == ".." ||
        part.find('\0') != std::string_view::npos) {
      return false;
    }
    start = end + 1;
  }
  return true;
}

bool DecodeVolume(Reader& r, VolumeRecord* v) {
  v->id = VolumeId(r.Get<uint32_t>());
  const uint32_t len = r.Get<uint32_t>();
  v->ino = r.Get<uint64_t>();
  v->generation = r.Get<uint64_t>();
  v->btime_ns = r.Get<int64_t>();
  v->size = r.Get<uint64_t>();
  v->mtime_ns = r.Get<int64_t>();
  if (!r.ok() || len > kMaxPathBytes) return false;
  v->path.assign(len, '\0');
  if (!r.Bytes(v->path.data(), len)) return false;
  r.Align(8);
  return v->id.value() != 0 && SafeRelativePath(v->path);
}

uint32_t CrcOf(const std::vector<std::byte>& buf, size_t from, size_t to) {
  return Crc32c(0, buf.data() + from, to - from);
}

}  // namespace

std::string UuidString(const Uuid& uuid) {
  char out[37];
  std::snprintf(out, sizeof(out),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                "%02x%02x%02x%02x%02x%02x",
                uuid[0], uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6],
                uuid[7], uuid[8], uuid[9], uuid[10], uuid[11], uuid[12],
                uuid[13], uuid[14], uuid[15]);
  return out;
}

void EncodeRecord(const Record& r, std::vector<std::byte>* out) {
  Writer w(out);
  w.Put<uint16_t>(static_cast<uint16_t>(r.type));
  if (r.type == RecordType::kVolume) {
    w.Put<uint16_t>(0);
    w.Put<uint32_t>(0);
    EncodeVolume(w, r.volume);
    return;
  }
  w.Put<uint16_t>(r.dirty ? 1 : 0);
  w.Put<uint32_t>(r.cblock.value());
  w.Put<uint32_t>(r.type == RecordType::kVolumeGone ? r.volume.id.value()
                                                    : r.oblock.volume.value());
  w.Put<uint32_t>(r.type == RecordType::kMap ? r.invalid : 0);
  w.Put<uint64_t>(r.oblock.index);
}

Result<std::vector<Record>> DecodeRecords(std::span<const std::byte> payload,
                                          uint32_t count) {
  // Every record takes at least 24 bytes: a larger count is garbage, and
  // reserving for it could ask for gigabytes.
  if (count > payload.size() / 24) return ErrnoCode(EBADMSG);
  std::vector<Record> out;
  out.reserve(count);
  Reader r(payload);
  for (uint32_t i = 0; i < count; ++i) {
    Record rec;
    const auto type = r.Get<uint16_t>();
    const auto flags = r.Get<uint16_t>();
    if (type < 1 || type > 6 || flags > 1) return ErrnoCode(EBADMSG);
    rec.type = static_cast<RecordType>(type);
    rec.dirty = flags & 1;
    if (rec.type == RecordType::kVolume) {
      r.Get<uint32_t>();
      if (!DecodeVolume(r, &rec.volume)) return ErrnoCode(EBADMSG);
    } else {
      rec.cblock = CBlock(r.Get<uint32_t>());
      const VolumeId volume(r.Get<uint32_t>());
      const auto invalid = r.Get<uint32_t>();
      if (invalid > UINT16_MAX ||
          (invalid != 0 && rec.type != RecordType::kMap)) {
        return ErrnoCode(EBADMSG);
      }
      rec.invalid = static_cast<uint16_t>(invalid);
      rec.oblock = OBlock{volume, r.Get<uint64_t>()};
      if (rec.type == RecordType::kVolumeGone) rec.volume.id = volume;
      if (rec.type == RecordType::kMap && volume.value() == 0) {
        return ErrnoCode(EBADMSG);
      }
    }
    if (!r.ok()) return ErrnoCode(EBADMSG);
    out.push_back(std::move(rec));
  }
  if (r.pos() != payload.size()) return ErrnoCode(EBADMSG);
  return out;
}

std::vector<std::byte> EncodeSuperblock(const Superblock& sb) {
  std::vector<std::byte> out;
  Writer w(&out);
  w.Bytes(kSuperMagic, 8);
  w.Put<uint32_t>(sb.version);
  w.Put<uint32_t>(sb.flags);
  w.Bytes(sb.uuid.data(), sb.uuid.size());
  w.Put<uint64_t>(sb.generation);
  w.Put<uint64_t>(sb.block_size);
  w.Put<uint64_t>(sb.cache_blocks);
  w.Put<uint64_t>(sb.journal_size);
  w.Fixed(sb.policy, kPolicyBytes);
  w.Fixed(sb.reason, kReasonBytes);
  if (sb.version >= 3) w.Put<uint64_t>(sb.budget_blocks);
  w.Put<uint32_t>(CrcOf(out, 0, out.size()));
  out.resize(kPage);
  return out;
}

std::optional<Superblock> DecodeSuperblock(std::span<const std::byte> page,
                                           std::string* why) {
  Reader r(page);
  char magic[8];
  r.Bytes(magic, 8);
  if (!r.ok() || std::memcmp(magic, kSuperMagic, 8) != 0) {
    *why = "no tierfs superblock (bad magic)";
    return std::nullopt;
  }
  Superblock sb;
  sb.version = r.Get<uint32_t>();
  sb.flags = r.Get<uint32_t>();
  r.Bytes(sb.uuid.data(), sb.uuid.size());
  sb.generation = r.Get<uint64_t>();
  sb.block_size = r.Get<uint64_t>();
  sb.cache_blocks = r.Get<uint64_t>();
  sb.journal_size = r.Get<uint64_t>();
  sb.policy = r.Fixed(kPolicyBytes);
  sb.reason = r.Fixed(kReasonBytes);
  if (sb.version >= 3) sb.budget_blocks = r.Get<uint64_t>();
  const size_t covered = r.pos();
  const uint32_t crc = r.Get<uint32_t>();
  if (!r.ok() || Crc32c(0, page.data(), covered) != crc) {
    *why = "superblock checksum mismatch";
    return std::nullopt;
  }
  if (sb.version < kOldestFormatVersion || sb.version > kFormatVersion) {
    *why = "unsupported metadata format version " + std::to_string(sb.version);
    return std::nullopt;
  }
  if (!GeometryProblem(sb.block_size, sb.cache_blocks).empty() ||
      sb.journal_size < 4 * kMaxBatchBytes || sb.journal_size % kPage != 0 ||
      sb.journal_size > (1ull << 40) ||
      (sb.version >= 3) != (sb.budget_blocks != 0) ||
      sb.budget_blocks >= sb.cache_blocks ||
      (sb.flags & ~(kCleanShutdown | kNeedsCheck)) != 0) {
    *why = "superblock field out of range";
    return std::nullopt;
  }
  return sb;
}

std::vector<std::byte> EncodeBatch(const Uuid& uuid, uint64_t first_seq,
                                   uint32_t count,
                                   std::span<const std::byte> payload) {
  std::vector<std::byte> out;
  Writer w(&out);
  w.Bytes(kBatchMagic, 8);
  w.Bytes(uuid.data(), uuid.size());
  w.Put<uint64_t>(first_seq);
  w.Put<uint32_t>(count);
  w.Put<uint32_t>(static_cast<uint32_t>(payload.size()));
  w.Put<uint32_t>(Crc32c(payload));
  w.Put<uint32_t>(CrcOf(out, 0, out.size()));
  w.Bytes(payload.data(), payload.size());
  out.resize(BatchBytes(payload.size()));
  return out;
}

std::optional<BatchHeader> DecodeBatchHeader(std::span<const std::byte> head,
                                             const Uuid& uuid) {
  Reader r(head);
  char magic[8];
  BatchHeader h;
  r.Bytes(magic, 8);
  r.Bytes(h.uuid.data(), h.uuid.size());
  h.first_seq = r.Get<uint64_t>();
  h.count = r.Get<uint32_t>();
  h.payload_bytes = r.Get<uint32_t>();
  r.Get<uint32_t>();  // payload crc, checked by CheckBatchPayload
  const size_t covered = r.pos();
  const uint32_t crc = r.Get<uint32_t>();
  if (!r.ok() || std::memcmp(magic, kBatchMagic, 8) != 0 || h.uuid != uuid ||
      Crc32c(0, head.data(), covered) != crc ||
      BatchBytes(h.payload_bytes) > kMaxBatchBytes) {
    return std::nullopt;
  }
  return h;
}

bool CheckBatchPayload(std::span<const std::byte> batch) {
  uint32_t bytes, crc;
  std::memcpy(&bytes, batch.data() + 36, 4);
  std::memcpy(&crc, batch.data() + 40, 4);
  return kBatchHeaderBytes + bytes <= batch.size() &&
         Crc32c(0, batch.data() + kBatchHeaderBytes, bytes) == crc;
}

std::vector<std::byte> EncodeCheckpoint(const Checkpoint& cp) {
  std::vector<std::byte> body;
  Writer b(&body);
  for (const VolumeRecord& v : cp.volumes) EncodeVolume(b, v);
  for (const MappingRecord& m : cp.mappings) {
    b.Put<uint32_t>(m.cblock.value());
    b.Put<uint32_t>(m.oblock.volume.value());
    b.Put<uint64_t>(m.oblock.index);
    b.Put<uint32_t>((m.dirty ? 1u : 0u) | uint32_t{m.invalid} << 16);
    b.Put<uint32_t>(m.hint);
  }
  std::vector<std::byte> out;
  Writer w(&out);
  w.Bytes(kCheckpointMagic, 8);
  w.Put<uint32_t>(kThickFormatVersion);  // its layout is version 2's
  w.Put<uint32_t>(cp.hints_valid ? 1 : 0);
  w.Bytes(cp.uuid.data(), cp.uuid.size());
  w.Put<uint64_t>(cp.sequence);
  w.Put<uint64_t>(cp.next_seq);
  w.Put<uint64_t>(cp.replay_pos);
  w.Put<uint64_t>(cp.volumes.size());
  w.Put<uint64_t>(cp.mappings.size());
  w.Put<uint64_t>(body.size());
  w.Put<uint32_t>(cp.next_volume_id);
  w.Put<uint32_t>(Crc32c(body));
  w.Fixed(cp.policy, kPolicyBytes);
  w.Pad(8);
  w.Put<uint32_t>(CrcOf(out, 0, out.size()));
  out.resize(kCheckpointHeaderBytes);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::optional<Checkpoint> DecodeCheckpoint(std::span<const std::byte> data,
                                           const Uuid& uuid,
                                           uint64_t cache_blocks,
                                           std::string* why) {
  Reader r(data);
  char magic[8];
  r.Bytes(magic, 8);
  if (!r.ok() || std::memcmp(magic, kCheckpointMagic, 8) != 0) {
    *why = "bad magic";
    return std::nullopt;
  }
  Checkpoint cp;
  const uint32_t version = r.Get<uint32_t>();
  const uint32_t hints = r.Get<uint32_t>();
  r.Bytes(cp.uuid.data(), cp.uuid.size());
  cp.sequence = r.Get<uint64_t>();
  cp.next_seq = r.Get<uint64_t>();
  cp.replay_pos = r.Get<uint64_t>();
  const uint64_t volumes = r.Get<uint64_t>();
  const uint64_t mappings = r.Get<uint64_t>();
  const uint64_t body_bytes = r.Get<uint64_t>();
  cp.next_volume_id = r.Get<uint32_t>();
  const uint32_t body_crc = r.Get<uint32_t>();
  cp.policy = r.Fixed(kPolicyBytes);
  r.Align(8);
  const size_t covered = r.pos();
  const uint32_t crc = r.Get<uint32_t>();
  if (!r.ok() || Crc32c(0, data.data(), covered) != crc) {
    *why = "header checksum mismatch";
    return std::nullopt;
  }
  if (version < kOldestFormatVersion || version > kFormatVersion ||
      cp.uuid != uuid || hints > 1) {
    *why = "belongs to another cache or format version";
    return std::nullopt;
  }
  cp.hints_valid = hints == 1;
  if (body_bytes != data.size() - kCheckpointHeaderBytes ||
      mappings > cache_blocks || volumes > body_bytes / 48) {
    *why = "size fields do not match the file";
    return std::nullopt;
  }
  auto body = data.subspan(kCheckpointHeaderBytes);
  if (Crc32c(body) != body_crc) {
    *why = "body checksum mismatch";
    return std::nullopt;
  }
  Reader b(body);
  cp.volumes.resize(volumes);
  for (VolumeRecord& v : cp.volumes) {
    if (!DecodeVolume(b, &v) || v.id.value() >= cp.next_volume_id) {
      *why = "invalid volume record";
      return std::nullopt;
    }
  }
  if (body.size() - b.pos() != mappings * kMappingBytes) {
    *why = "mapping table size mismatch";
    return std::nullopt;
  }
  cp.mappings.resize(mappings);
  for (MappingRecord& m : cp.mappings) {
    m.cblock = CBlock(b.Get<uint32_t>());
    const VolumeId volume(b.Get<uint32_t>());
    m.oblock = OBlock{volume, b.Get<uint64_t>()};
    const uint32_t flags = b.Get<uint32_t>();
    m.hint = b.Get<uint32_t>();
    if (m.cblock.value() >= cache_blocks || (flags & 0xfffe) != 0 ||
        volume.value() == 0 || volume.value() >= cp.next_volume_id) {
      *why = "invalid mapping record";
      return std::nullopt;
    }
    m.dirty = (flags & 1) != 0;
    m.invalid = static_cast<uint16_t>(flags >> 16);
  }
  return cp;
}

}  // namespace tierfs::meta
