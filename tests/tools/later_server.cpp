// later_server: a test service on core::http_server whose handler answers later, on uv timers,
// for the black-box tests and the benchmarks of deferred answers. Not shipped.
//
//   GET  /now                 answers at once {"now":true}
//   GET  /later?ms=N&id=X     answers {"id":"X"} after N ms (pipelined requests with falling
//                             N complete out of order)
//   GET  /never?id=X          never answers (the answer deadline gives 504)
//   GET  /big?kb=N&ms=M       N KiB of a counting pattern, after M ms
//   POST /json                JSON body (limit --body-limit): {"members":N,"name":...}
//   POST /form                form body: the decoded pairs as a JSON object
//   POST /either              JSON or form: {"kind":"json"|"form"}
//   GET  /state               {"pending":N,"connections":M}
// Every cancelled exchange prints "CANCEL id=X"; with keep=1 its timer still fires, and an
// answer() that returned false prints "LATE id=X ignored".
#include <uv.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "config.hpp"
#include "form.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "loop.hpp"

namespace {

enum opt_index {
  opt_listen,
  opt_answer_timeout,
  opt_drain_timeout,
  opt_header_timeout,
  opt_linger,
  opt_linger_max,
  opt_body_limit,
  opt_max_pipelined,
  opt_count
};

core::cli_option g_options[] = {
    {"--listen", "LATER_LISTEN", "127.0.0.1:0", "HOST:PORT", "address to listen on"},
    {"--answer-timeout", "LATER_ANSWER_TIMEOUT", "10s", "DURATION", "deferred answer deadline"},
    {"--drain-timeout", "LATER_DRAIN_TIMEOUT", "8s", "DURATION", "graceful stop deadline"},
    {"--header-timeout", "LATER_HEADER_TIMEOUT", "10s", "DURATION", "request arrival deadline"},
    {"--linger", "LATER_LINGER", "2s", "DURATION", "linger after the last byte received"},
    {"--linger-max", "LATER_LINGER_MAX", "5s", "DURATION", "lingering close in all"},
    {"--body-limit", "LATER_BODY_LIMIT", "64KiB", "SIZE", "body limit of the body routes"},
    {"--max-pipelined", "LATER_MAX_PIPELINED", "16", "N", "handled, unanswered per connection"},
};

struct app {
  uv_loop_t* loop = nullptr;
  core::http_server* server = nullptr;
  uint32_t body_limit = 0;
};

struct later {
  uv_timer_t timer{};
  core::http_deferred answer;
  char id[64] = "";
  size_t big_kb = 0;
  bool never = false;
  bool keep = false;  // keep the timer after a cancel: its answer() must then be a no-op
};

std::string_view query_param(std::string_view target, std::string_view name) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.size() > name.size() && pair.substr(0, name.size()) == name &&
        pair[name.size()] == '=') {
      return pair.substr(name.size() + 1);
    }
  }
  return {};
}

uint64_t number_param(std::string_view target, std::string_view name) {
  std::string_view v = query_param(target, name);
  uint64_t n = 0;
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

void on_timer_closed(uv_handle_t* h) {
  delete static_cast<later*>(h->data);
}

void on_cancel(void* ctx) {
  auto* l = static_cast<later*>(ctx);
  core::log_event("CANCEL", "id=%s", l->id);
  if (!l->keep) uv_close(reinterpret_cast<uv_handle_t*>(&l->timer), on_timer_closed);
}

void on_timer(uv_timer_t* t) {
  auto* l = static_cast<later*>(t->data);
  bool ok;
  if (l->big_kb > 0) {
    size_t n = l->big_kb * 1024;
    char* body = static_cast<char*>(malloc(n));
    for (size_t i = 0; i < n; ++i) body[i] = static_cast<char>('a' + (i * 7 + i / 1024) % 26);
    ok = l->answer.answer(200, "text/plain", std::string_view(body, n));
    free(body);
  } else {
    char body[128];
    int n = snprintf(body, sizeof body, "{\"id\":\"%s\"}", l->id);
    ok = l->answer.answer(200, "application/json", std::string_view(body, static_cast<size_t>(n)));
  }
  if (!ok) core::log_event("LATE", "id=%s ignored", l->id);
  uv_close(reinterpret_cast<uv_handle_t*>(&l->timer), on_timer_closed);
}

core::body_policy policy(void* ctx, llhttp_method_t method, std::string_view target) {
  auto& a = *static_cast<app*>(ctx);
  if (method != HTTP_POST) return {};
  std::string_view path = target.substr(0, target.find('?'));
  if (path == "/json") return {a.body_limit, true, false};
  if (path == "/form") return {a.body_limit, false, true};
  if (path == "/either") return {a.body_limit, true, true};
  return {};
}

void handle(void* ctx, const core::http_request& req, core::http_reply& reply) {
  auto& a = *static_cast<app*>(ctx);
  std::string_view path = req.target.substr(0, req.target.find('?'));
  core::buf_writer& w = reply.body;
  if (path == "/now") {
    w.put("{\"now\":true}");
    return;
  }
  if (path == "/state") {
    w.put("{\"pending\":");
    w.put_uint(a.server->pending_answers());
    w.put(",\"connections\":");
    w.put_uint(a.server->connection_count());
    w.put("}");
    return;
  }
  if (path == "/later" || path == "/never" || path == "/big") {
    auto* l = new later;
    std::string_view id = query_param(req.target, "id");
    snprintf(l->id, sizeof l->id, "%.*s", static_cast<int>(id.size()), id.data());
    l->never = path == "/never";
    l->keep = query_param(req.target, "keep") == "1";
    if (path == "/big") l->big_kb = number_param(req.target, "kb");
    uv_timer_init(a.loop, &l->timer);
    l->timer.data = l;
    l->answer = reply.defer(on_cancel, l);
    if (!l->never) uv_timer_start(&l->timer, on_timer, number_param(req.target, "ms"), 0);
    return;
  }
  if (path == "/json" && req.json != nullptr) {
    core::json_ref root = req.json->root();
    w.put("{\"members\":");
    w.put_uint(root.size());
    if (auto name = root["name"].string()) {
      w.put(",\"name\":\"");
      core::json_escape(w, *name);
      w.put("\"");
    }
    w.put("}");
    return;
  }
  if (path == "/form") {
    char buf[4096];
    core::form_reader r(req.body, buf, sizeof buf);
    std::string_view name, value;
    w.put("{");
    bool first = true;
    for (;;) {
      auto res = r.next(&name, &value);
      if (res == core::form_reader::result::end) break;
      if (res != core::form_reader::result::field) {
        reply.status = 400;
        w.reset();
        w.put("{\"error\":\"bad form field\"}");
        return;
      }
      if (!first) w.put(",");
      first = false;
      w.put("\"");
      core::json_escape(w, name);
      w.put("\":\"");
      core::json_escape(w, value);
      w.put("\"");
    }
    w.put("}");
    return;
  }
  if (path == "/either") {
    w.put(req.body_kind == core::body_type::json ? "{\"kind\":\"json\"}" : "{\"kind\":\"form\"}");
    return;
  }
  reply.status = 404;
  w.put("{\"error\":\"not found\"}");
}

}  // namespace

struct stopper {
  core::http_server* server;
};

void on_stop(void* ctx, int signum) {
  auto* s = static_cast<stopper*>(ctx);
  core::log_event("STOP", "signal=%s", core::signal_name(signum));
  s->server->drain(nullptr, nullptr);
}

int main(int argc, char** argv) {
  core::log_init("later");
  core::cli_parse({"later_server", STACK_VERSION, "a test service that answers later"}, argc, argv,
                  g_options, opt_count);
  char host[64];
  int port = 0;
  if (const char* e =
          core::parse_listen_address(g_options[opt_listen].value, host, sizeof host, &port)) {
    core::option_fail(g_options[opt_listen], e);
  }
  core::http_server_config cfg;
  cfg.answer_timeout_ms = core::option_duration(g_options[opt_answer_timeout], 1);
  cfg.drain_timeout_ms = core::option_duration(g_options[opt_drain_timeout], 1);
  cfg.header_timeout_ms = core::option_duration(g_options[opt_header_timeout], 1);
  cfg.linger_ms = core::option_duration(g_options[opt_linger], 1);
  cfg.linger_max_ms = core::option_duration(g_options[opt_linger_max], 1);
  cfg.max_pipelined =
      static_cast<uint32_t>(core::option_uint(g_options[opt_max_pipelined], 1, 1024));
  app a;
  a.body_limit = static_cast<uint32_t>(core::option_size(g_options[opt_body_limit], 1, 64u << 20));
  cfg.body_policy = policy;
  core::event_loop loop;
  a.loop = loop.uv();
  core::http_server server(loop.uv(), cfg, handle, &a);
  a.server = &server;
  if (int rc = server.listen(host, port); rc != 0) {
    fprintf(stderr, "later_server: error: cannot listen on %s:%d: %s\n", host, port,
            uv_strerror(rc));
    return 1;
  }
  core::log_event("LISTEN", "addr=%s", server.bound_address());
  stopper st{&server};
  loop.watch_signals(on_stop, &st);
  int rc = loop.run();
  core::log_event("EXIT", "code=%d", rc == 0 ? 0 : 1);
  return rc == 0 ? 0 : 1;
}
