// The one reading of a watched URL (the target and every probe): its scheme, host and port,
// through libcurl's own URL parser, so what start-up accepts is what the transfers will use.
#pragma once

namespace sidecar {

struct url_parts {
  char scheme[8] = "";  // "http" or "https"
  char host[256] = "";  // a name, an IPv4 address, or an IPv6 address in brackets
  int port = 0;         // the URL's, or the scheme's default
};

// nullptr when url is an http:// or https:// URL with a host (parts filled in), else why not.
const char* parse_url(const char* url, url_parts* out);

}  // namespace sidecar
