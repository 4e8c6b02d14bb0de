// CRC-32C (Castagnoli), the checksum on every metadata record.
#ifndef TIERFS_SRC_UTIL_CRC32C_H_
#define TIERFS_SRC_UTIL_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <span>

namespace tierfs {

// Extends `crc` (0 to start) over `data`. Uses SSE4.2 when the CPU has it.
uint32_t Crc32c(uint32_t crc, const void* data, size_t size);

inline uint32_t Crc32c(std::span<const std::byte> data) {
  return Crc32c(0, data.data(), data.size());
}

}  // namespace tierfs

#endif  // TIERFS_SRC_UTIL_CRC32C_H_
