#include "daemon/tcp_listen.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace edgekv::daemon {

Status listen_error(std::string_view option, const std::string& endpoint, std::string_view what,
                    int err) {
  std::string message = "cannot bind ";
  message.append(option).append(" ").append(endpoint).append(": ").append(what);
  if (err != 0) message.append(": ").append(std::strerror(err));
  return Status::unavailable(std::move(message));
}

Result<int> listen_tcp(std::string_view option, const std::string& endpoint,
                       std::string_view host_port) {
  size_t colon = host_port.rfind(':');
  if (colon == std::string_view::npos) return listen_error(option, endpoint, "no port", 0);
  std::string host(host_port.substr(0, colon));
  std::string port(host_port.substr(colon + 1));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(host == "*" ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) return listen_error(option, endpoint, gai_strerror(rc), 0);
  int fd = ::socket(found->ai_family, found->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int err = errno;
    ::freeaddrinfo(found);
    return listen_error(option, endpoint, "socket", err);
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, kListenBacklog) != 0) {
    int err = errno;
    ::freeaddrinfo(found);
    ::close(fd);
    return listen_error(option, endpoint, std::strerror(err), 0);
  }
  ::freeaddrinfo(found);
  return fd;
}

}  // namespace edgekv::daemon
