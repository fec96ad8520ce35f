// Replica addresses as the resolver finds them and the replica slots keep them: one ordering,
// one equality (the IP only: a replica is its address, the port is the URL's), one label.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

namespace sidecar {

// IPv4 before IPv6, then by the address bytes.
bool address_less(const sockaddr_storage& a, const sockaddr_storage& b);
// Same family and same IP (ports are not compared).
bool same_address(const sockaddr_storage& a, const sockaddr_storage& b);
// "10.0.0.3:8080" or "[fd00::3]:8080"; returns the length written.
size_t format_address(const sockaddr_storage& a, int port, char* out, size_t size);

}  // namespace sidecar
