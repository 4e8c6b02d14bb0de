// The writer's ops and the read check every thread uses.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>

#include "src/util/geometry.h"
#include "tools/stress/harness.h"
#include "tools/stress/sync_io.h"

namespace tierfs::stress {
namespace {

constexpr uint64_t kHotWindow = 2 << 20;
constexpr uint64_t kScanChunk = 1 << 20;
// Tries of one block's read that fails with injected errors before that
// is a failure (at 50% errors per IO: 2^-200).
constexpr int kReadTries = 200;
constexpr auto kFlushTimeout = std::chrono::seconds(60);

uint64_t Uniform(Rng& rng, uint64_t lo, uint64_t hi) {  // inclusive
  return lo + rng() % (hi - lo + 1);
}

// 1 byte to 256 KiB, skewed small like guest IO, with 512-byte multiples.
uint64_t IoLength(Rng& rng, uint64_t block_size) {
  switch (rng() % 8) {
    case 0:
    case 1:
    case 2:
      return Uniform(rng, 1, 4096);
    case 3:
      return 512 * Uniform(rng, 1, 16);
    case 4:
    case 5:
      return Uniform(rng, 1, block_size);
    default:
      return Uniform(rng, 1, 256 * 1024);
  }
}

std::string Describe(const char* what, const std::string& name, uint64_t off,
                     uint64_t len) {
  return std::string(what) + " " + name + " offset " + std::to_string(off) +
         " length " + std::to_string(len);
}

}  // namespace

uint64_t Harness::PickOffset(const Slot& slot, Rng& rng, uint64_t limit) {
  if (limit <= 1) return 0;
  const uint64_t hot = slot.hot_start.load();
  if (rng() % 10 < 6 && hot < limit) {
    return hot + rng() % std::min(kHotWindow, limit - hot);
  }
  return rng() % limit;
}

Result<std::vector<std::byte>> Harness::ReadRetrying(Slot& slot,
                                                     uint64_t offset,
                                                     size_t length) {
  Result<std::vector<std::byte>> got =
      ReadSync(*engine_, slot.volume, offset, length);
  if (options_.read_errors == 0 || got.ok() || got.error().value() != EIO) {
    return got;
  }
  // An injected read error: the range again, a block at a time, each
  // retried (a fresh draw each time), so the check still happens. The
  // caller holds the slot: the bytes do not change meanwhile.
  failed_reads_.fetch_add(1);
  std::vector<std::byte> all;
  const uint64_t bs = options_.block_size;
  for (uint64_t pos = offset; pos < offset + length;) {
    const uint64_t n = std::min(bs - pos % bs, offset + length - pos);
    Result<std::vector<std::byte>> part =
        ReadSync(*engine_, slot.volume, pos, n);
    for (int tries = 1;
         !part.ok() && part.error().value() == EIO && tries < kReadTries;
         ++tries) {
      failed_reads_.fetch_add(1);
      part = ReadSync(*engine_, slot.volume, pos, n);
    }
    if (!part.ok()) return part;
    all.insert(all.end(), part->begin(), part->end());
    if (part->size() < n) break;  // the end of the file
    pos += n;
  }
  return all;
}

bool Harness::CheckRead(Slot& slot, uint64_t offset, size_t length,
                        const std::string& who) {
  Result<std::vector<std::byte>> got = ReadRetrying(slot, offset, length);
  progress_.fetch_add(1);
  if (!got.ok()) {
    if (crashing_.load()) return true;  // IO stopped under it
    return Fail(who + ": " + Describe("read of", slot.name, offset, length) +
                " failed: " + got.error().message());
  }
  const uint64_t size = slot.model.size();
  const uint64_t begin = std::min(offset, size);
  const uint64_t end = std::min(offset + length, size);
  std::span<const std::byte> expected(slot.model.data() + begin, end - begin);
  if (slot.torn) {
    // The model takes whichever of old and new each torn byte holds, so
    // later checks are exact again.
    const Slot::TornWrite& t = *slot.torn;
    const uint64_t to =
        std::min({begin + got->size(), end, t.offset + t.data.size()});
    for (uint64_t pos = std::max(begin, t.offset); pos < to; ++pos) {
      if ((*got)[pos - begin] == t.data[pos - t.offset]) {
        slot.model[pos] = t.data[pos - t.offset];
      }
    }
  }
  if (!FirstDifference(expected, *got)) return true;
  return Mismatch(slot, who, offset, expected, *got,
                  Describe("read of", slot.name, offset, length) +
                      ", file size " + std::to_string(size));
}

bool Harness::CheckFile(Slot& slot, const std::string& who) {
  const uint64_t size = slot.model.size();
  if (slot.volume->size() != size) {
    return Fail("MISMATCH (" + who + "): " + slot.name + " has size " +
                std::to_string(slot.volume->size()) + ", expected " +
                std::to_string(size) + "; ops that reached past that end:\n" +
                history_.DumpTouching(slot.index, size, UINT64_MAX, 30));
  }
  // One read past the end too: it must come back empty.
  for (uint64_t off = 0; off <= size; off += kScanChunk) {
    if (!CheckRead(slot, off, kScanChunk, who)) return false;
  }
  tally_.verified_bytes += size;
  return true;
}

void Harness::Record(int op, int index, uint64_t offset, uint64_t length,
                     std::string result) {
  history_.Add(HistoryEntry{op_no_.load(), op, index, offset, length,
                            std::move(result)});
}

bool Harness::RunOp(int op) {
  const int index = static_cast<int>(rng_() % slots_.size());
  Slot& slot = *slots_[index];
  if (rng_() % 64 == 0) {
    // The working set moves: old hot blocks cool down and get demoted.
    slot.hot_start.store(Uniform(rng_, 0, options_.max_file_size) /
                         options_.block_size * options_.block_size);
  }
  switch (op) {
    case kWrite:
    case kZero:
      return DoWrite(slot, index, op == kZero);
    case kWritePair:
      return DoWritePair(slot, index);
    case kRead:
      return DoRead(slot, index);
    case kPunch:
    case kPunchPastEof:
      return DoPunch(slot, index, op == kPunchPastEof);
    case kTruncate:
      return DoTruncate(slot, index);
    case kFallocate:
      return DoFallocate(slot, index);
    case kScan:
      Record(op, index, 0, slot.model.size(), "");
      return CheckFile(slot, "scan");
    case kUnlink:
      return DoUnlink(slot, index);
    case kCrash:
    case kRestart:
      Record(op, -1, 0, 0, "");
      return Reopen(op == kCrash);
    default:
      return DoAdmin(op, index);
  }
}

void Harness::PickWriteRange(const Slot& slot, bool may_extend,
                             uint64_t* offset, uint64_t* length) {
  const uint64_t bs = options_.block_size;
  const uint64_t size = slot.model.size();
  const uint64_t kind = rng_() % 10;
  if (kind < 2) {
    // Whole aligned blocks take the overwrite path (no promotion copy).
    *length = bs * Uniform(rng_, 1, 4);
    *offset = PickOffset(slot, rng_, std::max<uint64_t>(size, 1)) / bs * bs;
  } else if (kind == 3) {
    // Whole sectors of a block take the sector overwrite path (sub-block
    // validity): the cache holds them alone, the origin the rest.
    const uint64_t sector = Sectors(bs).size();
    *length = sector * Uniform(rng_, 1, 4);
    *offset =
        PickOffset(slot, rng_, std::max<uint64_t>(size, 1)) / sector * sector;
  } else if (kind == 2 && may_extend) {
    // Around the end of the file, often extending it (maybe over a gap).
    *length = IoLength(rng_, bs);
    *offset = size - std::min(size, *length / 2) + Uniform(rng_, 0, 2 * bs);
  } else {
    *length = IoLength(rng_, bs);
    *offset = PickOffset(slot, rng_, std::max<uint64_t>(size, 1));
  }
  const uint64_t end = may_extend ? options_.max_file_size : size;
  *length = std::min(*length, end);
  *offset = std::min(*offset, end - *length);
}

bool Harness::DoWrite(Slot& slot, int index, bool zeros) {
  WriterLock lock(slot);
  const uint64_t size = slot.model.size();
  uint64_t offset, length;
  // A failed write that reached past the end would leave the size open.
  PickWriteRange(slot, /*may_extend=*/!options_.any_errors(), &offset, &length);
  std::vector<std::byte> data(length);
  if (!zeros) Fill(data, rng_());
  const bool read_back = rng_() % 4 == 0;
  Status st = WriteSync(*engine_, slot.volume, offset, data);
  Record(zeros ? kZero : kWrite, index, offset, length,
         st.ok() ? "ok" : st.error().message());
  if (!st.ok()) {
    return FailedWrite(slot, offset, std::move(data), st.error(),
                       zeros ? "zero" : "write");
  }
  if (offset + length > size) slot.model.resize(offset + length);
  std::copy(data.begin(), data.end(), slot.model.begin() + offset);
  return !read_back || CheckRead(slot, offset, length, "read-back");
}

bool Harness::FailedWrite(Slot& slot, uint64_t offset,
                          std::vector<std::byte> data, std::error_code error,
                          const std::string& what) {
  if (!options_.any_errors() || error.value() != EIO ||
      offset + data.size() > slot.model.size()) {
    return Fail(
        Describe((what + " of").c_str(), slot.name, offset, data.size()) +
        " failed: " + error.message());
  }
  // Expected with injected IO errors: each byte of the range is old or
  // new now. One read settles which (the model takes it), and from then on
  // the bytes must stay what that read returned.
  ++tally_.failed_writes;
  const size_t length = data.size();
  slot.torn = Slot::TornWrite{offset, std::move(data)};
  const bool ok = CheckRead(slot, offset, length, "after a failed " + what);
  slot.torn.reset();
  return ok;
}

bool Harness::DoWritePair(Slot& slot, int index) {
  // Two writes at once to byte ranges that do not overlap but often share
  // a block (or a sector): the model stays exact, and the engine's
  // per-block paths see concurrent writers.
  const uint64_t bs = options_.block_size, max = options_.max_file_size;
  WriterLock lock(slot);
  const uint64_t size = slot.model.size();
  uint64_t offset[2], length[2];
  offset[0] = PickOffset(slot, rng_, std::max<uint64_t>(size, 1));
  length[0] = Uniform(rng_, 1, rng_() % 2 == 0 ? 4096 : bs);
  offset[1] = offset[0] + length[0] + Uniform(rng_, 0, 4096);
  length[1] = Uniform(rng_, 1, rng_() % 2 == 0 ? 4096 : bs);
  if (offset[1] + length[1] > max ||
      (options_.any_errors() && offset[1] + length[1] > size)) {
    Record(kWritePair, index, offset[0], 0,
           "skipped: past the largest size or, with IO errors, the end");
    return true;
  }
  std::vector<std::byte> data[2];
  for (int i = 0; i < 2; ++i) {
    data[i].resize(length[i]);
    Fill(data[i], rng_());
  }
  std::future<Status> second = std::async(std::launch::async, [&] {
    return WriteSync(*engine_, slot.volume, offset[1], data[1]);
  });
  const Status st[2] = {WriteSync(*engine_, slot.volume, offset[0], data[0]),
                        second.get()};
  for (int i = 0; i < 2; ++i) {
    Record(kWritePair, index, offset[i], length[i],
           st[i].ok() ? "ok" : st[i].error().message());
  }
  slot.model.resize(std::max(size, offset[1] + length[1]));
  for (int i = 0; i < 2; ++i) {
    if (st[i].ok()) {
      std::copy(data[i].begin(), data[i].end(), slot.model.begin() + offset[i]);
    }
  }
  for (int i = 0; i < 2; ++i) {
    if (!st[i].ok() && !FailedWrite(slot, offset[i], std::move(data[i]),
                                    st[i].error(), "write pair")) {
      return false;
    }
  }
  return CheckRead(slot, offset[0], offset[1] + length[1] - offset[0],
                   "read-back");
}

bool Harness::DoRead(Slot& slot, int index) {
  const uint64_t size = slot.model.size();
  const uint64_t offset =
      PickOffset(slot, rng_, size + options_.block_size);  // some past EOF
  const uint64_t length = IoLength(rng_, options_.block_size);
  Record(kRead, index, offset, length, "");
  return CheckRead(slot, offset, length, "writer read");
}

bool Harness::DoPunch(Slot& slot, int index, bool past_eof) {
  const uint64_t bs = options_.block_size;
  WriterLock lock(slot);
  const uint64_t size = slot.model.size();
  const int op = past_eof ? kPunchPastEof : kPunch;
  if (size == 0) {
    Record(op, index, 0, 0, "skipped: empty file");
    return true;
  }
  uint64_t offset, length;
  if (past_eof) {
    // fallocate(PUNCH_HOLE|KEEP_SIZE) may reach past EOF; the size stays.
    offset = size - std::min(size, Uniform(rng_, 1, 256 * 1024));
    length = size - offset + Uniform(rng_, 1, 256 * 1024);
  } else if (rng_() % 2 == 0) {
    offset = PickOffset(slot, rng_, size) / bs * bs;
    length = std::min(bs * Uniform(rng_, 1, 8), size - offset);
  } else {
    offset = PickOffset(slot, rng_, size);
    length = std::min(Uniform(rng_, 1, 512 * 1024), size - offset);
  }
  Status st = engine_->Discard(slot.volume, offset, length);
  Record(op, index, offset, length, st.ok() ? "ok" : st.error().message());
  if (!st.ok()) {
    // Its edges are zeroed by writes, which cache errors can fail.
    return FailedWrite(
        slot, offset,
        std::vector<std::byte>(std::min(offset + length, size) - offset),
        st.error(), "discard");
  }
  std::fill(slot.model.begin() + offset,
            slot.model.begin() + std::min(offset + length, size), std::byte{0});
  return true;
}

bool Harness::DoTruncate(Slot& slot, int index) {
  const uint64_t bs = options_.block_size;
  WriterLock lock(slot);
  const uint64_t size = slot.model.size();
  uint64_t new_size =
      rng_() % 2 == 0
          ? Uniform(rng_, 0, size)
          : std::min(size + Uniform(rng_, 1, 4 << 20), options_.max_file_size);
  if (rng_() % 3 == 0) new_size = new_size / bs * bs;
  Status st = engine_->Truncate(*slot.volume, new_size);
  Record(kTruncate, index, new_size, 0,
         (size < new_size ? "grow " : "shrink ") +
             std::string(st.ok() ? "ok" : st.error().message()));
  if (!st.ok() && options_.any_errors() && st.error().value() == EIO) {
    // Either nothing changed (writing the new tail block's dirty bytes to
    // the origin failed, before the origin was truncated) or, with sync
    // errors, the origin was truncated and its fdatasync failed: the file
    // has the new size then, and nothing past it comes back.
    ++tally_.failed_writes;
    const uint64_t now = slot.volume->size();
    if (now != size && !(options_.sync_errors > 0 && now == new_size)) {
      return Fail("failed truncate of " + slot.name + " to " +
                  std::to_string(new_size) + " changed its size to " +
                  std::to_string(now));
    }
    slot.model.resize(now);
    return CheckRead(slot, std::min(size, new_size) / bs * bs, 2 * bs,
                     "after a failed truncate");
  }
  if (!st.ok()) {
    return Fail("truncate of " + slot.name + " to " + std::to_string(new_size) +
                " failed: " + st.error().message());
  }
  slot.model.resize(new_size);  // grown bytes read as zeros
  return true;
}

bool Harness::DoFallocate(Slot& slot, int index) {
  WriterLock lock(slot);
  const uint64_t size = slot.model.size();
  const uint64_t max = options_.max_file_size;
  const uint64_t offset = std::min(Uniform(rng_, size / 2, size), max - 1);
  const uint64_t length =
      std::min<uint64_t>(Uniform(rng_, 1, 1 << 20), max - offset);
  Status st = engine_->Allocate(*slot.volume, offset, length);
  Record(kFallocate, index, offset, length,
         st.ok() ? "ok" : st.error().message());
  if (!st.ok()) {
    return Fail(Describe("fallocate of", slot.name, offset, length) +
                " failed: " + st.error().message());
  }
  if (offset + length > size) slot.model.resize(offset + length);
  return true;
}

bool Harness::DoUnlink(Slot& slot, int index) {
  // Nothing may still name the old volume (an invalidate by name would
  // find nothing).
  if (!WaitAdmin()) return false;
  WriterLock lock(slot);
  // The FUSE layer's order: the name goes first, then the engine forgets
  // the volume and the last close follows; a new file takes the name.
  struct stat st;
  if (::fstatat(slow_fd_, slot.name.c_str(), &st, 0) != 0 ||
      ::unlinkat(slow_fd_, slot.name.c_str(), 0) != 0) {
    return Fail("unlink " + slot.name + ": " + std::strerror(errno));
  }
  Status forgot = engine_->ForgetVolume(st.st_dev, st.st_ino);
  engine_->CloseVolume(slot.volume, /*unlinked=*/true);
  if (!forgot.ok()) Record(kUnlink, index, 0, 0, forgot.error().message());
  // With injected errors, writing back the dirty blocks an opener could
  // still read may fail; the last close drops them all the same.
  if (!forgot.ok() &&
      !(options_.any_errors() && forgot.error().value() == EIO)) {
    return Fail("forgetting unlinked " + slot.name +
                " failed: " + forgot.error().message());
  }
  slot.volume.reset();
  if (!CreateFile(slot, /*first=*/false)) return false;
  Record(kUnlink, index, 0, slot.model.size(), "recreated");
  return true;
}

bool Harness::WaitAdmin() { return !admin_.valid() || admin_.get(); }

bool Harness::DoAdmin(int op, int index) {
  if (!WaitAdmin()) return false;
  // Drawn now, on the writer's generator: the op sequence must not depend
  // on how the helper thread is scheduled.
  const bool beside = rng_() % 2 == 0;
  const uint64_t choice = rng_();
  std::shared_ptr<cache::Volume> volume = slots_[index]->volume;
  const std::string name = slots_[index]->name;
  const uint64_t op_no = op_no_.load();
  auto run = [this, op, index, beside, choice, volume, name, op_no]() -> bool {
    std::string result;
    Status st;
    bool allowed_error = false;
    switch (op) {
      case kMode: {
        const auto mode = static_cast<cache::Mode>(choice % 3);
        result = cache::ModeName(mode);
        if (mode == cache::Mode::kPassthrough && (choice >> 8) % 2 == 0) {
          // Clean first, so passthrough is reached and not just refused.
          st = engine_->Flush(kFlushTimeout);
          result += " after flush";
        }
        if (st.ok()) st = engine_->SetMode(mode);
        // Refusing passthrough while blocks are dirty is the contract.
        allowed_error =
            mode == cache::Mode::kPassthrough && st.error().value() == EBUSY;
        break;
      }
      case kPolicy: {
        static const char* const kPolicies[] = {"tinylfu", "smq", "lru",
                                                "cleaner"};
        result = kPolicies[choice % 4];
        std::string why;
        st = engine_->SwitchPolicy(result, &why);
        if (!why.empty()) result += " (" + why + ")";
        break;
      }
      case kInvalidate: {
        result = choice % 2 == 0 ? name : "all";
        Result<uint64_t> n =
            engine_->InvalidateClean(choice % 2 == 0 ? name : "");
        if (n.ok()) result += ": dropped " + std::to_string(*n);
        st = n.error();
        break;
      }
      case kFlush:
        st = engine_->Flush(kFlushTimeout);
        break;
      case kFsync:
        st = engine_->Fsync(*volume);
        break;
    }
    allowed_error |= crashing_.load();  // a crash landed while it ran
    // A failed fdatasync fails an fsync or a flush (and a mode switch
    // that flushes); the data stays.
    allowed_error |= options_.sync_errors > 0 && st.error().value() == EIO &&
                     (op == kFsync || op == kFlush || op == kMode);
    if (!st.ok()) {
      result += (allowed_error ? ": " : ": FAILED ") + st.error().message();
    }
    if (beside) result = "finished: " + result;
    history_.Add(HistoryEntry{op_no, op, index, 0, 0, result});
    if (!st.ok() && !allowed_error) {
      // Where the dirty blocks were (a flush that cannot finish).
      const cache::EngineSnapshot s = engine_->Snapshot();
      std::string state = "; dirty " + std::to_string(s.dirty_blocks) +
                          ", migration failures " +
                          std::to_string(s.migration_failures) + ", aborts " +
                          std::to_string(s.migration_aborts);
      for (const cache::VolumeInfo& v : engine_->Volumes()) {
        state += "; " + v.name + ": size " + std::to_string(v.size) +
                 ", dirty " + std::to_string(v.dirty_blocks) + " of " +
                 std::to_string(v.cached_blocks);
      }
      return Fail(std::string(OpName(op)) + " " + result + state);
    }
    return true;
  };
  if (!beside) return run();
  Record(op, index, 0, 0, "started, runs beside the next ops");
  admin_ = std::async(std::launch::async, std::move(run));
  return true;
}

}  // namespace tierfs::stress
