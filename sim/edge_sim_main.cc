// edge-sim: publishes simulated site traffic (trucks, cold rooms, stock floor) to a broker.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <mqtt/async_client.h>

#include "sim/site_simulator.h"

int main(int argc, char** argv) {
  freshsync::sim::SimOptions opt;
  std::string uri = "tcp://127.0.0.1:1883";
  std::string fences_out;
  double speed = 1.0;
  double duration_s = 0;
  int64_t max_messages = 0;
  bool dry_run = false;
  bool realtime_clock = true;

  CLI::App app{"edge-sim: simulated site traffic for FreshSync (trucks, cold rooms, stock floor)"};
  app.add_option("--uri", uri, "MQTT broker URI")->capture_default_str();
  app.add_option("--topic-root", opt.topic_root, "topic root")->capture_default_str();
  app.add_option("--seed", opt.seed, "random seed; same seed, same traffic")->capture_default_str();
  app.add_option("--trucks", opt.trucks, "number of trucks")->capture_default_str()->check(CLI::Range(0, 10000));
  app.add_option("--cold-rooms", opt.cold_rooms, "number of cold-room sensors")->capture_default_str()->check(CLI::Range(0, 10000));
  app.add_option("--gps-interval-ms", opt.gps_interval_ms, "GPS fix interval per truck (simulated ms)")->capture_default_str()->check(CLI::Range(100, 3600000));
  app.add_option("--climate-interval-ms", opt.climate_interval_ms, "sensor reading interval (simulated ms)")->capture_default_str()->check(CLI::Range(100, 3600000));
  app.add_option("--orders-per-min", opt.orders_per_min, "new orders per simulated minute")->capture_default_str()->check(CLI::Range(0.0, 6000.0));
  app.add_option("--faults-per-day", opt.compressor_faults_per_day, "cold-room compressor faults per simulated day")->capture_default_str();
  app.add_option("--speed", speed, "simulated seconds per real second")->capture_default_str()->check(CLI::Range(0.01, 100000.0));
  app.add_option("--duration", duration_s, "stop after this many real seconds (0: run until killed)")->capture_default_str();
  app.add_option("--max-messages", max_messages, "stop after this many messages (0: no limit)")->capture_default_str();
  app.add_option("--write-fences", fences_out, "write the site's geofences (GeoJSON) to this file and exit");
  app.add_flag("--dry-run", dry_run, "print 'topic payload' lines instead of publishing");
  app.add_flag("!--sim-time", realtime_clock, "start simulated time at 2026-01-01 instead of now (deterministic output)");
  CLI11_PARSE(app, argc, argv);

  if (realtime_clock) {
    opt.start_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  freshsync::sim::SiteSimulator sim(opt);
  if (!fences_out.empty()) {
    std::ofstream out(fences_out);
    out << sim.FencesGeoJson() << "\n";
    if (!out) {
      std::cerr << "edge-sim: cannot write " << fences_out << "\n";
      return 1;
    }
    return 0;
  }

  std::unique_ptr<mqtt::async_client> client;
  if (!dry_run) {
    client = std::make_unique<mqtt::async_client>(uri, "edge-sim-" + std::to_string(opt.seed) + "-" + std::to_string(::getpid()),
                                                  mqtt::create_options(MQTTVERSION_3_1_1, 100000));
    auto conn = mqtt::connect_options_builder().mqtt_version(MQTTVERSION_3_1_1).clean_session(true).automatic_reconnect(true).finalize();
    try {
      client->connect(conn)->wait_for(std::chrono::seconds(10));
    } catch (const mqtt::exception& e) {
      std::cerr << "edge-sim: cannot connect to " << uri << ": " << e.what() << "\n";
      return 1;
    }
    if (!client->is_connected()) {
      std::cerr << "edge-sim: cannot connect to " << uri << "\n";
      return 1;
    }
  }

  int64_t sent = 0;
  const auto started = std::chrono::steady_clock::now();
  mqtt::delivery_token_ptr last;
  constexpr int64_t kTickMs = 100;
  while (true) {
    const auto tick_start = std::chrono::steady_clock::now();
    for (const auto& m : sim.Advance(static_cast<int64_t>(kTickMs * speed))) {
      if (dry_run) {
        std::cout << m.topic << " " << m.payload << "\n";
      } else {
        try {
          last = client->publish(m.topic, m.payload.data(), m.payload.size(), 1, false);
        } catch (const mqtt::exception& e) {
          std::cerr << "edge-sim: publish failed: " << e.what() << "\n";
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
      }
      if (max_messages > 0 && ++sent >= max_messages) break;
      if (max_messages <= 0) ++sent;
    }
    if (max_messages > 0 && sent >= max_messages) break;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (duration_s > 0 && elapsed >= duration_s) break;
    std::this_thread::sleep_until(tick_start + std::chrono::milliseconds(kTickMs));
  }
  if (client) {
    if (last) last->wait_for(std::chrono::seconds(30));
    client->disconnect()->wait_for(std::chrono::seconds(5));
  }
  std::cerr << "edge-sim: " << sent << " messages\n";
  return 0;
}
