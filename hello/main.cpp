// hello: the Hello HTTP service as a single-threaded libuv reactor.
//   configuration -> core/config, routes -> hello/routes, health model -> hello/health,
//   HTTP -> core/http_server, loop and signals -> core/loop, logs -> core/log.
#include <cstdio>

#include "config.hpp"
#include "health.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "loop.hpp"
#include "routes.hpp"

namespace {

enum { opt_listen, opt_threshold, opt_access_log, opt_count };

core::cli_option g_options[opt_count] = {
    {"--listen", "HELLO_LISTEN", "0.0.0.0:8080", "HOST:PORT",
     "address to listen on (numeric IPv4, [IPv6], port 0 picks a free port)"},
    {"--health-threshold", "HELLO_HEALTH_THRESHOLD", "0.9", "F",
     "/health reports healthy while the simulated latency is below F seconds (0..1)"},
    {"--access-log", "HELLO_ACCESS_LOG", "on", "on|off", "log one ACCESS line per request"},
};

struct hello_main {
  core::event_loop* loop;
  core::http_server* server;
};

void on_stop_signal(void* ctx, int signum) {
  auto* m = static_cast<hello_main*>(ctx);
  core::log_event("SIGNAL", "name=%s action=drain", core::signal_name(signum));
  m->server->drain(nullptr, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  core::log_init("hello");
  core::cli_parse({"hello", STACK_VERSION, "the Hello HTTP service"}, argc, argv, g_options,
                  opt_count);

  char host[64];
  int port = 0;
  if (const char* e =
          core::parse_listen_address(g_options[opt_listen].value, host, sizeof host, &port)) {
    core::config_fail("--listen/HELLO_LISTEN '%s': %s", g_options[opt_listen].value, e);
  }
  double threshold = 0;
  if (const char* e = core::parse_double(g_options[opt_threshold].value, &threshold);
      e != nullptr || threshold < 0 || threshold > 1) {
    core::config_fail("--health-threshold/HELLO_HEALTH_THRESHOLD '%s': %s",
                      g_options[opt_threshold].value, e != nullptr ? e : "must be in [0, 1]");
  }
  bool access_log = true;
  if (const char* e = core::parse_on_off(g_options[opt_access_log].value, &access_log)) {
    core::config_fail("--access-log/HELLO_ACCESS_LOG '%s': %s", g_options[opt_access_log].value, e);
  }

  core::event_loop loop;
  hello::app app{hello::health_model(threshold, hello::random_seed())};
  core::http_server_config config;
  config.access_log = access_log;
  core::http_server server(loop.uv(), config, hello::handle_request, &app);
  hello_main m{&loop, &server};

  core::log_event("START", "version=%s listen=%s:%d health_threshold=%g access_log=%s",
                  STACK_VERSION, host, port, threshold, access_log ? "on" : "off");
  if (int rc = server.listen(host, port); rc != 0) {
    core::log_event("ERROR", "listen addr=%s:%d error=%s", host, port, uv_err_name(rc));
    server.drain(nullptr, nullptr);
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
