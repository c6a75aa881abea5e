#include "hub/notify/poster.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <memory>
#include <mutex>

namespace freshsync::hub {
namespace {

// The receiver's answer body is not used; take it without keeping more than a line of it for
// the error message.
size_t KeepSome(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  const size_t bytes = size * n;
  if (s->size() < 200) s->append(data, std::min(bytes, 200 - s->size()));
  return bytes;
}

size_t ReadRetryAfter(char* data, size_t size, size_t n, void* out) {
  const size_t bytes = size * n;
  std::string line(data, bytes);
  static constexpr char kName[] = "retry-after:";
  if (line.size() > sizeof kName - 1) {
    std::string head = line.substr(0, sizeof kName - 1);
    std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return std::tolower(c); });
    if (head == kName) {
      char* end = nullptr;
      const long v = std::strtol(line.c_str() + sizeof kName - 1, &end, 10);
      if (end != line.c_str() + sizeof kName - 1 && v >= 0) *static_cast<int*>(out) = static_cast<int>(std::min(v, 86400L));
    }
  }
  return bytes;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

CurlWebhookPoster::CurlWebhookPoster() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

WebhookAttempt CurlWebhookPoster::Post(const HubWebhook& hook, const WebhookDelivery& d) {
  WebhookAttempt out;
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) {
    out.error = "libcurl: cannot create a handle";
    return out;
  }
  curl_slist* raw = nullptr;
  for (const std::string& h : {std::string("Content-Type: application/json"), std::string(kEventHeader) + ": " + d.event,
                               std::string(kIdempotencyHeader) + ": " + d.key,
                               std::string(kSignatureHeader) + ": " + WebhookSignature(hook.secret, d.body),
                               std::string("Expect:")}) {
    raw = curl_slist_append(raw, h.c_str());
  }
  std::unique_ptr<curl_slist, SlistDeleter> headers(raw);
  std::string answer;
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, hook.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(hook.timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min<int64_t>(hook.timeout_ms, 5000)));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!hook.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, hook.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, d.body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(d.body.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, KeepSome);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, ReadRetryAfter);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &out.retry_after_s);
  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    out.error = std::string("libcurl: ") + curl_easy_strerror(rc);
    return out;
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  out.status = static_cast<int>(status);
  if (!out.ok()) {
    const size_t eol = answer.find_first_of("\r\n");
    out.error = "HTTP " + std::to_string(status) + (answer.empty() ? "" : ": " + answer.substr(0, eol));
  }
  return out;
}

}  // namespace freshsync::hub
