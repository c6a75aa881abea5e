// ChainVerifier: the one check of a run of cold-chain links and seals (audit/chain.h), used by
// the hub's GET /v1/sites/{site}/coldchain/verify (hub/coldchain_routes.cc) and by
// `edgectl verify-coldchain` on an export (audit/export.h). Feed it the link before the range,
// then the links in index order and the seals; it stops at the first bad one.
//
// What it checks, per link n: its index is one past the previous one (a deleted link leaves a
// gap), its chain_prev is the previous link's hash, and SHA-256(previous hash || its canonical
// bytes) is its chain_hash (an altered or reordered link changes that). A thinned link (the
// site downsampled its content) can only be checked for continuity; its stored hash carries
// the chain on. Per seal: the signature over SealBytes() with the pinned key, count, and that
// last_hash is the hash the verifier holds for last_index.
//
// Thread-safety: one verifier per check.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "audit/chain.h"

namespace freshsync::audit {

struct BadLink {
  uint64_t index = 0;
  uint64_t seq = 0;
  std::string reason;
};

class ChainVerifier {
 public:
  // public_key: the key seals must be signed with ("" : every seal fails).
  explicit ChainVerifier(std::string public_key) : public_key_(std::move(public_key)) {}

  // The link just before the range: its index (0: the range starts at the genesis) and its
  // stored hash. Without a call the first link's own chain_prev is taken on trust, and only
  // its index is noted (a range that starts mid-chain at an export).
  void Start(uint64_t index, std::string hash);
  // Each returns false once the chain is broken (first_bad() says where); later calls are ignored.
  bool AddLink(const Link& link, uint64_t seq, std::string_view chain_prev, std::string_view chain_hash);
  bool AddThinned(uint64_t index, uint64_t seq, std::string_view chain_prev, std::string_view chain_hash);
  // A seal whose last_index is among the links added (or the start link).
  // A link whose content is gone without being thinned: always a failure.
  bool AddMissing(uint64_t index, uint64_t seq);
  bool AddSeal(const v1::ColdchainSeal& seal, uint64_t seq);

  bool ok() const { return !bad_; }
  const std::optional<BadLink>& first_bad() const { return bad_; }
  uint64_t links() const { return links_; }
  uint64_t thinned() const { return thinned_; }
  uint64_t seals() const { return seals_; }
  uint64_t first_index() const { return first_index_; }
  uint64_t last_index() const { return last_index_; }

 private:
  bool Fail(uint64_t index, uint64_t seq, std::string reason);
  bool Continue(uint64_t index, uint64_t seq, std::string_view chain_prev);

  std::string public_key_;
  bool started_ = false;
  uint64_t last_index_ = 0, first_index_ = 0;
  std::string running_;                      // hash after last_index_
  std::map<uint64_t, std::string> hashes_;   // index -> hash, for the seals
  uint64_t links_ = 0, thinned_ = 0, seals_ = 0;
  std::optional<BadLink> bad_;
};

}  // namespace freshsync::audit
