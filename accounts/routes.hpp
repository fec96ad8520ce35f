// accounts' routes: POST /account (sign-up), POST /login (JSON -> a bearer token; a form ->
// the token in a cookie and 303 to /accounts_page), POST /logout, GET /auth (nginx
// auth_request: 204 + X-User, or 401), GET /.well-known/jwks.json, GET /accounts_page (HTML,
// only when logged in; else the login form), /health, /metrics; the rest is a JSON 404/405.
#pragma once

#include <cstdint>
#include <string>

#include "hasher.hpp"
#include "http_server.hpp"
#include "keys.hpp"
#include "metrics.hpp"
#include "pg_client.hpp"
#include "rate_limit.hpp"
#include "token.hpp"
#include "token_cache.hpp"

namespace accounts {

enum class route : uint8_t {
  account,
  login,
  logout,
  auth,
  jwks,
  page,
  health,
  metrics,
  other,
  count
};
const char* route_name(route r);

// The request headers the server keeps for us (http_request::headers, in this order).
inline constexpr const char* captured_headers[] = {"authorization", "cookie", "x-real-ip"};
enum : uint8_t { hdr_authorization, hdr_cookie, hdr_real_ip };

inline constexpr const char* cookie_name = "accounts_token";

enum class signup_outcome : uint8_t {
  created,
  invalid,
  duplicate,
  rate_limited,
  overloaded,
  error,
  count
};
enum class login_outcome : uint8_t {
  success,
  failure,  // unknown e-mail or wrong password: one outcome, as one answer
  rate_limited,
  overloaded,
  invalid,
  error,
  count
};

inline constexpr double duration_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                              0.01,   0.025,   0.05,   0.1,   0.25,   1.0};

struct app {
  core::pg_client* pg = nullptr;
  hasher* hashes = nullptr;
  const key_set* keys = nullptr;
  token_settings tokens;
  token_cache* cache = nullptr;
  rate_limiter* by_address = nullptr;
  rate_limiter* by_account = nullptr;
  // Sign-ups per client address (each costs a hash: without a bound one client could keep the
  // hashing queue full and every login would get 503).
  rate_limiter* signups_by_address = nullptr;
  std::string dummy_hash;  // verified for unknown e-mails: same work as a wrong password
  bool secure_cookie = false;
  bool trust_real_ip = false;  // take X-Real-IP (set by our nginx) as the client address
  uint32_t page_size = 20;
  uint32_t max_body = 4096;
  // How long a proxy may reuse /auth's yes for the same credentials (X-Accel-Expires on the
  // 204, never past the token's exp); 0: no header, every request is asked.
  int64_t auth_reuse_s = 5;
  const core::http_server* server = nullptr;
  bool draining = false;
  double start_unix = 0;
  // Extra header lines of an answer given at once (the server copies them on return).
  char header_scratch[4096];

  uint64_t requests[static_cast<size_t>(route::count)][5] = {};
  uint64_t signups[static_cast<size_t>(signup_outcome::count)] = {};
  uint64_t logins[static_cast<size_t>(login_outcome::count)] = {};
  uint64_t token_checks[static_cast<size_t>(token_check::count)] = {};
  uint64_t token_cache_hits = 0;
  core::fixed_histogram<sizeof duration_buckets / sizeof duration_buckets[0]> durations{
      duration_buckets};
};

core::body_policy body_policy(void* ctx, llhttp_method_t method, std::string_view target);
void handle_request(void* ctx, const core::http_request& request, core::http_reply& reply);
void observe_request(void* ctx, const core::http_observation& o);
void write_metrics(const app& a, core::buf_writer& w);

// Pure pieces, exposed for the unit tests.
// Field checks: nullptr when fine, else the message for the field.
const char* check_username(std::string_view u);
const char* check_email(std::string_view e);  // after lower-casing
const char* check_password(std::string_view p);
void html_escape(std::string& out, std::string_view s);
// The token of a request: "Authorization: Bearer <t>" first, then the session cookie.
std::string_view token_of(std::string_view authorization, std::string_view cookie);

}  // namespace accounts
