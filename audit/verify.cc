#include "audit/verify.h"

#include "freshsync.pb.h"

namespace freshsync::audit {

void ChainVerifier::Start(uint64_t index, std::string hash) {
  started_ = true;
  last_index_ = index;
  running_ = index == 0 ? GenesisHash() : std::move(hash);
  hashes_[index] = running_;
}

bool ChainVerifier::Fail(uint64_t index, uint64_t seq, std::string reason) {
  if (!bad_) bad_ = BadLink{index, seq, std::move(reason)};
  return false;
}

bool ChainVerifier::Continue(uint64_t index, uint64_t seq, std::string_view chain_prev) {
  if (bad_) return false;
  if (!started_) {
    // Mid-chain start without the link before: the first link's chain_prev is its anchor.
    started_ = true;
    last_index_ = index - 1;
    running_ = std::string(chain_prev);
  }
  if (first_index_ == 0) first_index_ = index;
  if (index != last_index_ + 1)
    return Fail(last_index_ + 1, index > last_index_ + 1 ? 0 : seq,
                index > last_index_ + 1 ? "link " + std::to_string(last_index_ + 1) + " is missing (next held: " +
                                              std::to_string(index) + ")"
                                        : "link " + std::to_string(index) + " is out of order after link " +
                                              std::to_string(last_index_));
  if (chain_prev != running_)
    return Fail(index, seq, "chain_prev does not match the hash of link " + std::to_string(last_index_));
  return true;
}

bool ChainVerifier::AddLink(const Link& link, uint64_t seq, std::string_view chain_prev, std::string_view chain_hash) {
  if (!Continue(link.index, seq, chain_prev)) return false;
  std::string h = NextHash(running_, CanonicalBytes(link));
  if (h != chain_hash) return Fail(link.index, seq, "hash mismatch: the link's content is not what was chained");
  running_ = std::move(h);
  last_index_ = link.index;
  hashes_[link.index] = running_;
  ++links_;
  return true;
}

bool ChainVerifier::AddThinned(uint64_t index, uint64_t seq, std::string_view chain_prev, std::string_view chain_hash) {
  if (!Continue(index, seq, chain_prev)) return false;
  if (chain_hash.size() != kHashBytes) return Fail(index, seq, "thinned link without a hash");
  running_ = std::string(chain_hash);
  last_index_ = index;
  hashes_[index] = running_;
  ++links_;
  ++thinned_;
  return true;
}

bool ChainVerifier::AddMissing(uint64_t index, uint64_t seq) {
  return Fail(index, seq, "its reading is gone from the site store (deleted, not thinned)");
}

bool ChainVerifier::AddSeal(const v1::ColdchainSeal& seal, uint64_t seq) {
  if (bad_) return false;
  const uint64_t at = seal.last_index();
  if (public_key_.empty()) return Fail(at, seq, "seal: no pinned key to check it with");
  if (seal.public_key() != public_key_) return Fail(at, seq, "seal: signed with another key than the pinned one");
  if (!VerifySignature(public_key_, SealBytes(seal), seal.signature())) return Fail(at, seq, "seal: bad signature");
  if (seal.last_index() < seal.first_index() || seal.count() != seal.last_index() - seal.first_index() + 1)
    return Fail(at, seq, "seal: count does not match its links");
  auto it = hashes_.find(at);
  if (it == hashes_.end()) return Fail(at, seq, "seal: its last link is not in the range checked");
  if (it->second != seal.last_hash()) return Fail(at, seq, "seal: last_hash differs from the chain's hash of link " + std::to_string(at));
  ++seals_;
  return true;
}

}  // namespace freshsync::audit
