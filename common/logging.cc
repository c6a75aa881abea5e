#include "common/logging.h"

#include <cstdlib>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

namespace freshsync {

Status SetLogLevel(const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") return Status::InvalidArgument("log level '" + level + "' is unknown");
  spdlog::set_level(parsed);
  return Status::Ok();
}

Status InitLogging(const std::string& program, const std::string& level) {
  std::shared_ptr<spdlog::logger> logger;
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    // The journal adds its own timestamps and keeps the priority as a structured field.
    logger = std::make_shared<spdlog::logger>(program, std::make_shared<spdlog::sinks::systemd_sink_mt>(program));
    logger->set_pattern("%v");
  } else {
    logger = std::make_shared<spdlog::logger>(program, std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  }
  spdlog::set_default_logger(logger);
  return SetLogLevel(level);
}

}  // namespace freshsync
