#include "tests/ingest/site.h"

#include <sqlite3.h>

#include <thread>

#include <gtest/gtest.h>

namespace freshsync::testing {

Publisher::Publisher(const std::string& uri, const std::string& client_id) {
  client_ = std::make_unique<mqtt::async_client>(uri, client_id, mqtt::create_options_builder().mqtt_version(MQTTVERSION_3_1_1).max_buffered_messages(10000).finalize(), nullptr);
  Connect();
}

Publisher::~Publisher() {
  try {
    Flush();
    if (client_->is_connected()) client_->disconnect()->wait_for(std::chrono::seconds(5));
  } catch (...) {
  }
}

void Publisher::Connect() {
  auto opts = mqtt::connect_options_builder()
                  .mqtt_version(MQTTVERSION_3_1_1)
                  .clean_session(true)
                  .max_inflight(1000)
                  .connect_timeout(std::chrono::seconds(5))
                  .finalize();
  for (int i = 0; i < 100; ++i) {
    try {
      if (client_->connect(opts)->wait_for(std::chrono::seconds(5)) && client_->is_connected()) return;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "publisher cannot connect";
}

void Publisher::Publish(const Msg& m, size_t window) {
  while (pending_.size() >= window) {
    pending_.front()->wait();
    pending_.pop_front();
  }
  pending_.push_back(client_->publish(m.topic, m.payload.data(), m.payload.size(), 1, false));
}

void Publisher::Flush() {
  while (!pending_.empty()) {
    pending_.front()->wait();
    pending_.pop_front();
  }
}

void Publisher::PublishReliably(const Msg& m) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    try {
      if (!client_->is_connected()) Connect();
      auto tok = client_->publish(m.topic, m.payload.data(), m.payload.size(), 1, false);
      if (tok->wait_for(std::chrono::seconds(5)) && tok->get_return_code() == 0) return;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "could not publish to " << m.topic;
}

Subscriber::Subscriber(const std::string& uri, const std::string& client_id, const std::string& filter) {
  client_ = std::make_unique<mqtt::async_client>(uri, client_id, mqtt::create_options_builder().mqtt_version(MQTTVERSION_3_1_1).max_buffered_messages(10000).finalize(), nullptr);
  client_->set_message_callback([this](mqtt::const_message_ptr m) {
    std::lock_guard<std::mutex> lock(mu_);
    payloads_.push_back(m->get_payload_str());
  });
  auto opts = mqtt::connect_options_builder().mqtt_version(MQTTVERSION_3_1_1).clean_session(true).finalize();
  client_->connect(opts)->wait();
  client_->subscribe(filter, 1)->wait();
}

Subscriber::~Subscriber() {
  try {
    client_->disconnect()->wait_for(std::chrono::seconds(5));
  } catch (...) {
  }
}

std::vector<std::string> Subscriber::Payloads() {
  std::lock_guard<std::mutex> lock(mu_);
  return payloads_;
}

Site::Site(SiteOptions options) {
  broker_ = std::make_unique<MosquittoBroker>(dir_.File("broker"), options.broker_conf);
  EXPECT_TRUE(broker_->Start());
  config_path_ = dir_.File("edged.toml");
  db_path_ = options.store_dir.empty() ? dir_.File("edge.db") : options.store_dir + "/edge.db";
  log_path_ = dir_.File("edged.log");
  const std::string mqtt = options.mqtt_table ? options.mqtt_table(broker_->Uri())
                                              : "[mqtt]\nuri = \"" + broker_->Uri() + "\"\ntopic_root = \"fs\"\n";
  WriteFile(config_path_, "site = \"" + options.site_id + "\"\n" + options.root_toml + mqtt + "[store]\npath = \"" + db_path_ + "\"\ndurability = \"normal\"\n" +
                              options.extra_toml);
}

Site::~Site() { edged_.Kill(); }

bool Site::StartEdged(std::map<std::string, std::string> env, std::chrono::milliseconds timeout) {
  env.insert(edged_env_.begin(), edged_env_.end());  // insert keeps the call's own values
  edged_ = ChildProcess({BinDir() + "/edged", "--config", config_path_}, log_path_, std::move(env));
  if (!edged_.Start()) return false;
  ++starts_;
  // Each run logs one "subscribed to" line once its subscription is acknowledged.
  return WaitFor(
      [&] {
        const std::string l = log();
        int n = 0;
        for (size_t p = l.find("subscribed to"); p != std::string::npos; p = l.find("subscribed to", p + 1)) ++n;
        return n >= starts_;
      },
      timeout);
}

namespace {
template <typename F>
void Query(const std::string& path, const std::string& sql, F f) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) f(st);
  sqlite3_finalize(st);
  sqlite3_close(db);
}
}  // namespace

int64_t Site::Int(const std::string& sql) const {
  int64_t v = -1;
  Query(db_path_, sql, [&](sqlite3_stmt* st) { v = sqlite3_column_int64(st, 0); });
  return v;
}

std::string Site::Text(const std::string& sql) const {
  std::string v;
  Query(db_path_, sql, [&](sqlite3_stmt* st) {
    if (auto* p = sqlite3_column_text(st, 0)) v = reinterpret_cast<const char*>(p);
  });
  return v;
}

bool Site::WaitInt(const std::string& sql, int64_t value, std::chrono::milliseconds timeout) const {
  return WaitFor([&] { return Int(sql) == value; }, timeout);
}

std::unique_ptr<Publisher> Site::NewPublisher(const std::string& id) { return std::make_unique<Publisher>(broker_->Uri(), id); }

void ExpectDenseOutbox(const Site& site) {
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox"), site.Int("SELECT MAX(seq) FROM outbox"));
  EXPECT_EQ(site.Int("SELECT COUNT(DISTINCT seq) FROM outbox"), site.Int("SELECT COUNT(*) FROM outbox"));
  EXPECT_EQ(site.Int("SELECT MIN(seq) FROM outbox"), 1);
  // Versions are dense per entity too: 1..n for each (entity, key).
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM (SELECT entity, key FROM outbox GROUP BY entity, key "
                     "HAVING COUNT(*) != MAX(version) OR COUNT(DISTINCT version) != COUNT(*))"),
            0);
}

}  // namespace freshsync::testing
