// The one mapping from SQLite result codes to Status, shared by every SQLite user (edge
// store, stock ledger, site rules, disk quota, edgectl, the sync agent's store, the hub).
//
// The guarantee "an I/O error is never acknowledged" (docs/reliability.md) rests on it: a
// caller acknowledges, dead-letters or refuses only on kOk / kConflict / kInternal, and holds
// and retries on kIOError. So every failure of the environment must come out as kIOError,
// and only failures that retrying cannot fix may come out as anything else.
//
//   SQLite primary code                         Status     why
//   FULL, IOERR_*, CANTOPEN, READONLY, PERM,     kIOError   the disk, the OS or a lock: nothing
//   NOLFS, NOMEM, PROTOCOL, INTERRUPT, BUSY,                was committed, the same statement
//   LOCKED, SCHEMA, ABORT                                   may succeed later; never acknowledge
//   CONSTRAINT                                   kConflict  a CHECK / UNIQUE / NOT NULL refused
//                                                           this input: refuse it, retrying is futile
//   CORRUPT, NOTADB, FORMAT, ERROR, MISUSE,      kInternal  corrupted state or a bug (our SQL,
//   RANGE, MISMATCH, TOOBIG, AUTH, INTERNAL,                our binding, our data); retrying
//   anything else                                           cannot help
//
// BUSY and LOCKED are kIOError, not kUnavailable. To the caller a write lock still held when
// busy_timeout expires is the same event as a failed write: the transaction did not commit
// and the same work must be retried later. Every retry loop that holds a message unacknowledged
// (ingest's journal and applier, the sync agent, hubd's 503) retries kIOError; none of the edge
// ones retries kUnavailable, and ingest would dead-letter a message on it. kUnavailable stays
// for peers across a network or a budget (the hub over HTTP, the broker, the decompression
// budget). Before this module the hub mapped BUSY/LOCKED to kUnavailable and CONSTRAINT to
// kIOError; its only caller of those paths (hub/server.cc ApplyBatch) answers 503 for both.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

struct sqlite3;

namespace freshsync::sqlite {

// The StatusCode for an SQLite result code (primary or extended). SQLITE_OK, ROW and DONE are
// not errors: kOk.
StatusCode CodeFor(int rc);

// Status for rc: "<what>: <sqlite3_errstr(rc)>", with the connection's sqlite3_errmsg when db
// is given and it says more. kOk for SQLITE_OK / ROW / DONE.
Status StatusFor(int rc, std::string_view what, sqlite3* db = nullptr);

// Status for the connection's last error (sqlite3_extended_errcode(db)).
Status LastError(sqlite3* db, std::string_view what);

}  // namespace freshsync::sqlite
