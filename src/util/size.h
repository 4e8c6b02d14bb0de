// Human sizes on the command line and in output: "64K", "1.5G", "4096".
#ifndef TIERFS_SRC_UTIL_SIZE_H_
#define TIERFS_SRC_UTIL_SIZE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tierfs {

// Parses a byte count with an optional binary suffix K, M, G, T (also KiB,
// MB, ...; all powers of 1024). Rejects negatives, overflow and junk.
std::optional<uint64_t> ParseSize(std::string_view text);

// "1.5 GiB", "64 KiB", "512 B".
std::string FormatSize(uint64_t bytes);

}  // namespace tierfs

#endif  // TIERFS_SRC_UTIL_SIZE_H_
