// Status and Result<T>: errors as values, with a few coarse codes (after LevelDB's Status).
//
// Thread-safety: values, freely copyable. An ok Status carries no allocation.
// Codes:
//   kInvalidArgument  bad input from outside (a payload, a config key, a request); never retried
//   kNotFound         the thing asked for does not exist
//   kConflict         valid input refused by a rule (negative stock, illegal transition, seq gap)
//   kUnavailable      a peer or resource is down; retrying later may succeed
//   kIOError          the disk or the OS failed (full disk, fsync error); may recover
//   kInternal         a bug or corrupted state
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace freshsync {

enum class StatusCode { kOk = 0, kInvalidArgument, kNotFound, kConflict, kUnavailable, kIOError, kInternal };

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status Conflict(std::string m) { return {StatusCode::kConflict, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "CODE: message", or "OK".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace freshsync
