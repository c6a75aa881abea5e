#include "common/logging.h"

#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

namespace freshsync {
namespace {

std::string g_site;  // written once before threads start (SetLogSite)

// spdlog's systemd_sink with FreshSync's structured fields added (logging.h).
class JournalSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit JournalSink(std::string ident) : ident_(std::move(ident)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    static const int kPriority[] = {7, 7, 6, 4, 3, 2, 6};  // trace..critical, off
    const std::string_view text(msg.payload.data(), msg.payload.size());
    std::string fields[6] = {
        "MESSAGE=" + std::string(text),
        "PRIORITY=" + std::to_string(kPriority[static_cast<int>(msg.level)]),
        "SYSLOG_IDENTIFIER=" + ident_,
        "TID=" + std::to_string(msg.thread_id),
        "FRESHSYNC_SITE=" + g_site,
        "FRESHSYNC_COMPONENT=" + LogComponent(text),
    };
    iovec iov[6];
    int n = 0;
    for (auto& f : fields) {
      if (f.back() == '=') continue;  // empty field: leave it out
      iov[n].iov_base = f.data();
      iov[n].iov_len = f.size();
      ++n;
    }
    sd_journal_sendv(iov, n);
  }
  void flush_() override {}

 private:
  std::string ident_;
};

}  // namespace

void SetLogSite(const std::string& site) { g_site = site; }

std::string LogComponent(std::string_view message) {
  size_t i = 0;
  while (i < message.size() && i <= 24 &&
         ((message[i] >= 'a' && message[i] <= 'z') || message[i] == '_' || message[i] == '-'))
    ++i;
  if (i == 0 || i > 24 || i >= message.size() || message[i] != ':') return "";
  return std::string(message.substr(0, i));
}

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
    logger = std::make_shared<spdlog::logger>(program, std::make_shared<JournalSink>(program));
    logger->set_pattern("%v");
  } else {
    logger = std::make_shared<spdlog::logger>(program, std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  }
  spdlog::set_default_logger(logger);
  return SetLogLevel(level);
}

}  // namespace freshsync
