#include "src/util/crc32c.h"

#include <gtest/gtest.h>

#include <string>

namespace tierfs {
namespace {

TEST(Crc32cTest, KnownVectors) {
  // RFC 3720 B.4 check value for "123456789".
  const std::string s = "123456789";
  EXPECT_EQ(Crc32c(0, s.data(), s.size()), 0xe3069283u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(0, zeros.data(), zeros.size()), 0x8a9136aau);
}

TEST(Crc32cTest, IncrementalEqualsWhole) {
  std::string s(1000, 'x');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(i * 7);
  uint32_t whole = Crc32c(0, s.data(), s.size());
  uint32_t part = Crc32c(0, s.data(), 333);
  part = Crc32c(part, s.data() + 333, s.size() - 333);
  EXPECT_EQ(whole, part);
}

TEST(Crc32cTest, DetectsSingleBitFlip) {
  std::string s(4096, 'a');
  uint32_t before = Crc32c(0, s.data(), s.size());
  s[1234] ^= 0x10;
  EXPECT_NE(before, Crc32c(0, s.data(), s.size()));
}

}  // namespace
}  // namespace tierfs
