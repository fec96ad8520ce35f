// hello: the Hello HTTP service as a single-threaded libuv reactor.
//   configuration -> core/config, routes -> hello/routes, health model -> hello/health,
//   HTTP -> core/http_server, loop and signals -> core/loop, logs -> core/log.
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "config.hpp"
#include "health.hpp"
#include "healthcheck.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "loop.hpp"
#include "routes.hpp"

namespace {

enum {
  opt_listen,
  opt_threshold,
  opt_access_log,
  opt_max_connections,
  opt_header_timeout,
  opt_idle_timeout,
  opt_drain_delay,
  opt_drain_timeout,
  opt_max_target,
  opt_max_header_bytes,
  opt_max_headers,
  opt_max_body,
  opt_instance_id,
  opt_chaos,
  opt_count
};

core::cli_option g_options[opt_count] = {
    {"--listen", "HELLO_LISTEN", "0.0.0.0:8080", "HOST:PORT",
     "address to listen on (numeric IPv4, [IPv6], port 0 picks a free port)"},
    {"--health-threshold", "HELLO_HEALTH_THRESHOLD", "0.9", "F",
     "/health reports healthy while the simulated latency is below F seconds (0..1)"},
    {"--access-log", "HELLO_ACCESS_LOG", "on", "on|off", "log one ACCESS line per request"},
    {"--max-connections", "HELLO_MAX_CONNECTIONS", "10000", "N",
     "open connections at most; above it new ones get 503 and are closed"},
    {"--header-timeout", "HELLO_HEADER_TIMEOUT", "10s", "DURATION",
     "a request must arrive whole within this, else 408 (slowloris guard)"},
    {"--idle-timeout", "HELLO_IDLE_TIMEOUT", "75s", "DURATION",
     "close a keep-alive connection idle this long (keep above the proxy's 60s)"},
    {"--drain-delay", "HELLO_DRAIN_DELAY", "0s", "DURATION",
     "on SIGTERM, keep serving this long with /health answering 503 before draining"},
    {"--drain-timeout", "HELLO_DRAIN_TIMEOUT", "8s", "DURATION",
     "after draining starts, cut what is left after this long"},
    {"--max-target", "HELLO_MAX_TARGET", "8KiB", "BYTES",
     "longest request-target (path and query); longer gets 414 (at most 16KiB)"},
    {"--max-header-bytes", "HELLO_MAX_HEADER_BYTES", "16KiB", "BYTES",
     "largest header block; larger gets 431"},
    {"--max-headers", "HELLO_MAX_HEADERS", "100", "N", "most header fields; more gets 431"},
    {"--max-body", "HELLO_MAX_BODY", "1MiB", "BYTES",
     "largest request body (read and discarded); larger gets 413"},
    {"--instance-id", "HELLO_INSTANCE_ID", nullptr, "ID",
     "name in X-Served-By and /status (default: the host name, a container's id)"},
    {"--chaos", "HELLO_CHAOS", "on", "on|off",
     "serve /poison, /antidote and /die (turn off in production)"},
};

struct hello_main {
  core::event_loop* loop;
  core::http_server* server;
  hello::app* app;
  uint64_t drain_delay_ms;
  uv_timer_t delay_timer{};
  uv_timer_t die_timer{};
};

// /die: the answer is queued (and normally already written); give it a moment to leave, then
// end the process with a failure status so that the restart policy brings it back.
void on_die(void* ctx) {
  auto* m = static_cast<hello_main*>(ctx);
  auto* h = reinterpret_cast<uv_handle_t*>(&m->die_timer);
  if (uv_is_active(h) || uv_is_closing(h)) return;
  uv_timer_start(
      &m->die_timer,
      [](uv_timer_t*) {
        core::log_event("DIE", "reason=/die code=3");
        core::log_flush();
        _exit(3);
      },
      50, 0);
}

void start_drain(hello_main* m) {
  auto* die = reinterpret_cast<uv_handle_t*>(&m->die_timer);
  if (die->loop != nullptr && !uv_is_closing(die)) uv_close(die, nullptr);
  m->server->drain(nullptr, nullptr);
}

void on_stop_signal(void* ctx, int signum) {
  auto* m = static_cast<hello_main*>(ctx);
  if (m->drain_delay_ms == 0) {
    core::log_event("SIGNAL", "name=%s action=drain", core::signal_name(signum));
    start_drain(m);
    return;
  }
  // Load balancers see /health fail and stop sending before the listener closes.
  core::log_event("SIGNAL", "name=%s action=drain delay_ms=%llu", core::signal_name(signum),
                  static_cast<unsigned long long>(m->drain_delay_ms));
  m->app->draining = true;
  uv_timer_init(m->loop->uv(), &m->delay_timer);
  m->delay_timer.data = m;
  uv_timer_start(
      &m->delay_timer,
      [](uv_timer_t* t) {
        auto* mm = static_cast<hello_main*>(t->data);
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
        start_drain(mm);
      },
      m->drain_delay_ms, 0);
}

const core::cli_option& opt(int index) {
  return g_options[index];
}

[[noreturn]] void bad(int index, const char* why) {
  core::option_fail(opt(index), why);
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = core::healthcheck_mode("hello", argc, argv); rc >= 0) return rc;
  core::log_init("hello");
  core::cli_parse({"hello", STACK_VERSION, "the Hello HTTP service", core::healthcheck_help}, argc,
                  argv, g_options, opt_count);

  char host[64];
  int port = 0;
  if (const char* e = core::parse_listen_address(opt(opt_listen).value, host, sizeof host, &port)) {
    bad(opt_listen, e);
  }
  double threshold = 0;
  if (const char* e = core::parse_double(opt(opt_threshold).value, &threshold)) {
    bad(opt_threshold, e);
  }
  if (threshold < 0 || threshold > 1) bad(opt_threshold, "must be in [0, 1]");
  bool access_log = core::option_on_off(opt(opt_access_log));
  core::http_server_config config;
  config.access_log = access_log;
  config.max_connections =
      static_cast<uint32_t>(core::option_uint(opt(opt_max_connections), 1, 1'000'000));
  config.header_timeout_ms = core::option_duration(opt(opt_header_timeout), 1);
  config.idle_timeout_ms = core::option_duration(opt(opt_idle_timeout), 1);
  config.drain_timeout_ms = core::option_duration(opt(opt_drain_timeout), 1);
  uint64_t drain_delay_ms = core::option_duration(opt(opt_drain_delay), 0);
  config.max_target_bytes = static_cast<uint32_t>(
      core::option_size(opt(opt_max_target), 16, core::http_server::block_size));
  config.max_header_bytes =
      static_cast<uint32_t>(core::option_size(opt(opt_max_header_bytes), 64, 1 << 20));
  config.max_headers = static_cast<uint32_t>(core::option_uint(opt(opt_max_headers), 1, 10'000));
  config.max_body_bytes = core::option_size(opt(opt_max_body), 0, uint64_t{1} << 40);
  bool chaos = core::option_on_off(opt(opt_chaos));
  static char instance[128];
  if (opt(opt_instance_id).value != nullptr) {
    snprintf(instance, sizeof instance, "%s", opt(opt_instance_id).value);
  } else {
    size_t len = sizeof instance;
    if (uv_os_gethostname(instance, &len) != 0) snprintf(instance, sizeof instance, "hello");
  }
  for (const char* c = instance; *c != '\0'; ++c) {
    if (static_cast<unsigned char>(*c) <= 0x20 || *c == 0x7f) {
      bad(opt_instance_id, "must be printable, without spaces");
    }
  }
  static char served_by[160];
  snprintf(served_by, sizeof served_by, "X-Served-By: %s\r\n", instance);
  config.common_headers = served_by;
  uint64_t fd_limit = core::raise_fd_limit();

  core::event_loop loop;
  hello::app app{hello::health_model(threshold, hello::random_seed())};
  app.chaos = chaos;
  app.instance = instance;
  app.start_ns = uv_hrtime();
  uv_timeval64_t now{};
  uv_gettimeofday(&now);
  app.start_unix = static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_usec) / 1e6;
  config.observer = hello::observe_request;
  config.observer_ctx = &app;
  core::http_server server(loop.uv(), config, hello::handle_request, &app);
  app.server = &server;
  hello_main m{&loop, &server, &app, drain_delay_ms};
  uv_timer_init(loop.uv(), &m.die_timer);
  uv_unref(reinterpret_cast<uv_handle_t*>(&m.die_timer));
  m.die_timer.data = &m;
  app.on_die = on_die;
  app.die_ctx = &m;

  core::log_event("START",
                  "version=%s instance=%s listen=%s:%d health_threshold=%g access_log=%s "
                  "chaos=%s max_connections=%u fd_limit=%llu",
                  STACK_VERSION, instance, host, port, threshold, access_log ? "on" : "off",
                  chaos ? "on" : "off", config.max_connections,
                  static_cast<unsigned long long>(fd_limit));
  if (int rc = server.listen(host, port); rc != 0) {
    core::log_event("ERROR", "listen addr=%s:%d error=%s", host, port, uv_err_name(rc));
    start_drain(&m);
    loop.run();
    core::log_flush();
    fprintf(stderr, "hello: error: cannot listen on %s:%d: %s\n", host, port, uv_strerror(rc));
    return 1;
  }
  core::log_event("LISTEN", "addr=%s", server.bound_address());
  loop.watch_signals(on_stop_signal, &m);

  int rc = loop.run();
  core::log_event("EXIT", "code=%d", rc == 0 ? 0 : 1);
  return rc == 0 ? 0 : 1;
}
