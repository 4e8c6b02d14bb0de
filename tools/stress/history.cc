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

namespace {

std::string Line(const HistoryEntry& e) {
  char line[256];
  std::snprintf(line, sizeof(line),
                "  #%-8llu %-10s vol%-2d off=%-10llu len=%-9llu ",
                static_cast<unsigned long long>(e.op_no), OpName(e.op),
                e.volume, static_cast<unsigned long long>(e.offset),
                static_cast<unsigned long long>(e.length));
  return line + e.result + "\n";
}

}  // namespace

std::string History::Dump(size_t count) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  const size_t skip = entries_.size() > count ? entries_.size() - count : 0;
  for (size_t i = skip; i < entries_.size(); ++i) out += Line(entries_[i]);
  return out;
}

std::string History::DumpTouching(int volume, uint64_t begin, uint64_t end,
                                  size_t count) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::deque<const HistoryEntry*> hits;
  for (const HistoryEntry& e : entries_) {
    bool touches = e.op == kCrash || e.op == kRestart;
    if (e.volume == volume) {
      switch (e.op) {
        case kTruncate:  // offset is the new size
        case kUnlink:
          touches = true;
          break;
        case kWrite:
        case kWritePair:
        case kZero:
        case kPunch:
        case kPunchPastEof:
        case kFallocate:
          touches = e.offset < end && begin < e.offset + e.length;
          break;
        default:
          break;
      }
    }
    if (!touches) continue;
    hits.push_back(&e);
    if (hits.size() > count) hits.pop_front();
  }
  std::string out;
  for (const HistoryEntry* e : hits) out += Line(*e);
  return out;
}

std::optional<size_t> FirstDifference(std::span<const std::byte> expected,
                                      std::span<const std::byte> got) {
  const size_t common = std::min(expected.size(), got.size());
  size_t diff = 0;
  while (diff < common && expected[diff] == got[diff]) ++diff;
  if (diff == common && expected.size() == got.size()) return std::nullopt;
  return diff;
}

std::string DescribeDifference(std::span<const std::byte> expected,
                               std::span<const std::byte> got,
                               uint64_t file_offset, uint64_t block_size) {
  const std::optional<size_t> first = FirstDifference(expected, got);
  if (!first) return {};
  const size_t diff = *first;
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
