// WebhookDeadLetters: the deliveries a webhook gave up on, in the hub store's table
// webhook_deadletters (docs/architecture-hub.md, "Schema"), shared by every replica. The notifier
// adds a row once a delivery has used up its attempts or its age; an admin lists them and asks
// for a replay (GET /v1/webhooks/deadletters, POST .../{id}/replay, POST .../replay); the
// replica holding that webhook's lease sends each replay with the row's own key and body, and
// deletes the row once the receiver took it (or puts it back, `replay` cleared, with the new
// error).
//
// Runs on HubStore::Write and Read (hub/sql.h), so the same code serves SQLite and PostgreSQL.
// Thread-safety: as the store's; borrows it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "hub/store.h"

namespace freshsync::hub {

struct WebhookDeadLetter {
  uint64_t id = 0;           // assigned by the store, increasing
  std::string webhook;
  std::string event;
  std::string site;
  std::string key;           // Idempotency-Key
  std::string body;
  int64_t attempts = 0;      // in all, replays included
  std::string last_error;
  int64_t dead_ms = 0;       // wall clock of the last give-up
  bool replay = false;       // an admin asked for a replay that is not done yet
  int64_t replays = 0;       // replays that failed again
};

class WebhookDeadLetters {
 public:
  explicit WebhookDeadLetters(HubStore& store) : store_(store) {}

  Status Add(const WebhookDeadLetter& d);  // id, replay and replays are the store's
  // Rows with id > after, oldest first, at most `limit`; webhook "" = every webhook's.
  Result<std::vector<WebhookDeadLetter>> List(const std::string& webhook, uint64_t after, int limit);
  // Marks the row for a replay; nullopt when there is no such row.
  Result<std::optional<WebhookDeadLetter>> RequestReplay(uint64_t id);
  // Marks every row of the webhook not yet marked; returns how many.
  Result<uint64_t> RequestReplayAll(const std::string& webhook);
  // The webhook's rows marked for a replay, oldest first.
  Result<std::vector<WebhookDeadLetter>> Replays(const std::string& webhook, int limit);
  Status Delivered(uint64_t id);  // the replay went through: the row goes
  Status FailedAgain(uint64_t id, int64_t attempts, const std::string& error, int64_t now_ms);
  Result<uint64_t> Count(const std::string& webhook);

 private:
  HubStore& store_;
};

}  // namespace freshsync::hub
