// The signed cold-chain export (`edgectl export-coldchain`, docs/formats.md "Cold-chain
// export") and its offline check (`edgectl verify-coldchain`).
//
// Grammar: CSV lines, '\n'-terminated; text fields percent-encode '%', ',', CR and LF; hashes
// and keys are lower-case hex; numbers decimal (min_c/max_c %.17g, so they read back exactly):
//   H,freshsync-coldchain-export-v1,site,sensor,from_ms,to_ms,public_key,before_index,before_hash
//   R,index,seq,ts_ms,device_seq,temp_dc,rh_d,battery_d,chain_prev,chain_hash      a reading
//   A,index,seq,ts_ms,alert_id,state,kind,min_c,max_c,started_ts_ms,ended_ts_ms,chain_prev,chain_hash
//   T,index,seq,chain_prev,chain_hash       a link whose reading the disk quota thinned at the site
//   M,index,seq,chain_prev,chain_hash       a link whose reading is gone from the site store
//                                           although the quota did not thin it (fails the check)
//   S,seq,first_index,last_index,count,first_ts_ms,last_ts_ms,last_hash,signature   a seal
//   X,signature                             last line: Ed25519 over every byte before it
// Links appear in index order, each seal after its last link. before_index/before_hash: the
// link before the first one exported (0 and 64 zeros at the genesis).
//
// Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "audit/chain.h"
#include "audit/verify.h"
#include "common/status.h"
#include "freshsync.pb.h"

namespace freshsync::audit {

struct ExportHeader {
  std::string site, sensor;
  int64_t from_ms = 0, to_ms = 0;
  uint64_t before_index = 0;
  std::string before_hash;  // 32 bytes
};

struct ExportLink {
  bool thinned = false;
  bool missing = false;  // its content is gone, not by the quota
  Link link;  // index always; the rest unless thinned or missing
  uint64_t seq = 0;
  std::string chain_prev, chain_hash;
};

struct ExportSeal {
  uint64_t seq = 0;
  v1::ColdchainSeal seal;
};

// Links and seals interleaved in the order they are written.
struct ExportItem {
  bool is_seal = false;
  ExportLink link;
  ExportSeal seal;
};

std::string WriteExport(const ExportHeader& header, const std::vector<ExportItem>& items, const SigningKey& key);

struct ExportCheck {
  bool ok = false;
  std::string error;             // when !ok: the first problem (signature, syntax, chain)
  std::optional<BadLink> first_bad;
  std::string site, sensor, key_fingerprint;
  uint64_t links = 0, thinned = 0, seals = 0;
};
// Checks the file's signature with `public_key` (32 bytes), then the chain and every seal.
ExportCheck VerifyExport(const std::string& text, const std::string& public_key);

// The public key as PEM (SubjectPublicKeyInfo), for `openssl pkeyutl -verify -rawin`.
std::string PublicKeyPem(const std::string& public_key);

}  // namespace freshsync::audit
