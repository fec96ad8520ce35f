#include "url.hpp"

#include <curl/curl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sidecar {

const char* parse_url(const char* url, url_parts* out) {
  CURLU* u = curl_url();
  if (u == nullptr) return "out of memory";
  char* scheme = nullptr;
  char* host = nullptr;
  char* port = nullptr;
  CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
  if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
  if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
  const char* why = nullptr;
  if (rc != CURLUE_OK || scheme == nullptr || host == nullptr || port == nullptr) {
    why = "not a URL with a host";
  } else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
    why = "not an http or https URL";
  } else if (strlen(host) >= sizeof out->host) {
    why = "host name too long";
  } else {
    snprintf(out->scheme, sizeof out->scheme, "%s", scheme);
    snprintf(out->host, sizeof out->host, "%s", host);
    out->port = atoi(port);
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return why;
}

}  // namespace sidecar
