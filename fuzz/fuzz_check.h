// Shared by the fuzz targets. A broken contract must fail the run like a crash does, so
// libFuzzer saves the input: Check prints what was violated and aborts.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace freshsync::fuzz {

inline void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "contract violated: %s\n", what);
    std::abort();
  }
}

}  // namespace freshsync::fuzz
