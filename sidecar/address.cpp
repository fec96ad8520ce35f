#include "address.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

namespace sidecar {
namespace {

int compare_ip(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family == AF_INET) {
    return memcmp(&reinterpret_cast<const sockaddr_in&>(a).sin_addr,
                  &reinterpret_cast<const sockaddr_in&>(b).sin_addr, sizeof(in_addr));
  }
  return memcmp(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr,
                &reinterpret_cast<const sockaddr_in6&>(b).sin6_addr, sizeof(in6_addr));
}

}  // namespace

bool address_less(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return a.ss_family == AF_INET;
  return compare_ip(a, b) < 0;
}

bool same_address(const sockaddr_storage& a, const sockaddr_storage& b) {
  return a.ss_family == b.ss_family && compare_ip(a, b) == 0;
}

size_t format_address(const sockaddr_storage& a, int port, char* out, size_t size) {
  char ip[INET6_ADDRSTRLEN] = "";
  int n = 0;
  if (a.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, ip, sizeof ip);
    n = snprintf(out, size, "[%s]:%d", ip, port);
  } else {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, ip, sizeof ip);
    n = snprintf(out, size, "%s:%d", ip, port);
  }
  return n < 0 ? 0 : static_cast<size_t>(n);
}

}  // namespace sidecar
