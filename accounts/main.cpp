// accounts: sign-up, login with EdDSA-signed JWTs, the accounts page, and /auth for nginx's
// auth_request, as a single-threaded libuv reactor (seed 001's accounts, issue 15).
//   settings -> core/config, HTTP -> core/http_server, routes -> accounts/routes,
//   passwords (argon2id on the thread pool) -> accounts/hasher, tokens -> accounts/token,
//   keys and JWKS -> accounts/keys, brute force -> accounts/rate_limit,
//   PostgreSQL -> core/pg_client, loop and signals -> core/loop.
#include <sodium.h>

#include <cstdio>
#include <string>

#include "config.hpp"
#include "hasher.hpp"
#include "healthcheck.hpp"
#include "http_server.hpp"
#include "keys.hpp"
#include "log.hpp"
#include "loop.hpp"
#include "pg_client.hpp"
#include "rate_limit.hpp"
#include "routes.hpp"
#include "token.hpp"
#include "token_cache.hpp"

namespace {

enum {
  opt_listen,
  opt_database,
  opt_database_password_file,
  opt_keys_dir,
  opt_signing_key,
  opt_issuer,
  opt_audience,
  opt_token_ttl,
  opt_hash_queue,
  opt_hash_memory,
  opt_hash_iterations,
  opt_secure_cookie,
  opt_trust_real_ip,
  opt_login_max_retries,
  opt_address_max_retries,
  opt_login_find_time,
  opt_login_ban_time,
  opt_signup_max,
  opt_signup_window,
  opt_page_size,
  opt_token_cache,
  opt_auth_reuse,
  opt_store_timeout,
  opt_connect_timeout,
  opt_answer_timeout,
  opt_drain_timeout,
  opt_access_log,
  opt_count
};

core::cli_option g_options[opt_count] = {
    {"--listen", "ACCOUNTS_LISTEN", "0.0.0.0:8080", "HOST:PORT",
     "address to listen on (numeric IPv4, [IPv6], port 0 picks a free port)"},
    {"--database", "ACCOUNTS_DATABASE_URL", "host=postgres dbname=accounts user=accounts",
     "CONNINFO", "PostgreSQL: a libpq connection string or postgresql:// URI (no password in it)"},
    {"--database-password-file", "ACCOUNTS_DATABASE_PASSWORD_FILE", nullptr, "FILE",
     "PostgreSQL password, read from a file (a Docker secret)"},
    {"--keys-dir", "ACCOUNTS_KEYS_DIR", "/run/secrets/accounts-keys", "DIR",
     "Ed25519 private keys, one PEM file per key named <kid>.pem (openssl genpkey -algorithm "
     "ed25519)"},
    {"--signing-key", "ACCOUNTS_SIGNING_KEY", nullptr, "KID",
     "the kid that signs new tokens (the other keys only verify); required"},
    {"--issuer", "ACCOUNTS_ISSUER", "accounts", "TEXT", "the tokens' iss (checked on verify)"},
    {"--audience", "ACCOUNTS_AUDIENCE", "stack", "TEXT", "the tokens' aud (checked on verify)"},
    {"--token-ttl", "ACCOUNTS_TOKEN_TTL", "15m", "DURATION", "lifetime of a token (exp - iat)"},
    {"--hash-queue", "ACCOUNTS_HASH_QUEUE", "64", "N",
     "most password hash/verify jobs at once (running + waiting); beyond it 503 + Retry-After"},
    {"--hash-memory", "ACCOUNTS_HASH_MEMORY", "19MiB", "SIZE",
     "argon2id memory per hash for new passwords (OWASP: 19 MiB with 2 iterations)"},
    {"--hash-iterations", "ACCOUNTS_HASH_ITERATIONS", "2", "N",
     "argon2id passes for new passwords (t)"},
    {"--secure-cookie", "ACCOUNTS_SECURE_COOKIE", "off", "on|off",
     "mark the session cookie Secure (on behind TLS)"},
    {"--trust-real-ip", "ACCOUNTS_TRUST_REAL_IP", "off", "on|off",
     "take X-Real-IP as the client address for rate limits (only behind our nginx, which sets "
     "it)"},
    {"--login-max-retries", "ACCOUNTS_LOGIN_MAX_RETRIES", "5", "N",
     "failed logins of one account within the find time before it is banned"},
    {"--address-max-retries", "ACCOUNTS_ADDRESS_MAX_RETRIES", "20", "N",
     "failed logins from one client address within the find time before it is banned"},
    {"--login-find-time", "ACCOUNTS_LOGIN_FIND_TIME", "2m", "DURATION",
     "window in which failed logins are counted"},
    {"--login-ban-time", "ACCOUNTS_LOGIN_BAN_TIME", "5m", "DURATION",
     "how long a banned account or address gets 429"},
    {"--signup-max-per-address", "ACCOUNTS_SIGNUP_MAX_PER_ADDRESS", "20", "N",
     "sign-ups from one client address within the sign-up window; beyond it 429"},
    {"--signup-window", "ACCOUNTS_SIGNUP_WINDOW", "10m", "DURATION",
     "the window of --signup-max-per-address (and how long its 429 lasts)"},
    {"--page-size", "ACCOUNTS_PAGE_SIZE", "20", "N", "accounts per page of /accounts_page"},
    {"--token-cache", "ACCOUNTS_TOKEN_CACHE", "4096", "N",
     "entries of the cache of verified tokens (/auth)"},
    {"--auth-reuse", "ACCOUNTS_AUTH_REUSE", "5s", "DURATION",
     "how long nginx may reuse a /auth yes for the same credentials (X-Accel-Expires, never "
     "past the token's exp; 0s = ask every time)"},
    {"--store-timeout", "ACCOUNTS_STORE_TIMEOUT", "2s", "DURATION",
     "a PostgreSQL statement not answered within this fails (and reconnects)"},
    {"--connect-timeout", "ACCOUNTS_CONNECT_TIMEOUT", "3s", "DURATION",
     "PostgreSQL connection (lookup, connect, handshake, schema) must be up within this"},
    {"--answer-timeout", "ACCOUNTS_ANSWER_TIMEOUT", "10s", "DURATION",
     "a request not answered within this gets 504"},
    {"--drain-timeout", "ACCOUNTS_DRAIN_TIMEOUT", "8s", "DURATION",
     "on SIGTERM/SIGINT: answer what is pending within this"},
    {"--access-log", "ACCOUNTS_ACCESS_LOG", "on", "on|off", "log one ACCESS line per request"},
};

const core::cli_option& opt(int index) {
  return g_options[index];
}

[[noreturn]] void bad(int index, const char* why) {
  core::option_fail(opt(index), why);
}

// Version 1: the accounts table. Named constraints: a duplicate's 409 says which field.
const core::pg_migration kSchema[] = {
    {1,
     "CREATE TABLE IF NOT EXISTS accounts (id bigserial PRIMARY KEY, username text NOT NULL, "
     "email text NOT NULL, password_hash text NOT NULL, created timestamptz NOT NULL DEFAULT "
     "now(), CONSTRAINT accounts_username_key UNIQUE (username), CONSTRAINT accounts_email_key "
     "UNIQUE (email))"},
};

struct accounts_main {
  core::http_server* server;
  core::pg_client* pg;
  accounts::app* app;
  bool stopping = false;
};

void on_drained(void* ctx) {
  static_cast<accounts_main*>(ctx)->pg->close();
}

void on_stop_signal(void* ctx, int signum) {
  auto* m = static_cast<accounts_main*>(ctx);
  if (m->stopping) return;
  m->stopping = true;
  core::log_event("SIGNAL", "name=%s action=drain", core::signal_name(signum));
  m->app->draining = true;
  m->server->drain(on_drained, m);
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = core::healthcheck_mode("accounts", argc, argv); rc >= 0) return rc;
  core::log_init("accounts");
  core::cli_parse(
      {"accounts", STACK_VERSION, "sign-up, login with EdDSA-signed JWTs, /auth for nginx",
       core::healthcheck_help},
      argc, argv, g_options, opt_count);
  if (sodium_init() < 0) core::config_fail("libsodium cannot start");

  char host[64];
  int port = 0;
  if (const char* e = core::parse_listen_address(opt(opt_listen).value, host, sizeof host, &port)) {
    bad(opt_listen, e);
  }
  core::pg_options po;
  po.conninfo = opt(opt_database).value;
  std::string why;
  if (!core::check_pg_conninfo(po.conninfo, &why)) {
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    bad(opt_database, why.c_str());
  }
  if (opt(opt_database_password_file).value != nullptr) {
    if (const char* e =
            core::read_secret_file(opt(opt_database_password_file).value, &po.password)) {
      bad(opt_database_password_file, e);
    }
  }
  po.migrations = kSchema;
  po.migration_count = sizeof kSchema / sizeof kSchema[0];
  po.query_timeout_ms = core::option_duration(opt(opt_store_timeout), 1);
  po.connect_timeout_ms = core::option_duration(opt(opt_connect_timeout), 1);

  if (opt(opt_signing_key).value == nullptr) bad(opt_signing_key, "required");
  if (!accounts::valid_kid(opt(opt_signing_key).value)) {
    bad(opt_signing_key, "a kid is 1..64 of [A-Za-z0-9._-]");
  }
  accounts::key_set keys;
  if (!accounts::load_keys(opt(opt_keys_dir).value, opt(opt_signing_key).value, &keys, &why)) {
    bad(opt_keys_dir, why.c_str());
  }
  accounts::token_settings tokens;
  tokens.issuer = opt(opt_issuer).value;
  tokens.audience = opt(opt_audience).value;
  if (tokens.issuer.empty() || tokens.issuer.size() > 200) bad(opt_issuer, "1 to 200 bytes");
  if (tokens.audience.empty() || tokens.audience.size() > 200) bad(opt_audience, "1 to 200 bytes");
  uint64_t ttl_ms = core::option_duration(opt(opt_token_ttl), 1000);
  if (ttl_ms % 1000 != 0 || ttl_ms > 24ull * 3600 * 1000) {
    bad(opt_token_ttl, "whole seconds, 1s to 24h");
  }
  tokens.ttl_s = static_cast<int64_t>(ttl_ms / 1000);

  size_t queue = core::option_uint(opt(opt_hash_queue), 1, 4096);
  accounts::hash_params hp;
  hp.mem_bytes =
      core::option_size(opt(opt_hash_memory), crypto_pwhash_argon2id_MEMLIMIT_MIN, 1ull << 30);
  hp.ops = core::option_uint(opt(opt_hash_iterations), 1, 10);
  accounts::regulation by_account_rules;
  by_account_rules.max_retries =
      static_cast<uint32_t>(core::option_uint(opt(opt_login_max_retries), 1, 1'000'000));
  by_account_rules.find_time_ms = core::option_duration(opt(opt_login_find_time), 1);
  by_account_rules.ban_time_ms = core::option_duration(opt(opt_login_ban_time), 1);
  accounts::regulation by_address_rules = by_account_rules;
  by_address_rules.max_retries =
      static_cast<uint32_t>(core::option_uint(opt(opt_address_max_retries), 1, 1'000'000));
  accounts::regulation signup_rules;
  signup_rules.max_retries =
      static_cast<uint32_t>(core::option_uint(opt(opt_signup_max), 1, 1'000'000));
  signup_rules.find_time_ms = core::option_duration(opt(opt_signup_window), 1);
  signup_rules.ban_time_ms = signup_rules.find_time_ms;
  uint32_t page_size = static_cast<uint32_t>(core::option_uint(opt(opt_page_size), 1, 1000));
  size_t cache_slots = core::option_uint(opt(opt_token_cache), 1, 1'000'000);
  uint64_t auth_reuse_ms = core::option_duration(opt(opt_auth_reuse), 0);
  if (auth_reuse_ms % 1000 != 0 || auth_reuse_ms > 300'000) {
    bad(opt_auth_reuse, "whole seconds, 0s to 5m");
  }

  core::http_server_config config;
  config.access_log = core::option_on_off(opt(opt_access_log));
  config.answer_timeout_ms = core::option_duration(opt(opt_answer_timeout), 1);
  config.drain_timeout_ms = core::option_duration(opt(opt_drain_timeout), 1);
  config.captured_headers = accounts::captured_headers;
  config.captured_count = sizeof accounts::captured_headers / sizeof accounts::captured_headers[0];
  config.want_peer = true;  // the login rate limit counts per client address
  config.body_policy = accounts::body_policy;
  config.common_headers = "X-Content-Type-Options: nosniff\r\n";
  bool secure_cookie = core::option_on_off(opt(opt_secure_cookie));
  bool trust_real_ip = core::option_on_off(opt(opt_trust_real_ip));
  core::raise_fd_limit();

  // The dummy hash for unknown e-mails: made with the same parameters, before serving.
  uint8_t random_password[24];
  randombytes_buf(random_password, sizeof random_password);
  std::string dummy = accounts::hasher::hash_now(
      {reinterpret_cast<const char*>(random_password), sizeof random_password}, hp);
  if (dummy.empty()) bad(opt_hash_memory, "argon2id cannot run with these parameters");

  core::event_loop loop;
  core::pg_client pg(loop.uv(), po);
  accounts::hasher hashes(loop.uv(), queue, hp);
  accounts::token_cache cache(cache_slots);
  accounts::rate_limiter by_address(by_address_rules);
  accounts::rate_limiter by_account(by_account_rules);
  accounts::rate_limiter signups_by_address(signup_rules);
  accounts::app app;
  app.pg = &pg;
  app.hashes = &hashes;
  app.keys = &keys;
  app.tokens = tokens;
  app.cache = &cache;
  app.by_address = &by_address;
  app.by_account = &by_account;
  app.signups_by_address = &signups_by_address;
  app.dummy_hash = dummy;
  app.secure_cookie = secure_cookie;
  app.trust_real_ip = trust_real_ip;
  app.page_size = page_size;
  app.auth_reuse_s = static_cast<int64_t>(auth_reuse_ms / 1000);
  uv_timeval64_t now{};
  uv_gettimeofday(&now);
  app.start_unix = static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_usec) / 1e6;
  config.observer = accounts::observe_request;
  config.observer_ctx = &app;
  core::http_server server(loop.uv(), config, accounts::handle_request, &app);
  app.server = &server;
  accounts_main m{&server, &pg, &app};

  core::log_event("START",
                  "version=%s listen=%s:%d postgres=\"%s\" keys=%zu signing_key=%s "
                  "token_ttl_s=%lld hash_queue=%zu hash_memory=%zu hash_iterations=%llu",
                  STACK_VERSION, host, port, po.conninfo.c_str(), keys.keys.size(),
                  keys.signer->kid.c_str(), static_cast<long long>(tokens.ttl_s), queue,
                  hp.mem_bytes, static_cast<unsigned long long>(hp.ops));
  if (int rc = server.listen(host, port); rc != 0) {
    core::log_event("ERROR", "listen addr=%s:%d error=%s", host, port, uv_err_name(rc));
    server.drain(on_drained, &m);
    loop.run();
    core::log_flush();
    fprintf(stderr, "accounts: error: cannot listen on %s:%d: %s\n", host, port, uv_strerror(rc));
    return 1;
  }
  pg.start();
  core::log_event("LISTEN", "addr=%s", server.bound_address());
  loop.watch_signals(on_stop_signal, &m);

  int rc = loop.run();
  core::log_event("EXIT", "code=%d", rc == 0 ? 0 : 1);
  return rc == 0 ? 0 : 1;
}
