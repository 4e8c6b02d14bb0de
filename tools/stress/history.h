// What a failure report needs: the last ops the writer issued, and where a
// read first differed from the model.
#ifndef TIERFS_TOOLS_STRESS_HISTORY_H_
#define TIERFS_TOOLS_STRESS_HISTORY_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <string>

namespace tierfs::stress {

struct HistoryEntry {
  uint64_t op_no = 0;
  int op = 0;  // stress::Op
  int volume = -1;
  uint64_t offset = 0, length = 0;
  std::string result;  // "ok", an error, or what the op decided
};

// The last `capacity` ops. Thread-safe (admin ops finish on another thread).
class History {
 public:
  explicit History(size_t capacity) : capacity_(capacity) {}
  void Add(HistoryEntry entry);
  // The newest `count` entries, oldest first.
  std::string Dump(size_t count) const;
  // The newest `count` entries that could have changed bytes [begin, end)
  // of `volume`: ops on that range, truncates and unlinks of the volume,
  // crashes and restarts. Where a mismatch came from is usually there.
  std::string DumpTouching(int volume, uint64_t begin, uint64_t end,
                           size_t count) const;

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::deque<HistoryEntry> entries_;  // guarded by mu_
};

// Where `got` first differs from `expected` (a length difference counts),
// or nothing.
std::optional<size_t> FirstDifference(std::span<const std::byte> expected,
                                      std::span<const std::byte> got);

// Empty if `got` equals `expected`; otherwise the lengths, the first
// differing file offset and a 64-byte hex window of both around it.
std::string DescribeDifference(std::span<const std::byte> expected,
                               std::span<const std::byte> got,
                               uint64_t file_offset, uint64_t block_size);

}  // namespace tierfs::stress

#endif  // TIERFS_TOOLS_STRESS_HISTORY_H_
