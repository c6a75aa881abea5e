// The shipped site broker config (packaging/mosquitto/) against a real mosquitto: a device may
// publish only to its own topics, read only what edged publishes back, and nobody gets in
// without a password.
#include <gtest/gtest.h>
#include <mqtt/client.h>

#include <sstream>
#include <thread>

#include "tests/support/harness.h"

namespace freshsync::testing {
namespace {

class ShippedMosquittoAclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The shipped ACL file as is; the listener lines are the test's own (a free port, no
    // websockets), the rest of the shipped conf applies.
    const std::string acl = std::string(FRESHSYNC_SOURCE_DIR) + "/packaging/mosquitto/freshsync.acl";
    passwd_ = tmp_.File("passwd");
    WriteFile(passwd_, "");
    for (const char* user : {"edged", "truck-07", "truck-08", "terminal-01", "cold-1", "cold-2"}) {
      ASSERT_EQ(RunShell("mosquitto_passwd -b '" + passwd_ + "' " + user + " pw-" + user, tmp_.File("passwd.log")), 0);
    }
    // A websockets listener beside the TCP one, as the shipped conf has (there on 9001 with TLS;
    // here plain on loopback, the TLS policy is tests/security/tls_test.cc's).
    ws_port_ = PickFreePort();
    broker_ = std::make_unique<MosquittoBroker>(tmp_.File("broker"), "allow_anonymous false\npassword_file " + passwd_ + "\nacl_file " + acl +
                                                                         "\nlistener " + std::to_string(ws_port_) +
                                                                         " 127.0.0.1\nprotocol websockets\n");
    ASSERT_TRUE(broker_->Start());
  }

  std::string Pub(const std::string& user, const std::string& topic) {
    return "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker_->port()) + " -q 1 -u " + user + " -P pw-" + user + " -t '" + topic +
           "' -m '" + user + "'";
  }

  TempDir tmp_;
  int ws_port_ = 0;
  std::string passwd_;
  std::unique_ptr<MosquittoBroker> broker_;
};

TEST_F(ShippedMosquittoAclTest, DevicePublishesOnlyToItsOwnTopics) {
  const std::string out = tmp_.File("sub.out");
  ChildProcess sub({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()), "-u", "edged", "-P", "pw-edged", "-q", "1",
                    "-t", "fs/#", "-v"},
                   out);
  ASSERT_TRUE(sub.Start());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  ASSERT_EQ(RunShell(Pub("truck-07", "fs/vehicles/truck-07/gps")), 0);
  ASSERT_EQ(RunShell(Pub("truck-07", "fs/vehicles/truck-08/gps")), 0);   // accepted at protocol level, dropped by the ACL
  ASSERT_EQ(RunShell(Pub("truck-07", "fs/stock/movements")), 0);        // a truck is no terminal
  ASSERT_EQ(RunShell(Pub("terminal-01", "fs/stock/movements")), 0);
  // Sensors likewise, and no device may speak for edged (its events, alerts, order state).
  ASSERT_EQ(RunShell(Pub("cold-1", "fs/sensors/cold-1/climate")), 0);
  ASSERT_EQ(RunShell(Pub("cold-1", "fs/sensors/cold-2/climate")), 0);
  ASSERT_EQ(RunShell(Pub("truck-07", "fs/alerts/coldchain")), 0);
  ASSERT_EQ(RunShell(Pub("truck-07", "fs/orders/o-1/state")), 0);
  ASSERT_EQ(RunShell(Pub("truck-07", "fs/deadletter")), 0);
  ASSERT_EQ(RunShell(Pub("truck-08", "fs/vehicles/truck-08/gps")), 0);

  ASSERT_TRUE(WaitFor([&] { return ReadFile(out).find("fs/vehicles/truck-08/gps truck-08") != std::string::npos; }, std::chrono::seconds(5)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string seen = ReadFile(out);
  EXPECT_NE(seen.find("fs/vehicles/truck-07/gps truck-07"), std::string::npos) << seen;
  EXPECT_NE(seen.find("fs/stock/movements terminal-01"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("fs/vehicles/truck-08/gps truck-07"), std::string::npos) << "truck-07 wrote into truck-08's track:\n" << seen;
  EXPECT_EQ(seen.find("fs/stock/movements truck-07"), std::string::npos) << "a truck moved stock:\n" << seen;
  EXPECT_NE(seen.find("fs/sensors/cold-1/climate cold-1"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("fs/sensors/cold-2/climate cold-1"), std::string::npos) << "cold-1 wrote cold-2's readings:\n" << seen;
  EXPECT_EQ(seen.find("fs/alerts/coldchain truck-07"), std::string::npos) << "a device forged an alert:\n" << seen;
  EXPECT_EQ(seen.find("fs/orders/o-1/state truck-07"), std::string::npos) << "a device forged order state:\n" << seen;
  EXPECT_EQ(seen.find("fs/deadletter truck-07"), std::string::npos) << "a device forged a dead letter:\n" << seen;
}

// Reading: a device may not follow another device's track or readings, nor stock and order
// traffic (customer data travels in order messages); it may read what edged publishes back.
TEST_F(ShippedMosquittoAclTest, DeviceReadsOnlyWhatEdgedPublishesBack) {
  auto subscribe = [&](const std::string& user, const std::string& topic, const std::string& file) {
    return ChildProcess({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()), "-u", user, "-P", "pw-" + user,
                         "-q", "1", "-t", topic, "-v"},
                        file);
  };
  ChildProcess spy_track = subscribe("truck-07", "fs/vehicles/truck-08/gps", tmp_.File("spy-track.out"));
  ChildProcess spy_all = subscribe("truck-07", "fs/#", tmp_.File("spy-all.out"));
  ChildProcess spy_cold = subscribe("cold-1", "fs/sensors/#", tmp_.File("spy-cold.out"));
  ChildProcess edged = subscribe("edged", "fs/#", tmp_.File("edged.out"));  // the control: it sees everything
  for (ChildProcess* p : {&spy_track, &spy_all, &spy_cold, &edged}) ASSERT_TRUE(p->Start());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  ASSERT_EQ(RunShell(Pub("truck-08", "fs/vehicles/truck-08/gps")), 0);
  ASSERT_EQ(RunShell(Pub("cold-2", "fs/sensors/cold-2/climate")), 0);
  ASSERT_EQ(RunShell(Pub("terminal-01", "fs/orders/status")), 0);
  ASSERT_EQ(RunShell(Pub("terminal-01", "fs/stock/movements")), 0);
  ASSERT_EQ(RunShell(Pub("edged", "fs/events/geofence")), 0);

  ASSERT_TRUE(WaitFor([&] { return ReadFile(tmp_.File("edged.out")).find("fs/events/geofence edged") != std::string::npos; },
                      std::chrono::seconds(5)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string all = ReadFile(tmp_.File("edged.out"));
  for (const char* line : {"fs/vehicles/truck-08/gps truck-08", "fs/sensors/cold-2/climate cold-2", "fs/orders/status terminal-01",
                           "fs/stock/movements terminal-01"})
    EXPECT_NE(all.find(line), std::string::npos) << "the control subscriber missed " << line << ":\n" << all;
  EXPECT_EQ(ReadFile(tmp_.File("spy-track.out")), "") << "truck-07 followed truck-08's track";
  EXPECT_EQ(ReadFile(tmp_.File("spy-cold.out")), "") << "cold-1 read cold-2's readings";
  const std::string spied = ReadFile(tmp_.File("spy-all.out"));
  EXPECT_NE(spied.find("fs/events/geofence edged"), std::string::npos) << "devices may read edged's events:\n" << spied;
  for (const char* topic : {"fs/vehicles/", "fs/sensors/", "fs/orders/status", "fs/stock/"})
    EXPECT_EQ(spied.find(topic), std::string::npos) << "truck-07 read " << topic << ":\n" << spied;
}

TEST_F(ShippedMosquittoAclTest, NoPasswordNoEntry) {
  const int rc = RunShell("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker_->port()) + " -q 1 -t fs/stock/movements -m x",
                          tmp_.File("anon.log"));
  EXPECT_NE(rc, 0);
  const int wrong = RunShell("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker_->port()) + " -q 1 -u truck-07 -P wrong -t fs/vehicles/truck-07/gps -m x",
                             tmp_.File("wrong.log"));
  EXPECT_NE(wrong, 0);
}

// Customer push at the site (issue 15 item 2): a browser-like client over MQTT-over-websockets
// gets the retained state of an order that edged published before it connected, and may not
// read other traffic.
TEST_F(ShippedMosquittoAclTest, WebsocketClientGetsRetainedOrderState) {
  // edged publishes the order's state, retained (edge/: {root}/orders/{id}/state).
  ASSERT_EQ(RunShell("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker_->port()) +
                     " -q 1 -r -u edged -P pw-edged -t fs/orders/o-77/state -m '{\"order_id\":\"o-77\",\"status\":\"accepted\"}'"),
            0);
  ASSERT_EQ(RunShell("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker_->port()) +
                     " -q 1 -r -u edged -P pw-edged -t fs/stock/levels -m secret"),
            0);
  mqtt::client ws("ws://127.0.0.1:" + std::to_string(ws_port_), "ws-terminal-01", mqtt::create_options(MQTTVERSION_3_1_1));
  auto opts = mqtt::connect_options_builder().user_name("terminal-01").password("pw-terminal-01").clean_session(true).finalize();
  ASSERT_NO_THROW(ws.connect(opts));
  ws.start_consuming();
  ws.subscribe("fs/orders/o-77/state", 1);
  ws.subscribe("fs/stock/#", 1);
  mqtt::const_message_ptr msg;
  ASSERT_TRUE(ws.try_consume_message_for(&msg, std::chrono::seconds(5))) << "no retained order state over websockets";
  EXPECT_EQ(msg->get_topic(), "fs/orders/o-77/state");
  EXPECT_EQ(msg->to_string(), "{\"order_id\":\"o-77\",\"status\":\"accepted\"}");
  EXPECT_TRUE(msg->is_retained());
  // Nothing else: stock traffic is not for terminals and browsers.
  mqtt::const_message_ptr more;
  EXPECT_FALSE(ws.try_consume_message_for(&more, std::chrono::milliseconds(500))) << more->get_topic();
  ws.disconnect();
}

}  // namespace
}  // namespace freshsync::testing
