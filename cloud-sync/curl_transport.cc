#include "cloud-sync/curl_transport.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>

namespace freshsync::sync {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

}  // namespace

int HttpResponse::RetryAfterSeconds() const {
  auto it = headers.find("retry-after");
  if (it == headers.end() || it->second.empty()) return -1;
  for (char c : it->second) {
    if (c < '0' || c > '9') return -1;  // HTTP-date form: not used by hubd, ignored
  }
  if (it->second.size() > 7) return 9999999;
  return std::atoi(it->second.c_str());
}

CurlTransport::CurlTransport(CurlTransportOptions options) : options_(std::move(options)) {
  GlobalInit();
  curl_ = curl_easy_init();
  if (curl_ == nullptr) std::abort();  // only fails when out of memory at start-up
}

CurlTransport::~CurlTransport() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

int CurlTransport::OnProgress(void* self, long long, long long, long long, long long) {
  return static_cast<CurlTransport*>(self)->interrupted_.load() ? 1 : 0;
}

size_t CurlTransport::OnBody(char* data, size_t size, size_t n, void* self) {
  auto* t = static_cast<CurlTransport*>(self);
  const size_t len = size * n;
  if (t->current_->body.size() + len > t->options_.max_response_bytes) {
    t->overflow_ = true;
    return 0;  // makes curl fail the transfer with CURLE_WRITE_ERROR
  }
  t->current_->body.append(data, len);
  return len;
}

size_t CurlTransport::OnHeader(char* data, size_t size, size_t n, void* self) {
  auto* t = static_cast<CurlTransport*>(self);
  const size_t len = size * n;
  std::string line(data, len);
  if (line.rfind("HTTP/", 0) == 0) {
    t->current_->headers.clear();  // a new response (after a 100 Continue, or a redirect)
    return len;
  }
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    t->current_->headers[Lower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
  }
  return len;
}

Result<HttpResponse> CurlTransport::Send(const HttpRequest& request) {
  if (interrupted_.load()) return Status::Unavailable("interrupted: transport stopped");
  CURL* c = static_cast<CURL*>(curl_);
  HttpResponse response;
  current_ = &response;
  overflow_ = false;

  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca.c_str());
  if (!options_.cert.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, options_.cert.c_str());
  if (!options_.key.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, options_.key.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_ms));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_ms));
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &CurlTransport::OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &CurlTransport::OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &CurlTransport::OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, this);

  if (request.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  } else {
    current_ = nullptr;
    return Status::InvalidArgument("unsupported method " + request.method);
  }

  curl_slist* headers = nullptr;
  for (const auto& [k, v] : request.headers) headers = curl_slist_append(headers, (k + ": " + v).c_str());
  // No "Expect: 100-continue" round trip before each large batch.
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

  const CURLcode rc = curl_easy_perform(c);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  current_ = nullptr;

  if (rc != CURLE_OK) {
    std::string kind;
    switch (rc) {
      case CURLE_COULDNT_CONNECT:
      case CURLE_COULDNT_RESOLVE_HOST:
        kind = "connect: ";
        break;
      case CURLE_OPERATION_TIMEDOUT:
        kind = "timeout: ";
        break;
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_GOT_NOTHING:
      case CURLE_PARTIAL_FILE:
        kind = "reset: ";
        break;
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CACERT_BADFILE:
        kind = "tls: ";
        break;
      case CURLE_ABORTED_BY_CALLBACK:
        kind = "interrupted: ";
        break;
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return Status::InvalidArgument(std::string("bad url: ") + curl_easy_strerror(rc));
      default:
        kind = overflow_ ? "other: response too large, " : "other: ";
    }
    return Status::Unavailable(kind + curl_easy_strerror(rc));
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  response.status = static_cast<int>(code);
  return response;
}

}  // namespace freshsync::sync
