#include "hub/downstream.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "edge/geofence/fences.h"
#include "hub/codec.h"
#include "hub/query.h"
#include "wire/digest.h"
#include "wire/record_rules.h"
#include "wire/rfc3339.h"

namespace freshsync::hub {
namespace {

using nlohmann::json;

// Deeper bodies are refused before any of them is built (none of the write bodies needs more:
// a GeoJSON polygon is 5 levels under the collection).
constexpr int kMaxBodyDepth = 16;
constexpr size_t kMaxRules = 1000;
constexpr size_t kMaxUnitBytes = 32;
constexpr size_t kMaxSensorGlobBytes = 64;
constexpr int64_t kMaxShelfLifeH = 24 * 3650;
constexpr int64_t kMaxForS = 7 * 24 * 3600;
constexpr int64_t kMaxPriceCents = int64_t{1} << 50;

DownAnswer Error(int status, std::string message) {
  DownAnswer a;
  a.status = status;
  a.error = std::move(message);
  return a;
}

DownAnswer Accepted(json body) {
  DownAnswer a;
  a.status = 202;
  a.body = std::move(body);
  return a;
}

// The body as a JSON object; nullopt with *error set when it is not one (or nests too deep).
std::optional<json> ParseObject(const std::string& body, std::string* error) {
  bool too_deep = false;
  json j = json::parse(
      body,
      [&](int depth, json::parse_event_t, json&) {
        if (depth > kMaxBodyDepth) too_deep = true;
        return !too_deep;
      },
      false);
  if (too_deep) return *error = "body: nests deeper than " + std::to_string(kMaxBodyDepth) + " levels", std::nullopt;
  if (j.is_discarded()) return *error = "body: not valid JSON", std::nullopt;
  if (!j.is_object()) return *error = "body: must be a JSON object", std::nullopt;
  return j;
}

// Refuses members other than `allowed`, so that a misspelt optional field is not silently
// dropped.
Status OnlyKnown(const json& j, std::initializer_list<const char*> allowed, const std::string& where) {
  for (const auto& [k, v] : j.items()) {
    if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; }))
      return Status::InvalidArgument(where + k + ": unknown field");
  }
  return Status::Ok();
}

Result<std::string> Text(const json& j, const char* field, bool required, size_t max, const std::string& where = "") {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    if (required) return Status::InvalidArgument(where + field + ": required");
    return std::string();
  }
  if (!it->is_string()) return Status::InvalidArgument(where + field + ": must be a string");
  const std::string v = it->get<std::string>();
  if (required && v.empty()) return Status::InvalidArgument(where + field + ": must not be empty");
  if (Status s = wire::CheckText(where + field, v, max); !s.ok()) return s;
  return v;
}

Result<std::string> Id(const json& j, const char* field, const std::string& where = "") {
  auto it = j.find(field);
  if (it == j.end() || !it->is_string()) return Status::InvalidArgument(where + field + ": required string");
  const std::string v = it->get<std::string>();
  if (Status s = wire::CheckId(where + field, v); !s.ok()) return s;
  return v;
}

Result<int64_t> Integer(const json& j, const char* field, int64_t lo, int64_t hi, const std::string& where = "") {
  auto it = j.find(field);
  if (it == j.end() || !(it->is_number_integer())) return Status::InvalidArgument(where + field + ": required integer");
  const int64_t v = it->get<int64_t>();
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(hi)) return Status::InvalidArgument(where + field + ": out of range");
  if (v < lo || v > hi)
    return Status::InvalidArgument(where + field + ": must be " + std::to_string(lo) + ".." + std::to_string(hi));
  return v;
}

Result<double> Number(const json& j, const char* field, wire::Range range, const std::string& where = "") {
  auto it = j.find(field);
  if (it == j.end() || !it->is_number()) return Status::InvalidArgument(where + field + ": required number");
  const double v = it->get<double>();
  if (Status s = wire::CheckRange(where + field, v, range); !s.ok()) return s;
  return v;
}

std::string Sha256(const std::string& s) { return digest::Sha256Hex(s); }

}  // namespace

struct Downstream::Impl {
  HubStore& store;
  int retention_h;
  std::optional<Sealer> sealer;
  std::function<bool(std::function<void()>)> submit;

  struct Waiter {
    std::string site;
    uint64_t after;
    uint32_t kinds;  // bit per v1::DownKind
    uint64_t last_seq;
    std::chrono::steady_clock::time_point deadline;
    std::function<void(DownAnswer)> respond;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Waiter> waiters;

  // Group commit of HQ orders: one caller at a time (the leader) appends every order queued
  // so far in one transaction; the others wait for their answer (CommitOrder). Each waits on
  // its own condition variable: a commit wakes exactly the callers it answered, and hands the
  // lead to the first caller still queued, instead of waking every waiter to find out.
  struct QueuedOrder {
    const DownstreamLog::OrderAppend* in = nullptr;
    std::optional<Result<DownAppend>> out;
    bool lead = false;
    std::condition_variable cv;
  };
  std::mutex order_mu;
  std::vector<QueuedOrder*> order_queue;
  bool order_leader = false;
  bool woken = false;
  bool stopping = false;
  std::thread thread;

  Impl(HubStore& s, int r, std::optional<Sealer> k, std::function<bool(std::function<void()>)> f)
      : store(s), retention_h(r), sealer(std::move(k)), submit(std::move(f)) {}
};

Downstream::Downstream(HubStore& store, Clock& clock, DownstreamMetrics& metrics, int retention_h,
                       std::optional<Sealer> sealer, std::function<bool(std::function<void()>)> submit)
    : clock_(clock),
      log_(store),
      metrics_(metrics),
      impl_(std::make_unique<Impl>(store, retention_h, std::move(sealer), std::move(submit))) {}

Downstream::~Downstream() { Stop(); }

namespace {

// An order's JSON body (design.md, "Downstream"): order_id, lines [{sku, qty}], optional
// customer {name, phone, address}, optional ts (RFC 3339 or epoch ms).
Status ParseOrder(const json& j, v1::HqOrder* order) {
  if (Status s = OnlyKnown(j, {"order_id", "lines", "customer", "ts"}, ""); !s.ok()) return s;
  auto id = Id(j, "order_id");
  if (!id.ok()) return id.status();
  order->set_order_id(*id);
  auto lines = j.find("lines");
  if (lines == j.end() || !lines->is_array() || lines->empty())
    return Status::InvalidArgument("lines: required non-empty array of {\"sku\", \"qty\"}");
  if (lines->size() > wire::kMaxOrderLines)
    return Status::InvalidArgument("lines: at most " + std::to_string(wire::kMaxOrderLines) + " lines");
  for (size_t i = 0; i < lines->size(); ++i) {
    const json& l = (*lines)[i];
    const std::string where = "lines[" + std::to_string(i) + "].";
    if (!l.is_object()) return Status::InvalidArgument("lines[" + std::to_string(i) + "]: must be an object");
    if (Status s = OnlyKnown(l, {"sku", "qty"}, where); !s.ok()) return s;
    auto sku = Id(l, "sku", where);
    if (!sku.ok()) return sku.status();
    auto qty = Integer(l, "qty", 1, wire::kMaxLineQty, where);
    if (!qty.ok()) return qty.status();
    auto* line = order->add_lines();
    line->set_sku(*sku);
    line->set_qty(*qty);
  }
  if (auto c = j.find("customer"); c != j.end() && !c->is_null()) {
    if (!c->is_object()) return Status::InvalidArgument("customer: must be an object {name, phone, address}");
    if (Status s = OnlyKnown(*c, {"name", "phone", "address"}, "customer."); !s.ok()) return s;
    for (const char* f : {"name", "phone", "address"}) {
      auto v = Text(*c, f, false, wire::kMaxFreeText, "customer.");
      if (!v.ok()) return v.status();
      v1::Customer* cu = order->mutable_customer();
      (std::string_view(f) == "name" ? *cu->mutable_name() : std::string_view(f) == "phone" ? *cu->mutable_phone() : *cu->mutable_address()) = *v;
    }
  }
  if (auto t = j.find("ts"); t != j.end() && !t->is_null()) {
    int64_t ms = 0;
    if (t->is_number_integer()) {
      ms = t->get<int64_t>();
    } else if (t->is_string()) {
      auto p = wire::ParseRfc3339(t->get<std::string>());
      if (!p.ok()) return Status::InvalidArgument("ts: " + p.status().message());
      ms = *p;
    } else {
      return Status::InvalidArgument("ts: must be RFC 3339 or epoch milliseconds");
    }
    if (Status s = wire::CheckTs("ts", ms); !s.ok()) return s;
    order->set_ts_ms(ms);
  }
  return Status::Ok();
}

}  // namespace

DownAnswer Downstream::PostOrder(const std::string& site, const std::string& body, const std::string& issued_by,
                                 std::optional<AuditEntry> audit) {
  std::string err;
  auto j = ParseObject(body, &err);
  if (!j) return Error(400, err);
  v1::DownCommand cmd;
  cmd.set_kind(v1::DOWN_ORDER);
  if (Status s = ParseOrder(*j, cmd.mutable_order()); !s.ok()) return Error(400, s.message());
  cmd.set_command_id(DownCommandId(v1::DOWN_ORDER, cmd.order().order_id()));
  cmd.set_issued_ms(clock_.NowMs());
  cmd.set_issued_by(issued_by);
  // The idempotency digest: the order without its customer, plus a keyed digest of the
  // customer, so the log compares bodies without holding personal data in clear.
  std::string sealed;
  v1::HqOrder plain = cmd.order();
  std::string customer_digest;
  if (cmd.order().has_customer()) {
    if (!impl_->sealer)
      return Error(400, "customer: this hub has no privacy key ([privacy] key_file), so it cannot keep customer data");
    const std::string clear = cmd.order().customer().SerializeAsString();
    sealed = impl_->sealer->Seal(clear);
    customer_digest = impl_->sealer->KeyedDigestHex(clear);
    plain.clear_customer();
    cmd.mutable_order()->clear_customer();
  }
  const std::string digest = Sha256(plain.SerializeAsString() + "|" + customer_digest);
  // The hub's escrow decision is taken in the append's transaction (docs/escrow.md); orders
  // posted at the same time share one transaction and one commit (CommitOrder).
  const std::string order_id = cmd.order().order_id();
  auto r = CommitOrder({site, std::move(cmd), digest, std::move(sealed), std::move(audit)});
  if (!r.ok()) return Error(503, r.status().message());
  if (r->conflict)
    return Error(409, "order '" + order_id + "' was already sent to site '" + site + "' with another body");
  if (!r->repeated) {
    metrics_.appended[v1::DOWN_ORDER].fetch_add(1, std::memory_order_relaxed);
    if (r->escrow) metrics_.escrow_accepted.fetch_add(1, std::memory_order_relaxed);
    Notify();
  }
  DownAnswer a = Accepted({{"site", site},
                           {"down_seq", r->down_seq},
                           {"command_id", r->command_id},
                           {"status", r->escrow ? "accepted" : "pending"},
                           {"decided_by", r->escrow ? "hub" : "site"}});
  a.audited = r->audited;
  return a;
}

// At most this many orders share one commit: bounds the transaction while concurrent calls
// (at most the worker pool's size) always fit in one or two.
constexpr size_t kMaxOrdersPerCommit = 256;

Result<DownAppend> Downstream::CommitOrder(const DownstreamLog::OrderAppend& order) {
  Impl::QueuedOrder me;
  me.in = &order;
  std::unique_lock<std::mutex> l(impl_->order_mu);
  impl_->order_queue.push_back(&me);
  if (!impl_->order_leader) impl_->order_leader = me.lead = true;
  while (!me.out) {
    if (!me.lead) {
      me.cv.wait(l);
      continue;
    }
    me.lead = false;
    const size_t n = std::min(impl_->order_queue.size(), kMaxOrdersPerCommit);
    std::vector<Impl::QueuedOrder*> batch(impl_->order_queue.begin(), impl_->order_queue.begin() + static_cast<ptrdiff_t>(n));
    impl_->order_queue.erase(impl_->order_queue.begin(), impl_->order_queue.begin() + static_cast<ptrdiff_t>(n));
    l.unlock();
    std::vector<DownstreamLog::OrderAppend> in;
    in.reserve(batch.size());
    for (const auto* q : batch) in.push_back(*q->in);
    auto r = log_.AppendOrders(in);
    l.lock();
    // Under the lock: a waiter returns (and its QueuedOrder goes) only after it is released.
    for (size_t i = 0; i < batch.size(); ++i) {
      if (r.ok()) batch[i]->out.emplace((*r)[i]);
      else batch[i]->out.emplace(r.status());
      if (batch[i] != &me) batch[i]->cv.notify_one();
    }
    if (impl_->order_queue.empty()) {
      impl_->order_leader = false;
    } else {
      Impl::QueuedOrder* next = impl_->order_queue.front();
      next->lead = true;
      if (next != &me) next->cv.notify_one();
    }
  }
  return std::move(*me.out);
}

DownAnswer Downstream::PostCancel(const std::string& site, const std::string& order_id, const std::string& body,
                                  const std::string& issued_by) {
  if (Status s = wire::CheckId("order_id", order_id); !s.ok()) return Error(400, s.message());
  v1::DownCommand cmd;
  cmd.set_kind(v1::DOWN_CANCEL);
  cmd.mutable_cancel()->set_order_id(order_id);
  // An empty body is a cancellation without a reason.
  if (!body.empty()) {
    std::string err;
    auto j = ParseObject(body, &err);
    if (!j) return Error(400, err);
    if (Status s = OnlyKnown(*j, {"reason"}, ""); !s.ok()) return Error(400, s.message());
    auto reason = Text(*j, "reason", false, wire::kMaxFreeText);
    if (!reason.ok()) return Error(400, reason.status().message());
    cmd.mutable_cancel()->set_reason(*reason);
  }
  cmd.set_command_id(DownCommandId(v1::DOWN_CANCEL, order_id));
  cmd.set_issued_ms(clock_.NowMs());
  cmd.set_issued_by(issued_by);
  auto r = log_.Append(site, cmd, Sha256(cmd.cancel().SerializeAsString()), "");
  if (!r.ok()) return Error(503, r.status().message());
  if (r->conflict)
    return Error(409, "a cancellation of order '" + order_id + "' was already sent to site '" + site + "' with another reason");
  if (!r->repeated) {
    metrics_.appended[v1::DOWN_CANCEL].fetch_add(1, std::memory_order_relaxed);
    Notify();
  }
  return Accepted({{"site", site}, {"down_seq", r->down_seq}, {"command_id", r->command_id}});
}

DownAnswer Downstream::PutCatalog(const std::string& sku, const std::string& body, const std::string& issued_by) {
  if (Status s = wire::CheckId("sku", sku); !s.ok()) return Error(400, s.message());
  std::string err;
  auto j = ParseObject(body, &err);
  if (!j) return Error(400, err);
  if (Status s = OnlyKnown(*j, {"name", "unit", "price_cents", "temp_min_c", "temp_max_c", "shelf_life_h"}, ""); !s.ok())
    return Error(400, s.message());
  v1::CatalogItem item;
  item.set_sku(sku);
  auto name = Text(*j, "name", true, wire::kMaxFreeText);
  if (!name.ok()) return Error(400, name.status().message());
  auto unit = Text(*j, "unit", true, kMaxUnitBytes);
  if (!unit.ok()) return Error(400, unit.status().message());
  auto price = Integer(*j, "price_cents", 0, kMaxPriceCents);
  if (!price.ok()) return Error(400, price.status().message());
  item.set_name(*name);
  item.set_unit(*unit);
  item.set_price_cents(*price);
  for (const char* f : {"temp_min_c", "temp_max_c"}) {
    if (!j->contains(f) || (*j)[f].is_null()) continue;
    auto v = Number(*j, f, wire::kTempC);
    if (!v.ok()) return Error(400, v.status().message());
    std::string_view(f) == "temp_min_c" ? item.set_temp_min_c(*v) : item.set_temp_max_c(*v);
  }
  if (item.has_temp_min_c() && item.has_temp_max_c() && item.temp_min_c() > item.temp_max_c())
    return Error(400, "temp_min_c: must not be above temp_max_c");
  if (j->contains("shelf_life_h") && !(*j)["shelf_life_h"].is_null()) {
    auto v = Integer(*j, "shelf_life_h", 1, kMaxShelfLifeH);
    if (!v.ok()) return Error(400, v.status().message());
    item.set_shelf_life_h(*v);
  }
  auto r = log_.PutCatalog(item, Sha256(item.SerializeAsString()), clock_.NowMs(), issued_by);
  if (!r.ok()) return Error(503, r.status().message());
  if (!r->unchanged) {
    metrics_.appended[v1::DOWN_CATALOG].fetch_add(r->sites.size(), std::memory_order_relaxed);
    Notify();
  }
  json sites = json::array();
  for (const auto& [site, seq] : r->sites) sites.push_back({{"site", site}, {"down_seq", seq}});
  return Accepted({{"sku", sku}, {"version", r->version}, {"command_id", r->command_id}, {"sites", std::move(sites)}});
}

DownAnswer Downstream::PutFences(const std::string& site, const std::string& body, const std::string& issued_by) {
  std::string err;
  auto j = ParseObject(body, &err);
  if (!j) return Error(400, err);
  // The edge's own parser (edge/geofence, a module of its own that hubd may link): what the
  // hub accepts is exactly what the site will load.
  const std::string canonical = j->dump();
  auto fences = geofence::FenceSet::FromGeoJson(canonical, "body");
  if (!fences.ok()) return Error(400, fences.status().message());
  v1::DownCommand cmd;
  cmd.set_kind(v1::DOWN_FENCES);
  cmd.mutable_fences()->set_geojson(canonical);
  cmd.set_issued_ms(clock_.NowMs());
  cmd.set_issued_by(issued_by);
  auto r = log_.AppendVersioned(site, cmd, Sha256(canonical),
                                [](v1::DownCommand& c, uint64_t v) { c.mutable_fences()->set_version(v); });
  if (!r.ok()) return Error(503, r.status().message());
  if (!r->repeated) {
    metrics_.appended[v1::DOWN_FENCES].fetch_add(1, std::memory_order_relaxed);
    Notify();
  }
  return Accepted({{"site", site}, {"down_seq", r->down_seq}, {"command_id", r->command_id}, {"version", r->version}});
}

DownAnswer Downstream::PutColdchainRules(const std::string& site, const std::string& body, const std::string& issued_by) {
  std::string err;
  auto j = ParseObject(body, &err);
  if (!j) return Error(400, err);
  if (Status s = OnlyKnown(*j, {"rules"}, ""); !s.ok()) return Error(400, s.message());
  auto rules = j->find("rules");
  if (rules == j->end() || !rules->is_array()) return Error(400, "rules: required array of {\"sensors\", \"min_c\", \"max_c\", \"for_s\"}");
  if (rules->size() > kMaxRules) return Error(400, "rules: at most " + std::to_string(kMaxRules) + " rules");
  v1::DownCommand cmd;
  cmd.set_kind(v1::DOWN_COLDCHAIN_RULES);
  for (size_t i = 0; i < rules->size(); ++i) {
    const json& r = (*rules)[i];
    const std::string where = "rules[" + std::to_string(i) + "].";
    if (!r.is_object()) return Error(400, "rules[" + std::to_string(i) + "]: must be an object");
    if (Status s = OnlyKnown(r, {"sensors", "min_c", "max_c", "for_s"}, where); !s.ok()) return Error(400, s.message());
    auto sensors = Text(r, "sensors", true, kMaxSensorGlobBytes, where);
    if (!sensors.ok()) return Error(400, sensors.status().message());
    auto lo = Number(r, "min_c", wire::kTempC, where);
    if (!lo.ok()) return Error(400, lo.status().message());
    auto hi = Number(r, "max_c", wire::kTempC, where);
    if (!hi.ok()) return Error(400, hi.status().message());
    if (*lo >= *hi) return Error(400, where + "min_c: must be below max_c");
    auto for_s = Integer(r, "for_s", 0, kMaxForS, where);
    if (!for_s.ok()) return Error(400, for_s.status().message());
    auto* rule = cmd.mutable_rules()->add_rules();
    rule->set_sensors(*sensors);
    rule->set_min_c(*lo);
    rule->set_max_c(*hi);
    rule->set_for_s(*for_s);
  }
  cmd.set_issued_ms(clock_.NowMs());
  cmd.set_issued_by(issued_by);
  auto r = log_.AppendVersioned(site, cmd, Sha256(cmd.rules().SerializeAsString()),
                                [](v1::DownCommand& c, uint64_t v) { c.mutable_rules()->set_version(v); });
  if (!r.ok()) return Error(503, r.status().message());
  if (!r->repeated) {
    metrics_.appended[v1::DOWN_COLDCHAIN_RULES].fetch_add(1, std::memory_order_relaxed);
    Notify();
  }
  return Accepted({{"site", site}, {"down_seq", r->down_seq}, {"command_id", r->command_id}, {"version", r->version}});
}

DownAnswer Downstream::PutEscrowTarget(const std::string& site, const std::string& sku, const std::string& body,
                                       const std::string& issued_by) {
  if (Status s = wire::CheckId("sku", sku); !s.ok()) return Error(400, s.message());
  std::string err;
  auto j = ParseObject(body, &err);
  if (!j) return Error(400, err);
  if (Status s = OnlyKnown(*j, {"target"}, ""); !s.ok()) return Error(400, s.message());
  auto target = Integer(*j, "target", 0, wire::kMaxStockUnits);
  if (!target.ok()) return Error(400, target.status().message());
  v1::DownCommand cmd;
  cmd.set_kind(v1::DOWN_ESCROW_TARGET);
  cmd.mutable_escrow_target()->set_sku(sku);
  cmd.mutable_escrow_target()->set_target(*target);
  cmd.set_issued_ms(clock_.NowMs());
  cmd.set_issued_by(issued_by);
  auto r = log_.AppendNumbered(site, cmd, sku);
  if (!r.ok()) return Error(503, r.status().message());
  metrics_.appended[v1::DOWN_ESCROW_TARGET].fetch_add(1, std::memory_order_relaxed);
  Notify();
  return Accepted({{"site", site}, {"down_seq", r->down_seq}, {"command_id", r->command_id}, {"target", *target}});
}

DownAnswer Downstream::GetLane(const std::string& site) {
  auto lane = log_.Lane(site);
  if (!lane.ok()) return Error(503, lane.status().message());
  DownAnswer a;
  const int64_t now = clock_.NowMs();
  a.body = {{"site", site},
            {"last_seq", lane->last_seq},
            {"delivered_seq", lane->delivered_seq},
            {"pending", lane->pending},
            {"oldest_pending_ms", lane->pending > 0 ? std::max<int64_t>(0, now - lane->oldest_pending_ms) : 0}};
  return a;
}

DownAnswer Downstream::GetCatalog() {
  auto items = log_.Catalog();
  if (!items.ok()) return Error(503, items.status().message());
  json out = json::array();
  for (const v1::CatalogItem& i : *items) {
    json o = {{"sku", i.sku()}, {"name", i.name()}, {"unit", i.unit()}, {"price_cents", i.price_cents()}, {"version", i.version()}};
    if (i.has_temp_min_c()) o["temp_min_c"] = i.temp_min_c();
    if (i.has_temp_max_c()) o["temp_max_c"] = i.temp_max_c();
    if (i.has_shelf_life_h()) o["shelf_life_h"] = i.shelf_life_h();
    out.push_back(std::move(o));
  }
  DownAnswer a;
  a.body = {{"items", std::move(out)}};
  return a;
}

namespace {

// A current versioned command as an HQ read: `body` of it, the version as a strong ETag.
DownAnswer CurrentAnswer(const Result<std::optional<CurrentCommand>>& current, const char* what,
                         const std::function<json(const v1::DownCommand&)>& body) {
  if (!current.ok()) return Error(503, current.status().message());
  if (!current->has_value()) return Error(404, std::string("HQ has set no ") + what + " for this site");
  DownAnswer a;
  a.body = body((*current)->command);
  a.etag = "\"" + std::to_string((*current)->version) + "\"";
  return a;
}

}  // namespace

DownAnswer Downstream::GetFences(const std::string& site) {
  return CurrentAnswer(log_.Current(site, v1::DOWN_FENCES), "fences", [](const v1::DownCommand& c) {
    // Stored as PutFences canonicalised it (nlohmann's dump), so it parses back.
    return json::parse(c.fences().geojson(), nullptr, false);
  });
}

DownAnswer Downstream::GetColdchainRules(const std::string& site) {
  return CurrentAnswer(log_.Current(site, v1::DOWN_COLDCHAIN_RULES), "coldchain rules", [](const v1::DownCommand& c) {
    json j = ToJson(c.rules());
    j.erase("version");  // in the ETag: the body is what PUT takes
    if (!j.contains("rules")) j["rules"] = json::array();
    return j;
  });
}

void Downstream::Notify() {
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    // Nothing parked: nothing to wake, and no thread switch per HQ order. A pull that read
    // before this append and parks after it is not missed: parking rechecks at once (Pull).
    if (impl_->waiters.empty()) return;
    impl_->woken = true;
  }
  impl_->cv.notify_one();
}

// Reads the commands past `after`: the answer, or nullopt in *answer's place when there is
// nothing to send yet and the caller may wait.
DownAnswer Downstream::RunPull(const std::string& site, uint64_t after, uint32_t kinds, bool* nothing, uint64_t* last_seq) {
  *nothing = false;
  // The site is online: hand back what it no longer wants to grant (its target went down), so
  // the return travels in this pull (docs/escrow.md, "Rebalancing").
  auto returned = log_.ReturnEscrow(site, clock_.NowMs());
  if (!returned.ok()) return Error(503, returned.status().message());
  if (*returned > 0) metrics_.appended[v1::DOWN_ESCROW_RETURN].fetch_add(*returned, std::memory_order_relaxed);
  auto lane = log_.Acknowledge(site, after, clock_.NowMs());
  if (!lane.ok()) return Error(503, lane.status().message());
  auto cmds = log_.Commands(site, after, kMaxCommandsPerPull);
  if (!cmds.ok()) return Error(503, cmds.status().message());
  v1::DownBatch batch;
  batch.set_site(site);
  uint64_t through = std::max(after, lane->last_seq);
  if (!cmds->empty()) {
    // A full page covers up to its last command only; a shorter one covers the whole log as
    // read before it (every command up to last_seq had committed by then).
    through = static_cast<int>(cmds->size()) == kMaxCommandsPerPull ? cmds->back().command.down_seq()
                                                                    : std::max(through, cmds->back().command.down_seq());
  }
  for (StoredDownCommand& c : *cmds) {
    if ((kinds & (1u << c.command.kind())) == 0) continue;
    if (!c.sealed_customer.empty()) {
      if (!impl_->sealer) return Error(500, "command " + c.command.command_id() + " has a sealed customer and the hub has no privacy key");
      auto clear = impl_->sealer->Open(c.sealed_customer);
      if (!clear.ok() || !c.command.mutable_order()->mutable_customer()->ParseFromString(*clear))
        return Error(500, "command " + c.command.command_id() + ": its customer does not open with the hub's privacy key");
    }
    *batch.add_commands() = std::move(c.command);
  }
  batch.set_through_seq(through);
  batch.set_last_seq(std::max(lane->last_seq, through));
  *last_seq = batch.last_seq();
  *nothing = batch.commands_size() == 0 && through == after;
  DownAnswer a;
  a.batch = std::move(batch);
  return a;
}

void Downstream::Pull(const std::string& site, const std::multimap<std::string, std::string>& params,
                      std::function<void(DownAnswer)> respond) {
  uint64_t after = 0;
  int64_t wait_ms = 0;
  uint32_t kinds = (1u << v1::DOWN_ORDER) | (1u << v1::DOWN_CANCEL);  // a site that names none
  for (const auto& [k, v] : params) {
    if (k == "after") {
      auto n = ParseU64(v);
      if (!n || *n > (uint64_t{1} << 62)) return respond(Error(400, "after: must be an integer 0..2^62"));
      after = *n;
    } else if (k == "wait_ms") {
      auto n = ParseU64(v);
      if (!n) return respond(Error(400, "wait_ms: must be a non-negative integer"));
      wait_ms = static_cast<int64_t>(std::min<uint64_t>(*n, kMaxWaitMs));
    } else if (k == "kinds") {
      kinds = 0;
      // Names this hub does not know are skipped: a newer site may announce more kinds.
      size_t start = 0;
      while (start <= v.size()) {
        const size_t comma = std::min(v.find(',', start), v.size());
        if (auto kind = DownKindByName(std::string_view(v).substr(start, comma - start))) kinds |= 1u << *kind;
        start = comma + 1;
      }
    }
  }
  bool nothing = false;
  uint64_t last_seq = 0;
  DownAnswer a = RunPull(site, after, kinds, &nothing, &last_seq);
  if (!nothing || wait_ms == 0) {
    metrics_.pulls.fetch_add(1, std::memory_order_relaxed);
    return respond(std::move(a));
  }
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    if (!impl_->stopping) {
      impl_->waiters.push_back({site, after, kinds, last_seq,
                                std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms), std::move(respond)});
      metrics_.parked.fetch_add(1, std::memory_order_relaxed);
      // Checked at once: an append between the read above and the parking is not missed.
      impl_->woken = true;
      impl_->cv.notify_one();
      return;
    }
  }
  metrics_.pulls.fetch_add(1, std::memory_order_relaxed);
  respond(std::move(a));
}

void Downstream::Start() {
  impl_->thread = std::thread([this] { Loop(); });
}

void Downstream::Loop() {
  auto next_trim = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> l(impl_->mu);
  while (!impl_->stopping) {
    impl_->cv.wait_for(l, kRecheckInterval, [&] { return impl_->stopping || impl_->woken; });
    if (impl_->stopping) break;
    impl_->woken = false;
    std::vector<Impl::Waiter> ready;
    if (!impl_->waiters.empty()) {
      l.unlock();
      // One read for every parked site: it also sees what other replicas appended.
      auto lanes = log_.Lanes();
      l.lock();
      std::map<std::string, uint64_t> last;
      if (lanes.ok()) {
        for (const auto& [site, lane] : *lanes) last[site] = lane.last_seq;
      } else {
        spdlog::warn("downstream: cannot read the lanes: {}", lanes.status().ToString());
      }
      const auto now = std::chrono::steady_clock::now();
      std::vector<Impl::Waiter> still;
      for (auto& w : impl_->waiters) {
        auto it = last.find(w.site);
        (w.deadline <= now || (it != last.end() && it->second > w.after) ? ready : still).push_back(std::move(w));
      }
      impl_->waiters.swap(still);
    }
    l.unlock();
    for (auto& w : ready) {
      metrics_.parked.fetch_sub(1, std::memory_order_relaxed);
      auto shared = std::make_shared<Impl::Waiter>(std::move(w));
      const bool queued = impl_->submit([this, shared] {
        bool nothing = false;
        uint64_t last_seq = 0;
        metrics_.pulls.fetch_add(1, std::memory_order_relaxed);
        shared->respond(RunPull(shared->site, shared->after, shared->kinds, &nothing, &last_seq));
      });
      if (!queued) {
        DownAnswer busy = Error(503, "hub busy, retry later");
        shared->respond(std::move(busy));
      }
    }
    if (std::chrono::steady_clock::now() >= next_trim) {
      next_trim = std::chrono::steady_clock::now() + kTrimInterval;
      const int64_t cutoff = clock_.NowMs() - int64_t{impl_->retention_h} * 3600 * 1000;
      if (Status s = log_.Trim(cutoff); !s.ok()) spdlog::warn("downstream: retention trim failed: {}", s.ToString());
    }
    l.lock();
  }
}

void Downstream::Stop() {
  std::vector<Impl::Waiter> parked;
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    if (impl_->stopping && !impl_->thread.joinable()) return;
    impl_->stopping = true;
    parked.swap(impl_->waiters);
  }
  impl_->cv.notify_one();
  if (impl_->thread.joinable()) impl_->thread.join();
  // Parked pulls get an empty batch: the site pulls again (from another replica, or after the
  // restart) with nothing lost.
  for (auto& w : parked) {
    metrics_.parked.fetch_sub(1, std::memory_order_relaxed);
    DownAnswer a;
    a.batch.emplace();
    a.batch->set_site(w.site);
    a.batch->set_through_seq(w.after);
    a.batch->set_last_seq(w.last_seq);
    w.respond(std::move(a));
  }
}

}  // namespace freshsync::hub
