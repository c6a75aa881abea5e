// A zstd bomb for tests of the hub's decompression limits: `chunks` x 4 MiB of zeros in one
// frame that declares no content size (so the hub cannot refuse it from the header and must
// stop it while decompressing). Level 19 gives ~64 KB for 2 GiB; 3 builds faster. Test-only,
// header-only (link PkgConfig::ZSTD).
#pragma once

#include <zstd.h>

#include <memory>
#include <string>

namespace freshsync::testing {

inline std::string ZstdBombOfZeros(int chunks, int level) {
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 0);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  const std::string zeros(4 << 20, '\0');
  std::string bomb, buf(ZSTD_CStreamOutSize(), '\0');
  for (int i = 0; i < chunks; ++i) {
    ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
    const bool last = i == chunks - 1;
    size_t rem;
    do {
      ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
      rem = ZSTD_compressStream2(cctx.get(), &ob, &in, last ? ZSTD_e_end : ZSTD_e_continue);
      bomb.append(buf.data(), ob.pos);
    } while (last ? rem != 0 : in.pos < in.size);
  }
  return bomb;
}

}  // namespace freshsync::testing
