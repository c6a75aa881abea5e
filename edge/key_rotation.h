// Re-sealing of customer data at rest to the current privacy key (`edgectl rotate-key`).
//
// Walks orders.customer_sealed in order_id order, in transactions of `batch_rows` rows: a blob
// already sealed with the current key is left alone, any other is opened with the key ring
// (current + privacy.old_key_files) and sealed again with the current key. Each batch is one
// short BEGIN IMMEDIATE transaction, so it is safe while edged runs (edged waits at most one
// batch on its busy timeout) and an interruption loses nothing: run it again to finish.
//
// Once `remaining_old` is 0 no row of the store needs an old key, and the old key files can
// be removed from privacy.old_key_files. Copies of the sealed blob in outbox change records
// (and at the hub) keep the key id they were sealed with: change records are history, never
// rewritten (docs/operations.md, "Key rotation").
//
// Returns kIOError on SQLite errors (the batches committed so far stay committed).
// Thread-safety: opens its own connection; call from one thread.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "privacy/sealer.h"

namespace freshsync::edge {

struct RotationReport {
  int64_t scanned = 0;        // rows with sealed customer data
  int64_t resealed = 0;       // moved to the current key by this run
  int64_t already_current = 0;
  int64_t unreadable = 0;     // no key of the ring opens them: left as they are
  int64_t remaining_old = 0;  // rows not on the current key after this run (unreadable ones included)
};

Result<RotationReport> ResealCustomerData(const std::string& store_path, const Sealer& sealer, int batch_rows = 500);

}  // namespace freshsync::edge
