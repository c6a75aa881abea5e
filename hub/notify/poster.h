// WebhookPoster: sends one delivery to a webhook's receiver (the seam between the notifier and
// the network; tests of the notifier's logic may put a fake behind it). CurlWebhookPoster is
// the real one, on libcurl:
//   - POST with the headers of hub/notify/webhook.h, the body signed with the webhook's secret;
//   - one attempt is bounded by the webhook's timeout_ms (connect included, at most 5 s of it),
//     so a receiver that stalls costs a timeout, never a stuck notifier;
//   - https verifies the receiver's certificate and host name (ca_file, or the system's CAs);
//     no redirects are followed and only http and https are spoken.
// Thread-safety: CurlWebhookPoster::Post may be called from several threads at once (one
// libcurl handle per call); construct one before starting threads (curl_global_init).
#pragma once

#include <string>

#include "common/config.h"
#include "hub/notify/webhook.h"

namespace freshsync::hub {

struct WebhookAttempt {
  int status = 0;     // HTTP status; 0: no answer (connect, TLS, timeout, reset)
  int retry_after_s = -1;  // the receiver's Retry-After in seconds, -1: none
  std::string error;  // "" when status is 2xx
  bool ok() const { return status >= 200 && status < 300; }
};

class WebhookPoster {
 public:
  virtual ~WebhookPoster() = default;
  virtual WebhookAttempt Post(const HubWebhook& hook, const WebhookDelivery& delivery) = 0;
};

class CurlWebhookPoster final : public WebhookPoster {
 public:
  CurlWebhookPoster();
  WebhookAttempt Post(const HubWebhook& hook, const WebhookDelivery& delivery) override;
};

}  // namespace freshsync::hub
