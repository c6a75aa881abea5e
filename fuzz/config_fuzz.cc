// libFuzzer target: the TOML config parser and validator of edged and hubd (common/config.h).
// Byte 0 picks edged (even) or hubd (odd); the rest is the file. Beyond "no crash": a config
// that is accepted has the invariants its users rely on without re-checking.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "common/config.h"

namespace {
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "contract violated: %s\n", what);
    std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0) {
    auto c = freshsync::ParseEdgeConfig(text, "fuzz.toml");
    if (!c.ok()) return 0;
    Check(!c->site.empty() && !c->store.path.empty() && !c->mqtt.client_id.empty(), "edge config: required values set");
    Check(c->mqtt.keepalive_s >= 2 && c->store.busy_timeout_ms >= 1, "edge config: timing in range");
    if (!c->metrics_listen.empty()) Check(freshsync::ParseHostPort(c->metrics_listen, "metrics.listen").ok(), "metrics.listen parses");
  } else {
    auto c = freshsync::ParseHubConfig(text, "fuzz.toml");
    if (!c.ok()) return 0;
    Check(freshsync::ParseHostPort(c->listen, "listen").ok(), "hub listen parses");
    Check(c->threads >= 1 && c->threads <= 256, "hub threads in range");
    for (const auto& t : c->tokens) Check(t.sha256_hex.size() == 64, "token digests are 64 hex digits");
  }
  return 0;
}
