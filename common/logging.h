// Logging set-up: spdlog to the systemd journal when running under systemd (JOURNAL_STREAM is
// set), to stderr otherwise. Call once from main before any thread starts.
//
// Never log customer personal data, tokens or keys: log ids and sizes instead.
#pragma once

#include <string>

#include "common/status.h"

namespace freshsync {

// level: trace, debug, info, warn, error, critical, off.
Status InitLogging(const std::string& program, const std::string& level);
// Changes the level at run time (SIGHUP).
Status SetLogLevel(const std::string& level);

}  // namespace freshsync
