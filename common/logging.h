// Logging set-up: spdlog to the systemd journal when running under systemd (JOURNAL_STREAM is
// set), to stderr otherwise. Call once from main before any thread starts.
//
// Never log customer personal data, tokens or keys: log ids and sizes instead.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace freshsync {

// level: trace, debug, info, warn, error, critical, off.
Status InitLogging(const std::string& program, const std::string& level);
// Changes the level at run time (SIGHUP).
Status SetLogLevel(const std::string& level);

// Structured journal fields. Under systemd every record carries, beside MESSAGE, PRIORITY,
// SYSLOG_IDENTIFIER and TID: FRESHSYNC_SITE (once set here) and FRESHSYNC_COMPONENT (the
// message's leading "component:" word: ingest, sync, store, metrics, watchdog, reload, ...).
// Query with e.g. `journalctl -u edged FRESHSYNC_COMPONENT=sync`. Call before threads start.
void SetLogSite(const std::string& site);
// The component of a message: its leading word of [a-z_-] (at most 24) before ':'; "" otherwise.
std::string LogComponent(std::string_view message);

}  // namespace freshsync
