// libFuzzer target: the batch path between edge and hub.
//   mode 0/1 (byte 0, low bit 0): hub side. The rest is the request body of
//     POST /v1/sites/{site}/batches, zstd-compressed (bit 1 set) or identity: capped zstd
//     decompression (hub/codec.h), freshsync.v1.Batch parsing, then the JSON feed form of every
//     record (what GET /v1/changes answers) after the format 2 expansion (wire/batch_format.h
//     ExpandBatch) and the hub's record check (wire/record_rules.h CheckChangeRecord: every
//     refusal names a field; an accepted record is within the store's bounds), which must
//     serialise without throwing.
//   mode odd: round trip. The rest describes a site and outbox rows; the agent's BatchEncoder
//     writes the batch by hand (wire/batch_format.h), in format 1 or, with bit 1 set,
//     format 2, and the hub's decoder (with ExpandBatch) must read back the same site, urgency
//     and records, each with its row's seq.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_check.h"

#include "freshsync.pb.h"
#include "hub/codec.h"
#include "wire/batch_format.h"
#include "wire/record_rules.h"

namespace {

using freshsync::fuzz::Check;

class Reader {
 public:
  Reader(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool empty() const { return i_ >= n_; }
  uint8_t Byte() { return i_ < n_ ? d_[i_++] : 0; }
  uint64_t U64() {
    uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v = (v << 8) | Byte();
    return v;
  }
  std::string Bytes(size_t len) {
    len = std::min(len, n_ - std::min(i_, n_));
    std::string s(reinterpret_cast<const char*>(d_ + i_), len);
    i_ += len;
    return s;
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t i_ = 0;
};

void HubDecode(std::string_view body, bool zstd) {
  std::string raw;
  if (zstd) {
    freshsync::hub::ZstdLimits limits;
    limits.max_output_bytes = 256 << 10;  // small, so the fuzzer also reaches the cap
    limits.window_log_max = 20;
    auto out = freshsync::hub::ZstdDecompressCapped(body, limits);
    if (!out.ok()) return;
    Check(out->size() <= limits.max_output_bytes, "decompressed output within the cap");
    raw = std::move(*out);
  } else {
    raw.assign(body);
  }
  freshsync::v1::Batch batch;
  if (!batch.ParseFromString(raw)) return;
  if (!freshsync::wire::ExpandBatch(batch).ok()) return;  // a format newer than the hub: refused
  for (const auto& rec : batch.records()) {
    // The hub's gate (wire/record_rules.h): every refusal names a field, and what passes is
    // within the bounds the store and HQ rely on (the key's size, versions compared as signed).
    const freshsync::Status verdict = freshsync::wire::CheckChangeRecord(rec);
    if (!verdict.ok()) {
      Check(!verdict.message().empty(), "a refused record has a reason");
      Check(!freshsync::wire::RefusalField(verdict.message()).empty(), "a refusal names its field");
      continue;  // quarantined by the hub, never turned into a feed item
    }
    Check(rec.key().size() <= freshsync::wire::kMaxIdBytes, "an accepted key is at most kMaxIdBytes");
    Check(rec.version() >= 1 && rec.version() <= freshsync::wire::kMaxVersion, "an accepted version fits int64");
    Check(rec.hlc() <= freshsync::wire::kMaxHlc, "an accepted hlc fits int64");
    (void)freshsync::hub::ChangeToJson(rec.seq(), batch.site(), rec).dump();  // throws on bad UTF-8
  }
}

// An outbox row as the agent reads it (cloud-sync/sync_store.h OutboxRow): seq and the stored bytes.
struct Row {
  uint64_t seq = 0;
  std::string record;
};

void RoundTrip(Reader in, int format) {
  // Site ids are [a-z0-9-]: map bytes onto that alphabet.
  static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789-";
  std::string site;
  for (size_t n = in.Byte() % 64; n > 0; --n) site.push_back(kAlphabet[in.Byte() % (sizeof(kAlphabet) - 1)]);
  const bool urgent = in.Byte() & 1;
  std::vector<Row> rows;
  std::vector<freshsync::v1::ChangeRecord> expected;
  while (!in.empty() && rows.size() < 64) {
    Row row;
    // Outbox seqs start at 1 (the hub refuses 0, and format 2 reads a 0 as "previous + 1").
    row.seq = std::max<uint64_t>(in.U64(), 1);
    const uint8_t mode = in.Byte();
    const std::string bytes = in.Bytes(in.Byte());
    freshsync::v1::ChangeRecord rec;
    if (!rec.ParseFromString(bytes)) rec.Clear();
    rec.clear_hlc_from_ts();  // the wire-only field of format 2: a stored record never has it
    // The stored record may carry its own seq, a different one, or none.
    if (mode % 3 == 0) rec.set_seq(row.seq);
    else if (mode % 3 == 1) rec.set_seq(row.seq + 1);
    else rec.clear_seq();
    row.record = rec.SerializeAsString();
    rec.set_seq(row.seq);
    // What the hub reads for a body without its own vehicle/sensor id (the key names it).
    if (format == 2 && rec.has_position() && rec.position().vehicle().empty())
      rec.mutable_position()->set_vehicle(rec.key());
    if (format == 2 && rec.has_climate() && rec.climate().sensor().empty())
      rec.mutable_climate()->set_sensor(rec.key());
    rows.push_back(std::move(row));
    expected.push_back(std::move(rec));
  }
  // One encoder for the whole run, as the sync agent keeps one: state must not leak between batches.
  static freshsync::wire::BatchEncoder encoder(1);
  const std::string body(encoder.Encode(site, rows, urgent, format));
  freshsync::hub::ZstdLimits limits;
  limits.max_output_bytes = 256 << 10;  // 64 rows of at most 255 + 24 bytes fit with room to spare
  auto raw = freshsync::hub::ZstdDecompressCapped(body, limits);
  Check(raw.ok(), "hub decompresses what the edge compressed");
  freshsync::v1::Batch batch;
  Check(batch.ParseFromString(*raw), "hub parses the edge's batch");
  Check(freshsync::wire::ExpandBatch(batch).ok(), "hub expands the edge's format");
  Check(batch.site() == site, "site survives");
  Check(batch.urgent() == urgent, "urgency survives");
  Check(batch.records_size() == static_cast<int>(expected.size()), "record count survives");
  for (int i = 0; i < batch.records_size(); ++i) {
    Check(batch.records(i).seq() == rows[static_cast<size_t>(i)].seq, "each record carries its row's seq");
    Check(batch.records(i).SerializeAsString() == expected[static_cast<size_t>(i)].SerializeAsString(),
          "each record survives");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 1) {
    RoundTrip(Reader(data + 1, size - 1), (data[0] & 2) ? 2 : 1);
  } else {
    HubDecode(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), (data[0] & 2) != 0);
  }
  return 0;
}
