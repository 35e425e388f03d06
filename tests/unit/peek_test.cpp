#include "report/peek_text.h"

#include <cstring>

#include <gtest/gtest.h>

namespace kleak {
namespace {

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

TEST(Peek, HexdumpLikeXxd) {
  std::vector<uint8_t> d = bytes("LEAKMARK-0......");
  d.push_back(0);
  d.push_back(0x7f);
  std::string h = hexdump(d, 0xffff888000001000, "  ");
  EXPECT_EQ(h,
            "  ffff888000001000: 4c45 414b 4d41 524b 2d30 2e2e 2e2e 2e2e  LEAKMARK-0......\n"
            "  ffff888000001010: 007f                                     ..\n");
  EXPECT_EQ(hexdump({}, 0, ""), "");
}

TEST(Peek, PrintableStrings) {
  std::vector<uint8_t> d = bytes("ab");
  d.push_back(0);
  auto more = bytes("version 15\ntimestamp 42");
  d.insert(d.end(), more.begin(), more.end());
  d.push_back(0xff);
  auto tail = bytes("cpu0 1 2 3");
  d.insert(d.end(), tail.begin(), tail.end());
  auto s = printable_strings(d, 4);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0], "version 15\ntimestamp 42");
  EXPECT_EQ(s[1], "cpu0 1 2 3");
  EXPECT_EQ(printable_strings(d, 2).size(), 3u);
}

TEST(Peek, GroupsSamplesByTheShapeOfTheirFirstString) {
  std::vector<PeekResult> samples;
  for (int i = 0; i < 5; ++i) {
    PeekResult r;
    r.status = KLEAK_PEEK_OK;
    std::vector<uint8_t> header(48, static_cast<uint8_t>(0x80 + i));  // pointers differ per object
    auto text = bytes("LEAKMARK-" + std::to_string(i * 37) + "....");
    header.insert(header.end(), text.begin(), text.end());
    r.data = header;
    samples.push_back(r);
  }
  PeekResult other;
  other.status = KLEAK_PEEK_OK;
  other.data = bytes("something else entirely");
  samples.push_back(other);
  PeekResult gone;
  gone.status = KLEAK_PEEK_GONE;
  samples.push_back(gone);
  auto groups = group_samples(samples, 4);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].count, 5u);
  EXPECT_EQ(groups[0].shape, "LEAKMARK-#....");
  EXPECT_EQ(groups[1].count, 1u);
}

TEST(Peek, StatusNames) {
  EXPECT_STREQ(peek_status_name(KLEAK_PEEK_OK), "ok");
  EXPECT_STREQ(peek_status_name(KLEAK_PEEK_GONE), "gone");
  EXPECT_STREQ(peek_status_name(KLEAK_PEEK_FREED), "freed");
  EXPECT_STREQ(peek_status_name(KLEAK_PEEK_FAULT), "fault");
}

}  // namespace
}  // namespace kleak
