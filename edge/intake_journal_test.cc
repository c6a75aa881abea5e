// IntakeJournal: append/take/release, recovery from the applied position, a torn tail after a
// crash mid-append, rotation and deletion of applied segments, failed appends.
#include "edge/intake_journal.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

namespace freshsync::edge {
namespace {

namespace fs = std::filesystem;

// Little-endian bytes of v, by hand (the journal's format, docs/formats.md).
std::string LE(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

// One entry of a version 1 segment ("FSJRNL01", written by edged before the flags byte):
//   entry := body_len:u32 crc:u32 index:u64 body;  body := received_ms:i64 topic_len:u16 topic payload
std::string V1Entry(uint64_t index, int64_t received_ms, const std::string& topic, const std::string& payload) {
  const std::string body = LE(static_cast<uint64_t>(received_ms), 8) + LE(topic.size(), 2) + topic + payload;
  const std::string crc_input = LE(index, 8) + body;
  return LE(body.size(), 4) + LE(Crc32c(crc_input.data(), crc_input.size()), 4) + crc_input;
}

class IntakeJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("intake-journal-test-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<IntakeJournal> Open(uint64_t applied, uint64_t segment_bytes = 8u << 20) {
    IntakeJournalOptions o;
    o.dir = dir_.string();
    o.segment_bytes = segment_bytes;
    auto j = IntakeJournal::Open(o, applied);
    EXPECT_TRUE(j.ok()) << j.status().ToString();
    return j.ok() ? std::move(*j) : nullptr;
  }
  static std::string Payload(uint64_t i) { return "{\"seq\":" + std::to_string(i) + ",\"temp_c\":3.5}"; }
  // Appends entries, checking that indexes come out dense from `first`.
  static void AppendN(IntakeJournal& j, uint64_t first, uint64_t n) {
    for (uint64_t i = first; i < first + n; ++i) {
      auto idx = j.Append("fs/sensors/c1/climate", Payload(i), static_cast<int64_t>(1000 + i));
      ASSERT_TRUE(idx.ok()) << idx.status().ToString();
      ASSERT_EQ(*idx, i);
    }
  }
  static std::vector<JournalEntry> TakeAll(IntakeJournal& j) {
    std::vector<JournalEntry> out;
    while (j.Take(1000, 0, &out)) {
    }
    return out;
  }
  std::vector<fs::path> Segments() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
};

TEST_F(IntakeJournalTest, AppendedEntriesAreTakenInOrderWithTheirContent) {
  auto j = Open(0);
  AppendN(*j, 1, 3);
  EXPECT_EQ(j->last_index(), 3u);
  EXPECT_EQ(j->UnappliedEntries(), 3u);
  auto got = TakeAll(*j);
  ASSERT_EQ(got.size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].index, i + 1);
    EXPECT_EQ(got[i].topic, "fs/sensors/c1/climate");
    EXPECT_EQ(got[i].payload, Payload(i + 1));
    EXPECT_EQ(got[i].received_ms, static_cast<int64_t>(1001 + i));
  }
  // Taken is not applied: the backlog only shrinks on Release.
  EXPECT_EQ(j->UnappliedEntries(), 3u);
  j->Release(2);
  EXPECT_EQ(j->UnappliedEntries(), 1u);
  j->Release(3);
  EXPECT_EQ(j->UnappliedEntries(), 0u);
  EXPECT_EQ(j->UnappliedBytes(), 0u);
  EXPECT_TRUE(j->WaitForRoom(1, 1, 0));
}

TEST_F(IntakeJournalTest, ReopenReplaysExactlyTheEntriesAfterTheAppliedIndex) {
  {
    auto j = Open(0);
    AppendN(*j, 1, 10);
  }
  auto j = Open(6);  // the store recorded 6 as applied
  auto got = TakeAll(*j);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got.front().index, 7u);
  EXPECT_EQ(got.back().index, 10u);
  EXPECT_EQ(got.back().payload, Payload(10));
  AppendN(*j, 11, 2);  // indexes continue after the last recovered one
}

TEST_F(IntakeJournalTest, NewIndexesStayAboveTheAppliedIndexEvenWithoutFiles) {
  // The journal directory lost (or a store restored with a later position): never reuse an
  // index the store already counts as applied, or the entry would be skipped on replay.
  auto j = Open(41);
  EXPECT_TRUE(TakeAll(*j).empty());
  AppendN(*j, 42, 1);
}

TEST_F(IntakeJournalTest, ATornTailIsDroppedAndItsIndexReused) {
  {
    auto j = Open(0);
    AppendN(*j, 1, 5);
  }
  // A crash in the middle of appending entry 5: only part of it reached the file. Its
  // callback never returned, so it was never acknowledged.
  auto segs = Segments();
  ASSERT_EQ(segs.size(), 1u);
  const auto full = fs::file_size(segs[0]);
  fs::resize_file(segs[0], full - 7);
  auto j = Open(0);
  EXPECT_EQ(j->torn_entries_dropped(), 1u);
  auto got = TakeAll(*j);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got.back().index, 4u);
  EXPECT_EQ(got.back().payload, Payload(4));
  EXPECT_LT(fs::file_size(segs[0]), full - 7);  // cut back to the last whole entry
  AppendN(*j, 5, 1);                             // the broker redelivers it: a new entry 5
  j.reset();
  auto again = Open(0);
  EXPECT_EQ(again->torn_entries_dropped(), 0u);
  auto all = TakeAll(*again);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all.back().payload, Payload(5));
}

TEST_F(IntakeJournalTest, ACorruptOrGarbageTailIsDropped) {
  {
    auto j = Open(0);
    AppendN(*j, 1, 3);
  }
  auto segs = Segments();
  ASSERT_EQ(segs.size(), 1u);
  {
    // Flip a byte in the last entry's payload: its checksum no longer matches.
    std::fstream f(segs[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(segs[0]) - 3));
    f.put('#');
  }
  {
    std::ofstream f(segs[0], std::ios::app | std::ios::binary);
    f << "garbage after the last entry";
  }
  auto j = Open(0);
  auto got = TakeAll(*j);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got.back().index, 2u);
}

TEST_F(IntakeJournalTest, ASegmentWithOnlyATornFirstEntryIsDeleted) {
  {
    auto j = Open(0);
    AppendN(*j, 1, 1);
  }
  auto segs = Segments();
  ASSERT_EQ(segs.size(), 1u);
  fs::resize_file(segs[0], 12);  // magic + 4 bytes of the first header
  auto j = Open(0);
  EXPECT_TRUE(TakeAll(*j).empty());
  EXPECT_EQ(Segments().size(), 1u);  // only the fresh segment for new appends
  AppendN(*j, 1, 1);
}

TEST_F(IntakeJournalTest, SegmentsRotateAndAreDeletedOnceApplied) {
  auto j = Open(0, 200);  // a few entries per segment
  AppendN(*j, 1, 40);
  const size_t rotated = Segments().size();
  EXPECT_GT(rotated, 5u);
  EXPECT_EQ(j->segment_count(), rotated);
  j->Release(20);
  const size_t after_half = Segments().size();
  EXPECT_LT(after_half, rotated);
  EXPECT_GT(after_half, 1u);
  j.reset();
  // Reopen at the recorded position: exactly 21..40 come back, across segments.
  auto reopened = Open(20, 200);
  auto got = TakeAll(*reopened);
  ASSERT_EQ(got.size(), 20u);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].index, 21 + i);
  reopened->Release(40);
  EXPECT_EQ(Segments().size(), 1u);  // only the segment being appended to
  EXPECT_EQ(reopened->UnappliedEntries(), 0u);
}

TEST_F(IntakeJournalTest, AFailedAppendIsNeitherTakenNorBreaksWhatFollows) {
  auto j = Open(0);
  AppendN(*j, 1, 2);
  bool fail = true;
  j->SetAppendFaultForTest([&] { return fail ? Status::IOError("disk full") : Status::Ok(); });
  auto r = j->Append("fs/sensors/c1/climate", Payload(99), 0);
  EXPECT_EQ(r.status().code(), StatusCode::kIOError);
  fail = false;
  auto next = j->Append("fs/sensors/c1/climate", Payload(3), 0);
  ASSERT_TRUE(next.ok());
  auto got = TakeAll(*j);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got.back().payload, Payload(3));
  EXPECT_GT(got.back().index, got[1].index);
  j.reset();
  auto reopened = Open(0);
  auto all = TakeAll(*reopened);
  ASSERT_EQ(all.size(), 3u);
  for (const auto& e : all) EXPECT_NE(e.payload, Payload(99));
}

TEST_F(IntakeJournalTest, StrictModeSyncsAndReadsBack) {
  IntakeJournalOptions o;
  o.dir = dir_.string();
  o.sync_each_append = true;
  {
    auto j = IntakeJournal::Open(o, 0);
    ASSERT_TRUE(j.ok());
    AppendN(**j, 1, 3);
  }
  auto j = IntakeJournal::Open(o, 1);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(TakeAll(**j).size(), 2u);
  EXPECT_EQ(*ReadJournalLastIndex(dir_.string()), 3u);
}

TEST_F(IntakeJournalTest, ACleanStopLeavesNothingToReplayIntoAnEarlierStore) {
  {
    auto j = Open(0, 200);  // small segments: several files
    AppendN(*j, 1, 20);
    TakeAll(*j);
    j->Release(19);
    EXPECT_FALSE(j->RemoveIfAllApplied()) << "entry 20 is not applied yet";
    EXPECT_FALSE(Segments().empty());
    j->Release(20);
    ASSERT_TRUE(j->RemoveIfAllApplied());
    EXPECT_TRUE(Segments().empty());
  }
  // An earlier copy of the store (applied up to 5) meets the journal: nothing is replayed
  // (entries 6..20 were applied to the store that was replaced), and indexes go on from 6.
  auto j = Open(5);
  EXPECT_TRUE(TakeAll(*j).empty());
  EXPECT_EQ(j->UnappliedEntries(), 0u);
  AppendN(*j, 6, 2);
  EXPECT_EQ(TakeAll(*j).size(), 2u);
  // Without the clean stop (a crash), the entries after the store's position are replayed.
  j.reset();
  auto again = Open(5);
  EXPECT_EQ(TakeAll(*again).size(), 2u);
}

TEST_F(IntakeJournalTest, TakeWaitsForAnAppendAndInterruptWakesIt) {
  auto j = Open(0);
  std::vector<JournalEntry> out;
  EXPECT_FALSE(j->Take(10, 10, &out));
  std::thread t([&] { AppendN(*j, 1, 1); });
  EXPECT_TRUE(j->Take(10, 5000, &out));
  t.join();
  ASSERT_EQ(out.size(), 1u);
  std::thread stopper([&] { j->Interrupt(); });
  std::vector<JournalEntry> none;
  EXPECT_FALSE(j->Take(10, 5000, &none));  // woken, nothing to take
  stopper.join();
}

TEST_F(IntakeJournalTest, Crc32cMatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
}

// The bytes on disk of a known entry: every integer little-endian, as the format says, on any
// host (written with explicit shifts, not a memcpy of host integers).
TEST_F(IntakeJournalTest, AnEntryIsWrittenLittleEndianByteForByte) {
  auto j = Open(0);
  ASSERT_EQ(*j->Append("t/x", "pay", 0x0102030405060708, kJournalSealed), 1u);
  j.reset();
  const auto segs = Segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].filename().string(), "intake-00000000000000000001.log");
  std::ifstream in(segs[0], std::ios::binary);
  const std::string disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // index and body, spelled out byte by byte.
  const std::string covered = std::string("\x01\x00\x00\x00\x00\x00\x00\x00", 8) +  // index 1
                              std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8) +  // received_ms
                              std::string("\x01", 1) +                                  // flags: sealed
                              std::string("\x03\x00", 2) + "t/x" + "pay";              // topic_len 3, topic, payload
  const uint32_t crc = Crc32c(covered.data(), covered.size());
  const std::string crc_le{static_cast<char>(crc & 0xff), static_cast<char>((crc >> 8) & 0xff),
                           static_cast<char>((crc >> 16) & 0xff), static_cast<char>((crc >> 24) & 0xff)};
  const std::string expected = std::string("FSJRNL02") + std::string("\x11\x00\x00\x00", 4) +  // body_len 17
                               crc_le + covered;
  EXPECT_EQ(disk, expected);
  // And it reads back as written.
  auto again = Open(0);
  auto got = TakeAll(*again);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].received_ms, 0x0102030405060708);
  EXPECT_EQ(got[0].flags, kJournalSealed);
  EXPECT_EQ(got[0].topic, "t/x");
  EXPECT_EQ(got[0].payload, "pay");
}

// A journal left by the previous edged (version 1 segments, no flags byte) recovers: its
// entries come back with flags 0, and new entries go to a new, version 2 segment.
TEST_F(IntakeJournalTest, AVersion1SegmentStillRecovers) {
  fs::create_directories(dir_);
  {
    std::ofstream out(dir_ / "intake-00000000000000000001.log", std::ios::binary);
    out << "FSJRNL01" << V1Entry(1, 1001, "fs/sensors/c1/climate", Payload(1))
        << V1Entry(2, 1002, "fs/sensors/c1/climate", Payload(2));
  }
  auto j = Open(0);
  EXPECT_EQ(j->torn_entries_dropped(), 0u);
  EXPECT_EQ(j->last_index(), 2u);
  auto got = TakeAll(*j);
  ASSERT_EQ(got.size(), 2u);
  for (uint64_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i].index, i + 1);
    EXPECT_EQ(got[i].received_ms, static_cast<int64_t>(1001 + i));
    EXPECT_EQ(got[i].flags, 0);
    EXPECT_EQ(got[i].topic, "fs/sensors/c1/climate");
    EXPECT_EQ(got[i].payload, Payload(i + 1));
  }
  AppendN(*j, 3, 1);
  const auto segs = Segments();
  ASSERT_EQ(segs.size(), 2u);
  std::ifstream in(segs[1], std::ios::binary);
  std::string magic(8, '\0');
  in.read(magic.data(), 8);
  EXPECT_EQ(magic, "FSJRNL02");
  // A torn v1 tail is dropped like a v2 one.
  j.reset();
  fs::remove(segs[1]);
  {
    std::ofstream out(segs[0], std::ios::binary | std::ios::app);
    out << V1Entry(3, 1003, "fs/sensors/c1/climate", Payload(3)).substr(0, 20);
  }
  auto torn = Open(1);
  EXPECT_EQ(torn->torn_entries_dropped(), 1u);
  auto rest = TakeAll(*torn);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].index, 2u);
}

}  // namespace
}  // namespace freshsync::edge
