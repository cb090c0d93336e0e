#include "client/subscription.h"

#include <chrono>
#include <utility>

#include "client/wire.h"
#include "client/zmq_io.h"
#include "common/clock.h"

namespace edgekv::client {

struct Subscription::Impl {
  explicit Impl(SubscriptionOptions opts) : options_(std::move(opts)) {
    // No prefixes means everything: the empty prefix matches every key.
    std::vector<std::string> prefixes = options_.prefixes;
    if (prefixes.empty()) prefixes.emplace_back();
    Result<std::unique_ptr<zmq::context_t>> made_context = internal::make_context();
    if (!made_context.ok()) {
      setup_status_ = made_context.status();
      return;
    }
    context_ = std::move(made_context).value();
    Result<std::unique_ptr<zmq::socket_t>> made_socket =
        internal::connect_socket(*context_, zmq::socket_type::sub, options_.feed_endpoint,
                                 options_.max_message_bytes, prefixes);
    if (!made_socket.ok()) {
      setup_status_ = made_socket.status();
      return;
    }
    socket_ = std::move(made_socket).value();
  }

  Result<ChangeEvent> next(int timeout_ms) {
    EDGEKV_RETURN_IF_ERROR(setup_status_);
    const bool forever = timeout_ms < 0;
    const MonoTime deadline =
        clock_.mono_now() + std::chrono::milliseconds(forever ? 0 : timeout_ms);
    for (;;) {
      Result<std::optional<internal::Frames>> received = internal::try_receive(*socket_);
      if (!received.ok()) return received.status();
      if (received->has_value()) return internal::decode_feed_message(**received);
      int wait_ms = -1;
      if (!forever) {
        const MonoTime now = clock_.mono_now();
        if (now >= deadline) break;
        wait_ms =
            static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count());
      }
      Result<bool> readable = internal::wait_readable(*socket_, wait_ms);
      if (!readable.ok()) return readable.status();
    }
    return Status::timeout("no change event from " + options_.feed_endpoint + " within " +
                           std::to_string(timeout_ms) + " ms");
  }

  SubscriptionOptions options_;
  Status setup_status_;  // not OK: every next() fails with it
  RealClock clock_;
  std::unique_ptr<zmq::context_t> context_;  // declared first: destroyed after the socket
  std::unique_ptr<zmq::socket_t> socket_;
};

Subscription::Subscription(SubscriptionOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
Subscription::~Subscription() = default;
Subscription::Subscription(Subscription&&) noexcept = default;
Subscription& Subscription::operator=(Subscription&&) noexcept = default;

Result<ChangeEvent> Subscription::next(int timeout_ms) { return impl_->next(timeout_ms); }

const SubscriptionOptions& Subscription::options() const { return impl_->options_; }

std::string connectable_feed_endpoint(std::string_view feed_endpoint,
                                      std::string_view client_endpoint) {
  constexpr std::string_view kTcp = "tcp://";
  // The host of a "tcp://HOST:PORT" endpoint; empty when it is not one.
  auto host_of = [&](std::string_view endpoint) -> std::string_view {
    if (!endpoint.starts_with(kTcp)) return {};
    std::string_view rest = endpoint.substr(kTcp.size());
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return {};
    return rest.substr(0, colon);
  };
  std::string_view feed_host = host_of(feed_endpoint);
  if (feed_host != "*" && feed_host != "0.0.0.0" && feed_host != "[::]" && feed_host != "::") {
    return std::string(feed_endpoint);
  }
  std::string_view client_host = host_of(client_endpoint);
  if (client_host.empty() || client_host == "*") client_host = "127.0.0.1";
  // A client endpoint may carry a source address ("tcp://src;host:port"): keep only the host.
  if (size_t semi = client_host.find(';'); semi != std::string_view::npos) {
    client_host = client_host.substr(semi + 1);
  }
  std::string out(kTcp);
  out += client_host;
  out += feed_endpoint.substr(kTcp.size() + feed_host.size());
  return out;
}

}  // namespace edgekv::client
