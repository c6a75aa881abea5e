// The inbound message types edged consumes, one descriptor each: where it arrives (topic
// pattern under the root), which MQTT client subscribes to it, its metrics label and its dedupe
// kind. The decoder (edge/decode.cc, its codec table), the applier's counters (edge/ingest.*),
// the subscription filters, the metrics (edge/metrics.cc), the store's dedupe claims, the
// inbound topics others build (InboundTopic) and the fuzzer's topic choice all derive from this
// table, so a new type is one row here plus one row in the codec table and one ApplyOne
// specialisation in edge/store.cc, and each of those is checked at compile time below or where
// it lives (docs/architecture.md, "Adding a message type").
//
// Before this table each of those places listed the types itself; three of them (the
// subscription filters, the per-kind counter arrays, the fuzzer's topic mask) just missed a
// new type without any error.
//
// Thread-safety: constants only.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "edge/decode.h"

namespace freshsync::edge {

// Which subscriber takes a type (edge/ingest.h, "Three clients"): telemetry can be paused on
// its own by the disk quota, stock and orders keep flowing.
enum class IngestClient { kMain, kTelemetry };

struct MessageType {
  TopicKind kind = TopicKind::kUnknown;
  // Topic segments under {root}; "+" is a device id (wire::IsDeviceId), kept in TopicInfo::device.
  // The only place an inbound topic is spelled: ClassifyTopic matches against it, and whoever
  // publishes one (the simulator, the store's dead letters) builds it with InboundTopic().
  std::array<std::string_view, 3> topic{};
  // The same pattern as operators read it ("vehicles/{id}/gps"), for the unknown-topic reason.
  std::string_view topic_doc;
  IngestClient client = IngestClient::kMain;
  // The subscription filter under {root} that carries this type. Broader than the pattern
  // (".../#") so that a malformed topic next to it is still received and dead-lettered.
  std::string_view filter;
  // Value of the `kind` label of freshsync_ingest_applied_total (docs/operations.md).
  std::string_view metrics_label;
  // The `kind` column of the store's dedupe table (docs/formats.md): persisted, so a value is
  // never reused nor renumbered, whatever the row's position.
  int dedupe_kind = 0;
};

// Row i describes std::variant_alternative_t<i, Message>, and its kind is TopicKind(i).
inline constexpr MessageType kMessageTypes[] = {
    {TopicKind::kStockMovements, {"stock", "movements"}, "stock/movements", IngestClient::kMain, "stock/#", "stock_movement", 1},
    {TopicKind::kOrderStatus, {"orders", "status"}, "orders/status", IngestClient::kMain, "orders/#", "order_status", 2},
    {TopicKind::kGps, {"vehicles", "+", "gps"}, "vehicles/{id}/gps", IngestClient::kTelemetry, "vehicles/#", "gps", 3},
    {TopicKind::kClimate, {"sensors", "+", "climate"}, "sensors/{id}/climate", IngestClient::kTelemetry, "sensors/#", "climate", 4},
    {TopicKind::kDockScans, {"docks", "+", "scans"}, "docks/{door}/scans", IngestClient::kMain, "docks/#", "dock_scan", 5},
};

inline constexpr size_t kMessageTypeCount = std::size(kMessageTypes);

// The variant index of a message type: also its row in kMessageTypes and in every array kept
// per type (counters, codecs).
template <class T, size_t I = 0>
constexpr size_t MessageIndex() {
  if constexpr (I == std::variant_size_v<Message>) {
    static_assert(I != std::variant_size_v<Message>, "not an alternative of edge::Message");
    return I;
  } else if constexpr (std::is_same_v<T, std::variant_alternative_t<I, Message>>) {
    return I;
  } else {
    return MessageIndex<T, I + 1>();
  }
}

constexpr const MessageType& MessageTypeOf(TopicKind kind) { return kMessageTypes[static_cast<size_t>(kind)]; }

// The topic a type arrives on under `root`, its device segment ("+") filled with `device`.
inline std::string InboundTopic(TopicKind kind, std::string_view root, std::string_view device = {}) {
  std::string topic(root);
  for (std::string_view segment : MessageTypeOf(kind).topic)
    if (!segment.empty()) topic.append("/").append(segment == "+" ? device : segment);
  return topic;
}

namespace message_types_detail {
constexpr bool Complete(const MessageType& t) {
  size_t segments = 0;
  for (size_t k = 0; k < t.topic.size(); ++k) segments += t.topic[k].empty() ? 0 : 1;
  return segments >= 2 && !t.topic[0].empty() && !t.topic[1].empty() && t.topic[0] != "+" && !t.topic_doc.empty() &&
         !t.metrics_label.empty() && t.dedupe_kind > 0 &&
         // the filter is "{first segment}/#": ingest subscribes to it, ClassifyTopic sorts it out
         t.filter.size() == t.topic[0].size() + 2 && t.filter.substr(0, t.topic[0].size()) == t.topic[0] &&
         t.filter.substr(t.topic[0].size()) == "/#";
}
constexpr bool SameTopic(const MessageType& a, const MessageType& b) {
  for (size_t k = 0; k < a.topic.size(); ++k)
    if (a.topic[k] != b.topic[k]) return false;
  return true;
}
constexpr bool TableIsConsistent() {
  for (size_t i = 0; i < kMessageTypeCount; ++i) {
    if (static_cast<size_t>(kMessageTypes[i].kind) != i || !Complete(kMessageTypes[i])) return false;
    for (size_t j = 0; j < i; ++j)
      if (kMessageTypes[j].metrics_label == kMessageTypes[i].metrics_label || SameTopic(kMessageTypes[j], kMessageTypes[i]) ||
          kMessageTypes[j].dedupe_kind == kMessageTypes[i].dedupe_kind)
        return false;
  }
  return true;
}
}  // namespace message_types_detail

static_assert(kMessageTypeCount == std::variant_size_v<Message>, "one kMessageTypes row per edge::Message alternative");
static_assert(static_cast<size_t>(TopicKind::kOwnOutput) == kMessageTypeCount,
              "TopicKind lists the inbound types first, in edge::Message order, then kOwnOutput and kUnknown");
static_assert(message_types_detail::TableIsConsistent(),
              "each kMessageTypes row: kind == its index, a topic of 2-3 segments (first and second set, the first not \"+\"), "
              "topic_doc, the filter \"{first segment}/#\", and a unique topic, metrics label and dedupe kind > 0");

}  // namespace freshsync::edge
