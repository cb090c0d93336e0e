// Status and Result<T>: the one error type of edgekv.
//
// Every fallible operation returns a Status (or a Result<T> holding either a value or a
// non-OK Status). A Code exists only where a caller reacts to it differently; the message
// is for a person and names the problem ("key is 1500 bytes, max-key-bytes is 1024").
// SQLite, ZeroMQ and protobuf errors are mapped to Status in exactly one place each.
//
// Thread-safety: plain values; safe to copy between threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/assert.h"

namespace edgekv {

// Wire-stable: the numeric values travel in proto/edgekv.proto's Code enum.
enum class Code : uint8_t {
  kOk = 0,
  kNotFound = 1,
  kInvalidArgument = 2,
  kUnavailable = 3,
  kTimeout = 4,
  kOverloaded = 5,
  kInternal = 6,
  kIoError = 7,             // the disk failed us (SQLite I/O error, full disk, permissions)
  kCorruption = 8,          // stored data does not decode
  kFailedPrecondition = 9,  // e.g. data directory created with other settings
};

std::string_view code_name(Code code);  // "NOT_FOUND", ...

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return {}; }
  static Status not_found(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status invalid_argument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status timeout(std::string m) { return {Code::kTimeout, std::move(m)}; }
  static Status overloaded(std::string m) { return {Code::kOverloaded, std::move(m)}; }
  static Status internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Status io_error(std::string m) { return {Code::kIoError, std::move(m)}; }
  static Status corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status failed_precondition(std::string m) {
    return {Code::kFailedPrecondition, std::move(m)};
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "NOT_FOUND: key not found"; "OK" for success.
  std::string to_string() const;

  bool operator==(const Status&) const = default;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// A value or a non-OK Status. Accessing the value of an error is a broken invariant.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    EDGEKV_ASSERT(!status_.ok());
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & {
    EDGEKV_ASSERT(ok());
    return *value_;
  }
  const T& value() const& {
    EDGEKV_ASSERT(ok());
    return *value_;
  }
  T&& value() && {
    EDGEKV_ASSERT(ok());
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace edgekv

// Returns early from the enclosing function with the Status of `expr` when it is not OK.
#define EDGEKV_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::edgekv::Status edgekv_status_ = (expr);        \
    if (!edgekv_status_.ok()) return edgekv_status_; \
  } while (0)
