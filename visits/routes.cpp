#include "routes.hpp"

#include "log.hpp"

namespace visits {

namespace {

constexpr std::string_view kAllowGet = "Allow: GET, HEAD\r\n";
constexpr std::string_view kAllowVisits = "Allow: GET\r\n";
constexpr std::string_view kAllowReset = "Allow: GET, POST\r\n";

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find_first_of("?#"));
}

const char* state_word(core::store_state s) {
  return core::store_state_name(s);
}

}  // namespace

const char* route_name(route r) {
  switch (r) {
    case route::visits: return "visits";
    case route::reset: return "resetcounter";
    case route::health: return "health";
    case route::metrics: return "metrics";
    default: return "other";
  }
}

void handle_request(void* ctx, const core::http_request& req, core::http_reply& reply) {
  auto& a = *static_cast<app*>(ctx);
  std::string_view path = path_of(req.target);
  reply.route = static_cast<uint8_t>(route::other);
  if (path == "/visits" || path == "/") {
    reply.route = static_cast<uint8_t>(route::visits);
    // A visit changes the count: HEAD (which must not change anything) is not allowed.
    if (req.method != HTTP_GET) {
      reply.extra_headers = kAllowVisits;
      return reply.error(405, "method not allowed");
    }
    visit* v = a.count->new_visit();
    if (v == nullptr) return reply.error(503, "out of memory");
    v->html = req.accepts_html;
    v->answer = reply.defer(counter::on_visit_cancel, v);
    if (!v->answer.pending()) {
      v->gone = true;
      return reply.error(503, "out of memory");
    }
    a.count->add(v);
    return;
  }
  if (path == "/resetcounter") {
    reply.route = static_cast<uint8_t>(route::reset);
    if (!a.reset_enabled) return reply.error(404, "not found");
    if (req.method != HTTP_GET && req.method != HTTP_POST) {
      reply.extra_headers = kAllowReset;
      return reply.error(405, "method not allowed");
    }
    a.count->reset();
    reply.body.put("{\"visits\":0}");
    return;
  }
  bool get = req.method == HTTP_GET || req.method == HTTP_HEAD;
  if (path == "/health") {
    reply.route = static_cast<uint8_t>(route::health);
    if (!get) {
      reply.extra_headers = kAllowGet;
      return reply.error(405, "method not allowed");
    }
    bool r = a.count->redis_up();
    bool p = a.count->pg_up();
    // Serving while either store answers; a balancer should move away only when both are
    // down (or while stopping).
    reply.status = (r || p) && !a.draining ? 200 : 503;
    core::buf_writer& w = reply.body;
    w.put("{\"status\":\"");
    w.put(a.draining ? "draining" : r && p ? "ok" : r || p ? "degraded" : "down");
    w.put("\",\"redis\":\"");
    w.put(state_word(a.redis->state()));
    w.put("\",\"postgres\":\"");
    w.put(state_word(a.pg->state()));
    w.put("\"}");
    return;
  }
  if (path == "/metrics") {
    reply.route = static_cast<uint8_t>(route::metrics);
    if (!get) {
      reply.extra_headers = kAllowGet;
      return reply.error(405, "method not allowed");
    }
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    write_metrics(a, reply.body);
    return;
  }
  reply.error(404, "not found");
}

void observe_request(void* ctx, const core::http_observation& o) {
  auto& a = *static_cast<app*>(ctx);
  size_t r =
      o.route < static_cast<uint8_t>(route::count) ? o.route : static_cast<size_t>(route::other);
  ++a.requests[r][core::status_class(o.status)];
  a.durations.observe(static_cast<double>(uv_hrtime() - o.start_ns) / 1e9);
}

void write_metrics(const app& a, core::buf_writer& w) {
  core::prom_writer p(w);
  const counter_stats& st = a.count->stats();
  core::write_route_counts(p, "visits_http_requests_total", a.requests,
                           static_cast<size_t>(route::count),
                           [](size_t r) { return route_name(static_cast<route>(r)); });
  p.family("visits_http_request_duration_seconds", "histogram",
           "From a request's first parsed byte to its answer, deferred ones included.");
  p.histogram("visits_http_request_duration_seconds", {}, a.durations);
  p.family("visits_http_connections_open", "gauge", "Open client connections.");
  p.sample_int("visits_http_connections_open", {}, a.server->connection_count());
  p.family("visits_http_pending_answers", "gauge",
           "Visits waiting for a store's answer (deferred exchanges not answered yet).");
  p.sample_int("visits_http_pending_answers", {}, a.server->pending_answers());

  p.family("visits_counted_total", "counter",
           "Visits answered with their number, by the store that counted them; store=\"none\": "
           "answered 503, not counted.");
  for (store_used s : {store_used::redis, store_used::postgres, store_used::none}) {
    p.sample_int("visits_counted_total", {{"store", store_used_name(s)}},
                 st.answered_by[static_cast<int>(s)]);
  }
  p.family("visits_store_up", "gauge", "1 while the store's connection is up.");
  p.sample_int("visits_store_up", {{"store", "redis"}}, a.count->redis_up() ? 1 : 0);
  p.sample_int("visits_store_up", {{"store", "postgres"}}, a.count->pg_up() ? 1 : 0);
  p.family("visits_store_errors_total", "counter", "Failed store commands by store and kind.");
  for (core::store_error e :
       {core::store_error::server, core::store_error::timeout, core::store_error::disconnected}) {
    p.sample_int("visits_store_errors_total",
                 {{"store", "redis"}, {"kind", core::store_error_name(e)}},
                 st.redis_errors[static_cast<int>(e)]);
    p.sample_int("visits_store_errors_total",
                 {{"store", "postgres"}, {"kind", core::store_error_name(e)}},
                 st.pg_errors[static_cast<int>(e)]);
  }
  p.family("visits_store_commands_total", "counter",
           "Commands sent: Redis (INCRBY per batch, seeds, resets) and PostgreSQL statements.");
  p.sample_int("visits_store_commands_total", {{"store", "redis"}}, st.redis_commands);
  p.sample_int("visits_store_commands_total", {{"store", "postgres"}}, st.pg_statements);
  p.family("visits_batches_total", "counter", "Batches of visits (one per loop turn with visits).");
  p.sample_int("visits_batches_total", {}, st.batches);
  p.family("visits_flushes_total", "counter", "Backlog flushes written to PostgreSQL.");
  p.sample_int("visits_flushes_total", {}, st.flushes);
  p.family("visits_backlog", "gauge",
           "Visits counted in Redis and answered, not yet written to PostgreSQL.");
  p.sample_int("visits_backlog", {}, a.count->backlog());
  p.family("visits_flush_lag_seconds", "gauge",
           "Age of the oldest visit not yet in PostgreSQL (0 when nothing is owed).");
  p.sample("visits_flush_lag_seconds", {}, a.count->flush_lag_seconds());
  p.family("visits_last_number", "gauge", "Highest visit number this process handed out.");
  p.sample_int("visits_last_number", {}, static_cast<uint64_t>(a.count->last_number()));
  p.family("visits_build_info", "gauge", "Always 1; the version is in the label.");
  p.sample_int("visits_build_info", {{"version", STACK_VERSION}}, 1);
  core::write_process_metrics(p, a.start_unix);
}

}  // namespace visits
