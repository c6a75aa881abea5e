#include "audit/export.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <sodium.h>

namespace freshsync::audit {
namespace {

constexpr char kMagic[] = "freshsync-coldchain-export-v1";

std::string Esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '%' || c == ',' || c == '\n' || c == '\r') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string Unesc(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      auto b = FromHex(s.substr(i + 1, 2));
      if (b.ok()) {
        out += *b;
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string Real(double d) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

std::vector<std::string> Split(const std::string& line) {
  std::vector<std::string> f;
  std::string cur;
  for (char c : line) {
    if (c == ',') {
      f.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  f.push_back(cur);
  return f;
}

bool ToU64(const std::string& s, uint64_t* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtoull(s.c_str(), &end, 10);
  return *end == '\0';
}
bool ToI64(const std::string& s, int64_t* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtoll(s.c_str(), &end, 10);
  return *end == '\0';
}
bool ToReal(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return *end == '\0';
}
bool ToBytes(const std::string& s, size_t n, std::string* v) {
  auto b = FromHex(s);
  if (!b.ok() || b->size() != n) return false;
  *v = std::move(*b);
  return true;
}

}  // namespace

std::string WriteExport(const ExportHeader& h, const std::vector<ExportItem>& items, const SigningKey& key) {
  std::ostringstream o;
  o << "H," << kMagic << ',' << Esc(h.site) << ',' << Esc(h.sensor) << ',' << h.from_ms << ',' << h.to_ms << ','
    << Hex(key.public_key()) << ',' << h.before_index << ','
    << Hex(h.before_index == 0 ? GenesisHash() : h.before_hash) << '\n';
  for (const ExportItem& it : items) {
    if (it.is_seal) {
      const auto& s = it.seal.seal;
      o << "S," << it.seal.seq << ',' << s.first_index() << ',' << s.last_index() << ',' << s.count() << ','
        << s.first_ts_ms() << ',' << s.last_ts_ms() << ',' << Hex(s.last_hash()) << ',' << Hex(s.signature()) << '\n';
      continue;
    }
    const ExportLink& e = it.link;
    const Link& l = e.link;
    if (e.thinned || e.missing) {
      o << (e.thinned ? "T," : "M,") << l.index << ',' << e.seq;
    } else if (l.kind == Link::Kind::kReading) {
      o << "R," << l.index << ',' << e.seq << ',' << l.ts_ms << ',' << l.device_seq << ',' << l.temp_dc << ','
        << l.rh_d << ',' << l.battery_d;
    } else {
      o << "A," << l.index << ',' << e.seq << ',' << l.ts_ms << ',' << Esc(l.alert_id) << ',' << Esc(l.state) << ','
        << Esc(l.alert_kind) << ',' << Real(l.min_c) << ',' << Real(l.max_c) << ',' << l.started_ts_ms << ','
        << l.ended_ts_ms;
    }
    o << ',' << Hex(e.chain_prev) << ',' << Hex(e.chain_hash) << '\n';
  }
  std::string body = o.str();
  return body + "X," + Hex(key.Sign(body)) + "\n";
}

ExportCheck VerifyExport(const std::string& text, const std::string& public_key) {
  ExportCheck c;
  c.key_fingerprint = Fingerprint(public_key);
  // The signature line is the last one; everything before it is what was signed.
  size_t end = text.size();
  if (end == 0 || text[end - 1] != '\n') {
    c.error = "the file does not end with its signature line";
    return c;
  }
  const size_t last = text.rfind('\n', end - 2);
  const size_t sig_start = last == std::string::npos ? 0 : last + 1;
  const std::string body = text.substr(0, sig_start);
  const auto sig_fields = Split(text.substr(sig_start, end - 1 - sig_start));
  std::string sig;
  if (sig_fields.size() != 2 || sig_fields[0] != "X" || !ToBytes(sig_fields[1], kSignatureBytes, &sig)) {
    c.error = "the last line is not the signature line X,<hex>";
    return c;
  }
  if (!VerifySignature(public_key, body, sig)) {
    c.error = "the file's signature does not verify with key " + c.key_fingerprint + " (altered, or another key)";
    return c;
  }
  ChainVerifier v(public_key);
  std::istringstream in(body);
  std::string line;
  int n = 0;
  auto syntax = [&](const std::string& what) {
    c.error = "line " + std::to_string(n) + ": " + what;
    return c;
  };
  while (std::getline(in, line)) {
    ++n;
    const auto f = Split(line);
    if (n == 1) {
      if (f.size() != 9 || f[0] != "H" || f[1] != kMagic) return syntax("not a cold-chain export header");
      c.site = Unesc(f[2]);
      c.sensor = Unesc(f[3]);
      std::string pk, before;
      uint64_t before_index = 0;
      if (!ToBytes(f[6], kPublicKeyBytes, &pk) || !ToU64(f[7], &before_index) || !ToBytes(f[8], kHashBytes, &before))
        return syntax("bad header fields");
      if (pk != public_key) return syntax("the header names key " + Fingerprint(pk) + ", not " + c.key_fingerprint);
      v.Start(before_index, before);
      continue;
    }
    if (f.empty() || f[0].size() != 1) return syntax("unknown line");
    ExportLink e;
    Link& l = e.link;
    l.sensor = c.sensor;
    const char type = f[0][0];
    size_t h = 0;  // index of chain_prev
    bool good = true;
    if (type == 'R' && f.size() == 10) {
      int64_t temp = 0;
      uint64_t rh = 0, bat = 0;
      good = ToU64(f[1], &l.index) && ToU64(f[2], &e.seq) && ToI64(f[3], &l.ts_ms) && ToU64(f[4], &l.device_seq) &&
             ToI64(f[5], &temp) && ToU64(f[6], &rh) && ToU64(f[7], &bat);
      l.temp_dc = static_cast<int32_t>(temp);
      l.rh_d = static_cast<uint32_t>(rh);
      l.battery_d = static_cast<uint32_t>(bat);
      h = 8;
    } else if (type == 'A' && f.size() == 13) {
      l.kind = Link::Kind::kAlert;
      good = ToU64(f[1], &l.index) && ToU64(f[2], &e.seq) && ToI64(f[3], &l.ts_ms) && ToReal(f[7], &l.min_c) &&
             ToReal(f[8], &l.max_c) && ToI64(f[9], &l.started_ts_ms) && ToI64(f[10], &l.ended_ts_ms);
      l.alert_id = Unesc(f[4]);
      l.state = Unesc(f[5]);
      l.alert_kind = Unesc(f[6]);
      h = 11;
    } else if ((type == 'T' || type == 'M') && f.size() == 5) {
      e.thinned = type == 'T';
      e.missing = type == 'M';
      good = ToU64(f[1], &l.index) && ToU64(f[2], &e.seq);
      h = 3;
    } else if (type == 'S' && f.size() == 9) {
      v1::ColdchainSeal s;
      uint64_t seq = 0, a = 0, b = 0, cnt = 0;
      int64_t t0 = 0, t1 = 0;
      std::string lh, sg;
      if (!ToU64(f[1], &seq) || !ToU64(f[2], &a) || !ToU64(f[3], &b) || !ToU64(f[4], &cnt) || !ToI64(f[5], &t0) ||
          !ToI64(f[6], &t1) || !ToBytes(f[7], kHashBytes, &lh) || !ToBytes(f[8], kSignatureBytes, &sg))
        return syntax("bad seal line");
      s.set_sensor(c.sensor);
      s.set_first_index(a);
      s.set_last_index(b);
      s.set_count(cnt);
      s.set_first_ts_ms(t0);
      s.set_last_ts_ms(t1);
      s.set_last_hash(lh);
      s.set_public_key(public_key);
      s.set_signature(sg);
      v.AddSeal(s, seq);
      continue;
    } else {
      return syntax("unknown line");
    }
    if (!good || !ToBytes(f[h], kHashBytes, &e.chain_prev) || !ToBytes(f[h + 1], kHashBytes, &e.chain_hash))
      return syntax("bad link fields");
    if (e.missing)
      v.AddMissing(l.index, e.seq);
    else if (e.thinned)
      v.AddThinned(l.index, e.seq, e.chain_prev, e.chain_hash);
    else
      v.AddLink(l, e.seq, e.chain_prev, e.chain_hash);
  }
  if (n == 0) return syntax("empty export");
  c.links = v.links();
  c.thinned = v.thinned();
  c.seals = v.seals();
  c.first_bad = v.first_bad();
  c.ok = v.ok();
  if (!c.ok) c.error = "link " + std::to_string(c.first_bad->index) + ": " + c.first_bad->reason;
  return c;
}

std::string PublicKeyPem(const std::string& public_key) {
  // SubjectPublicKeyInfo for Ed25519 (RFC 8410): a fixed 12-byte DER prefix, then the key.
  static const unsigned char kPrefix[] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
  std::string der(reinterpret_cast<const char*>(kPrefix), sizeof kPrefix);
  der += public_key;
  std::string b64(sodium_base64_ENCODED_LEN(der.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char*>(der.data()), der.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  b64.resize(std::strlen(b64.c_str()));
  return "-----BEGIN PUBLIC KEY-----\n" + b64 + "\n-----END PUBLIC KEY-----\n";
}

}  // namespace freshsync::audit
