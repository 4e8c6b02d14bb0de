#include "src/util/size.h"

#include <gtest/gtest.h>

namespace tierfs {
namespace {

TEST(ParseSizeTest, AcceptsSuffixes) {
  EXPECT_EQ(ParseSize("4096"), 4096u);
  EXPECT_EQ(ParseSize("64K"), 65536u);
  EXPECT_EQ(ParseSize("64k"), 65536u);
  EXPECT_EQ(ParseSize("64KiB"), 65536u);
  EXPECT_EQ(ParseSize("1M"), 1048576u);
  EXPECT_EQ(ParseSize("1.5G"), 1610612736u);
  EXPECT_EQ(ParseSize("2T"), 2199023255552u);
}

TEST(ParseSizeTest, RejectsJunk) {
  EXPECT_FALSE(ParseSize(""));
  EXPECT_FALSE(ParseSize("-1"));
  EXPECT_FALSE(ParseSize("abc"));
  EXPECT_FALSE(ParseSize("10X"));
  EXPECT_FALSE(ParseSize("10KX"));
  EXPECT_FALSE(ParseSize("1..2K"));
  EXPECT_FALSE(ParseSize("99999999999T"));
}

TEST(FormatSizeTest, Readable) {
  EXPECT_EQ(FormatSize(512), "512 B");
  EXPECT_EQ(FormatSize(65536), "64 KiB");
  EXPECT_EQ(FormatSize(1610612736), "1.5 GiB");
}

}  // namespace
}  // namespace tierfs
