#include "hub/notify/dead_letters.h"

namespace freshsync::hub {
namespace {

// Valid in both dialects (hub/sql.h); the table is migration 8 of each store.
#define DL_COLUMNS "id, webhook, event, site, idem_key, body, attempts, last_error, dead_ms, replay, replays"
constexpr Sql kInsert{
    "INSERT INTO webhook_deadletters(webhook, event, site, idem_key, body, attempts, last_error, dead_ms) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"};
constexpr Sql kListAll{"SELECT " DL_COLUMNS " FROM webhook_deadletters WHERE id > ?1 ORDER BY id LIMIT ?2"};
constexpr Sql kListHook{"SELECT " DL_COLUMNS " FROM webhook_deadletters WHERE webhook = ?3 AND id > ?1 ORDER BY id LIMIT ?2"};
constexpr Sql kOne{"SELECT " DL_COLUMNS " FROM webhook_deadletters WHERE id = ?1"};
constexpr Sql kMark{"UPDATE webhook_deadletters SET replay = 1 WHERE id = ?1"};
constexpr Sql kCountUnmarked{"SELECT COUNT(*) FROM webhook_deadletters WHERE webhook = ?1 AND replay = 0"};
constexpr Sql kMarkAll{"UPDATE webhook_deadletters SET replay = 1 WHERE webhook = ?1 AND replay = 0"};
constexpr Sql kReplays{"SELECT " DL_COLUMNS " FROM webhook_deadletters WHERE webhook = ?1 AND replay = 1 ORDER BY id LIMIT ?2"};
constexpr Sql kDelete{"DELETE FROM webhook_deadletters WHERE id = ?1"};
constexpr Sql kFailedAgain{
    "UPDATE webhook_deadletters SET replay = 0, replays = replays + 1, attempts = ?2, last_error = ?3, dead_ms = ?4 "
    "WHERE id = ?1"};
constexpr Sql kCount{"SELECT COUNT(*) FROM webhook_deadletters WHERE webhook = ?1"};
#undef DL_COLUMNS

WebhookDeadLetter FromRow(const SqlRow& r) {
  WebhookDeadLetter d;
  d.id = r.UInt(0);
  d.webhook = r.Text(1);
  d.event = r.Text(2);
  d.site = r.Text(3);
  d.key = r.Text(4);
  d.body = r.Text(5);
  d.attempts = r.Int(6);
  d.last_error = r.Text(7);
  d.dead_ms = r.Int(8);
  d.replay = r.Int(9) != 0;
  d.replays = r.Int(10);
  return d;
}

}  // namespace

Status WebhookDeadLetters::Add(const WebhookDeadLetter& d) {
  return store_.Write([&](SqlTx& tx) {
    return tx.Run(kInsert, [&](SqlParams& p) {
      p.Text(1, d.webhook).Text(2, d.event).Text(3, d.site).Text(4, d.key).Text(5, d.body);
      p.Int(6, d.attempts).Text(7, d.last_error).Int(8, d.dead_ms);
    });
  });
}

Result<std::vector<WebhookDeadLetter>> WebhookDeadLetters::List(const std::string& webhook, uint64_t after, int limit) {
  std::vector<WebhookDeadLetter> out;
  Status s = store_.Read(webhook.empty() ? kListAll : kListHook,
                         [&](SqlParams& p) {
                           p.UInt(1, after).Int(2, limit);
                           if (!webhook.empty()) p.Text(3, webhook);
                         },
                         [&](const SqlRow& r) { out.push_back(FromRow(r)); });
  if (!s.ok()) return s;
  return out;
}

Result<std::optional<WebhookDeadLetter>> WebhookDeadLetters::RequestReplay(uint64_t id) {
  std::optional<WebhookDeadLetter> found;
  Status s = store_.Write([&](SqlTx& tx) {
    found.reset();
    if (Status st = tx.Run(kOne, [&](SqlParams& p) { p.UInt(1, id); }, [&](const SqlRow& r) { found = FromRow(r); }); !st.ok())
      return st;
    if (!found) return Status::Ok();
    found->replay = true;
    return tx.Run(kMark, [&](SqlParams& p) { p.UInt(1, id); });
  });
  if (!s.ok()) return s;
  return found;
}

Result<uint64_t> WebhookDeadLetters::RequestReplayAll(const std::string& webhook) {
  uint64_t n = 0;
  Status s = store_.Write([&](SqlTx& tx) {
    if (Status st = tx.Run(kCountUnmarked, [&](SqlParams& p) { p.Text(1, webhook); }, [&](const SqlRow& r) { n = r.UInt(0); });
        !st.ok())
      return st;
    return tx.Run(kMarkAll, [&](SqlParams& p) { p.Text(1, webhook); });
  });
  if (!s.ok()) return s;
  return n;
}

Result<std::vector<WebhookDeadLetter>> WebhookDeadLetters::Replays(const std::string& webhook, int limit) {
  std::vector<WebhookDeadLetter> out;
  Status s = store_.Read(kReplays, [&](SqlParams& p) { p.Text(1, webhook).Int(2, limit); },
                         [&](const SqlRow& r) { out.push_back(FromRow(r)); });
  if (!s.ok()) return s;
  return out;
}

Status WebhookDeadLetters::Delivered(uint64_t id) {
  return store_.Write([&](SqlTx& tx) { return tx.Run(kDelete, [&](SqlParams& p) { p.UInt(1, id); }); });
}

Status WebhookDeadLetters::FailedAgain(uint64_t id, int64_t attempts, const std::string& error, int64_t now_ms) {
  return store_.Write([&](SqlTx& tx) {
    return tx.Run(kFailedAgain, [&](SqlParams& p) { p.UInt(1, id).Int(2, attempts).Text(3, error).Int(4, now_ms); });
  });
}

Result<uint64_t> WebhookDeadLetters::Count(const std::string& webhook) {
  uint64_t n = 0;
  Status s = store_.Read(kCount, [&](SqlParams& p) { p.Text(1, webhook); }, [&](const SqlRow& r) { n = r.UInt(0); });
  if (!s.ok()) return s;
  return n;
}

}  // namespace freshsync::hub
