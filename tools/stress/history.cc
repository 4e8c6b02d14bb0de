#include "tools/stress/history.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "tools/stress/options.h"

namespace tierfs::stress {
namespace {

std::string Hex(std::span<const std::byte> bytes, size_t from, size_t to) {
  std::string out;
  char buf[4];
  for (size_t i = from; i < to; ++i) {
    if (i >= bytes.size()) {
      out += " --";  // past the end of what was read
      continue;
    }
    std::snprintf(buf, sizeof(buf), " %02x",
                  static_cast<unsigned>(std::to_integer<uint8_t>(bytes[i])));
    out += buf;
  }
  return out;
}

}  // namespace

void History::Add(HistoryEntry entry) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.push_back(std::move(entry));
  if (entries_.size() > capacity_) entries_.pop_front();
}

std::string History::Dump() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  char line[256];
  for (const HistoryEntry& e : entries_) {
    std::snprintf(line, sizeof(line),
                  "  #%-8llu %-10s vol%-2d off=%-10llu "
                  "len=%-9llu ",
                  static_cast<unsigned long long>(e.op_no), OpName(e.op),
                  e.volume, static_cast<unsigned long long>(e.offset),
                  static_cast<unsigned long long>(e.length));
    out += line;
    out += e.result;
    out += '\n';
  }
  return out;
}

std::string DescribeDifference(std::span<const std::byte> expected,
                               std::span<const std::byte> got,
                               uint64_t file_offset, uint64_t block_size) {
  const size_t common = std::min(expected.size(), got.size());
  size_t diff = 0;
  while (diff < common && expected[diff] == got[diff]) ++diff;
  if (diff == common && expected.size() == got.size()) return {};
  char line[256];
  std::snprintf(
      line, sizeof(line),
      "expected %zu bytes, got %zu; first difference at file offset "
      "%llu (block %llu, byte %llu of it)\n",
      expected.size(), got.size(),
      static_cast<unsigned long long>(file_offset + diff),
      static_cast<unsigned long long>((file_offset + diff) / block_size),
      static_cast<unsigned long long>((file_offset + diff) % block_size));
  std::string out = line;
  // Diffs are best read aligned to 16 bytes, with some context before.
  const size_t from = diff >= 16 ? (diff - 16) & ~size_t{15} : 0;
  const size_t to = from + 64;
  std::snprintf(line, sizeof(line), "  window at file offset %llu:\n",
                static_cast<unsigned long long>(file_offset + from));
  out += line;
  out += "  expected:" + Hex(expected, from, to) + "\n";
  out += "  got:     " + Hex(got, from, to) + "\n";
  return out;
}

}  // namespace tierfs::stress
