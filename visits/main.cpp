// visits: the page-hit counter of seed 003 as a single-threaded libuv reactor.
//   settings -> core/config, HTTP -> core/http_server, routes -> visits/routes,
//   counting (Redis numbers, PostgreSQL durable count) -> visits/counter,
//   stores -> core/redis_client, core/pg_client, loop and signals -> core/loop.
#include <cstdio>
#include <cstring>
#include <string>

#include "config.hpp"
#include "counter.hpp"
#include "healthcheck.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "loop.hpp"
#include "pg_client.hpp"
#include "redis_client.hpp"
#include "routes.hpp"

namespace {

enum {
  opt_listen,
  opt_redis,
  opt_redis_password_file,
  opt_database,
  opt_database_password_file,
  opt_flush_interval,
  opt_reset,
  opt_answer_timeout,
  opt_store_timeout,
  opt_connect_timeout,
  opt_drain_timeout,
  opt_access_log,
  opt_count
};

core::cli_option g_options[opt_count] = {
    {"--listen", "VISITS_LISTEN", "0.0.0.0:8080", "HOST:PORT",
     "address to listen on (numeric IPv4, [IPv6], port 0 picks a free port)"},
    {"--redis", "VISITS_REDIS_URL", "redis://redis:6379", "URL",
     "Redis: redis://host[:port][/db] or unix:///path (no password in the URL)"},
    {"--redis-password-file", "VISITS_REDIS_PASSWORD_FILE", nullptr, "FILE",
     "Redis password (AUTH), read from a file (a Docker secret)"},
    {"--database", "VISITS_DATABASE_URL", "host=postgres dbname=visits user=visits", "CONNINFO",
     "PostgreSQL: a libpq connection string or postgresql:// URI (no password in it)"},
    {"--database-password-file", "VISITS_DATABASE_PASSWORD_FILE", nullptr, "FILE",
     "PostgreSQL password, read from a file (a Docker secret)"},
    {"--flush-interval", "VISITS_FLUSH_INTERVAL", "1s", "DURATION",
     "how often visits counted in Redis are written to PostgreSQL (a SIGKILL loses at most this)"},
    {"--reset", "VISITS_RESET", "on", "on|off", "serve /resetcounter (turn off in production)"},
    {"--answer-timeout", "VISITS_ANSWER_TIMEOUT", "5s", "DURATION",
     "a visit not counted within this gets 504"},
    {"--store-timeout", "VISITS_STORE_TIMEOUT", "1s", "DURATION",
     "a Redis command or PostgreSQL statement not answered within this fails (and reconnects)"},
    {"--connect-timeout", "VISITS_CONNECT_TIMEOUT", "2s", "DURATION",
     "a store connection (lookup, connect, handshake, schema) must be up within this"},
    {"--drain-timeout", "VISITS_DRAIN_TIMEOUT", "8s", "DURATION",
     "on SIGTERM/SIGINT: answer what is pending and flush to PostgreSQL within this"},
    {"--access-log", "VISITS_ACCESS_LOG", "on", "on|off", "log one ACCESS line per request"},
};

const core::cli_option& opt(int index) {
  return g_options[index];
}

[[noreturn]] void bad(int index, const char* why) {
  core::option_fail(opt(index), why);
}

std::string secret(int index) {
  std::string out;
  if (opt(index).value == nullptr) return out;
  if (const char* e = core::read_secret_file(opt(index).value, &out)) bad(index, e);
  return out;
}

struct visits_main {
  core::event_loop* loop;
  core::http_server* server;
  visits::counter* count;
  core::redis_client* redis;
  core::pg_client* pg;
  visits::app* app;
  uint64_t drain_timeout_ms;
  bool stopping = false;
};

void on_counter_finished(void* ctx) {
  auto* m = static_cast<visits_main*>(ctx);
  const visits::counter_stats& st = m->count->stats();
  core::log_event("COUNTER",
                  "answered_redis=%llu answered_postgres=%llu answered_503=%llu batches=%llu "
                  "flushes=%llu tombstones=%llu",
                  static_cast<unsigned long long>(st.answered_by[0]),
                  static_cast<unsigned long long>(st.answered_by[1]),
                  static_cast<unsigned long long>(st.answered_by[2]),
                  static_cast<unsigned long long>(st.batches),
                  static_cast<unsigned long long>(st.flushes),
                  static_cast<unsigned long long>(st.tombstones));
  m->redis->close();
  m->pg->close();
  m->count->release_all();
}

void on_drained(void* ctx) {
  auto* m = static_cast<visits_main*>(ctx);
  // Every answer is given: what Redis counted goes to PostgreSQL before the clients close.
  m->count->finish(m->drain_timeout_ms, on_counter_finished, m);
}

void on_stop_signal(void* ctx, int signum) {
  auto* m = static_cast<visits_main*>(ctx);
  if (m->stopping) return;
  m->stopping = true;
  core::log_event("SIGNAL", "name=%s action=drain", core::signal_name(signum));
  m->app->draining = true;
  m->server->drain(on_drained, m);
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = core::healthcheck_mode("visits", argc, argv); rc >= 0) return rc;
  core::log_init("visits");
  core::cli_parse(
      {"visits", STACK_VERSION, "the page-hit counter (Redis numbers, PostgreSQL durable count)",
       core::healthcheck_help},
      argc, argv, g_options, opt_count);

  char host[64];
  int port = 0;
  if (const char* e = core::parse_listen_address(opt(opt_listen).value, host, sizeof host, &port)) {
    bad(opt_listen, e);
  }
  core::redis_options ro;
  if (const char* e = core::parse_redis_url(opt(opt_redis).value, &ro.endpoint)) bad(opt_redis, e);
  ro.password = secret(opt_redis_password_file);
  core::pg_options po;
  po.conninfo = opt(opt_database).value;
  std::string why;
  if (!core::check_pg_conninfo(po.conninfo, &why)) {
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    bad(opt_database, why.c_str());
  }
  po.password = secret(opt_database_password_file);
  po.migrations = visits::schema;
  po.migration_count = visits::schema_steps;
  uint64_t store_timeout = core::option_duration(opt(opt_store_timeout), 1);
  uint64_t connect_timeout = core::option_duration(opt(opt_connect_timeout), 1);
  ro.command_timeout_ms = po.query_timeout_ms = store_timeout;
  ro.connect_timeout_ms = po.connect_timeout_ms = connect_timeout;
  // A store that comes back is used again within a second: the backlog waits for PostgreSQL,
  // and a SIGTERM's flush should not sit out a long backoff (seed 003: quick to stop).
  ro.backoff_max_ms = po.backoff_max_ms = 1000;
  visits::counter_options co;
  co.flush_interval_ms = core::option_duration(opt(opt_flush_interval), 1);
  core::http_server_config config;
  config.access_log = core::option_on_off(opt(opt_access_log));
  config.answer_timeout_ms = core::option_duration(opt(opt_answer_timeout), 1);
  config.drain_timeout_ms = core::option_duration(opt(opt_drain_timeout), 1);
  bool reset = core::option_on_off(opt(opt_reset));
  core::raise_fd_limit();

  core::event_loop loop;
  core::redis_client redis(loop.uv(), ro);
  core::pg_client pg(loop.uv(), po);
  visits::counter count(loop.uv(), &redis, &pg, co);
  redis.set_state_callback(
      [](void* ctx, core::store_state s, const char*) {
        static_cast<visits::counter*>(ctx)->on_redis_state(s);
      },
      &count);
  pg.set_state_callback([](void* ctx, core::store_state s,
                           const char*) { static_cast<visits::counter*>(ctx)->on_pg_state(s); },
                        &count);
  visits::app app;
  app.count = &count;
  app.redis = &redis;
  app.pg = &pg;
  app.reset_enabled = reset;
  uv_timeval64_t now{};
  uv_gettimeofday(&now);
  app.start_unix = static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_usec) / 1e6;
  config.observer = visits::observe_request;
  config.observer_ctx = &app;
  core::http_server server(loop.uv(), config, visits::handle_request, &app);
  app.server = &server;
  visits_main m{&loop, &server, &count, &redis, &pg, &app, config.drain_timeout_ms};

  core::log_event("START",
                  "version=%s listen=%s:%d redis=%s:%d postgres=\"%s\" flush_interval_ms=%llu "
                  "reset=%s",
                  STACK_VERSION, host, port, ro.endpoint.host.c_str(), ro.endpoint.port,
                  po.conninfo.c_str(), static_cast<unsigned long long>(co.flush_interval_ms),
                  reset ? "on" : "off");
  if (int rc = server.listen(host, port); rc != 0) {
    core::log_event("ERROR", "listen addr=%s:%d error=%s", host, port, uv_err_name(rc));
    server.drain(on_drained, &m);
    loop.run();
    core::log_flush();
    fprintf(stderr, "visits: error: cannot listen on %s:%d: %s\n", host, port, uv_strerror(rc));
    return 1;
  }
  // The service serves from whichever store is up; neither needs to be up yet.
  redis.start();
  pg.start();
  core::log_event("LISTEN", "addr=%s", server.bound_address());
  loop.watch_signals(on_stop_signal, &m);

  int rc = loop.run();
  core::log_event("EXIT", "code=%d", rc == 0 ? 0 : 1);
  return rc == 0 ? 0 : 1;
}
