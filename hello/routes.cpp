#include "routes.hpp"

#include "greeting.hpp"

namespace hello {
namespace {

constexpr std::string_view kAllow = "Allow: GET, HEAD\r\n";

void error(core::http_reply& reply, int status, std::string_view message) {
  reply.status = status;
  reply.body.reset();
  reply.body.put("{\"error\":\"");
  reply.body.put(message);
  reply.body.put("\"}");
}

}  // namespace

std::string_view target_path(std::string_view target) {
  size_t end = target.find_first_of("?#");
  if (end != std::string_view::npos) target = target.substr(0, end);
  if (!target.empty() && target.front() == '/') return target;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size()) {
      bool match = true;
      for (size_t i = 0; i < scheme.size() && match; ++i) {
        char c = target[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        match = c == scheme[i];
      }
      if (match) {
        size_t slash = target.find('/', scheme.size());
        return slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      }
    }
  }
  return {};
}

void handle_request(void* ctx, const core::http_request& request, core::http_reply& reply) {
  auto& a = *static_cast<app*>(ctx);
  std::string_view raw = target_path(request.target);
  // Whatever this request is, it "took" a simulated latency that the next /health reports.
  struct record_on_exit {
    health_model& h;
    ~record_on_exit() { h.record_request(); }
  } record{a.health};

  if (raw.empty()) return error(reply, 400, "bad request-target");
  char decoded[max_name_bytes + 1];
  size_t len = 0;
  switch (percent_decode(raw, decoded, sizeof decoded, &len)) {
    case decode_result::ok: break;
    case decode_result::bad_escape: return error(reply, 400, "bad percent-encoding in path");
    case decode_result::too_long: return error(reply, 414, "name too long");
  }
  std::string_view path(decoded, len);
  if (!valid_utf8(path)) return error(reply, 400, "path is not valid UTF-8");

  enum class route { root, health, name, none } r = route::none;
  if (path == "/") {
    r = route::root;
  } else if (path == "/health") {
    r = route::health;
  } else if (path.find('/', 1) == std::string_view::npos) {
    r = route::name;
  }
  if (r == route::none) return error(reply, 404, "not found");
  if (path.size() - 1 > max_name_bytes) return error(reply, 414, "name too long");
  if (request.method != HTTP_GET && request.method != HTTP_HEAD) {
    reply.extra_headers = kAllow;
    return error(reply, 405, "method not allowed");
  }
  switch (r) {
    case route::root: write_greeting(reply.body, "World"); break;
    case route::health:
      if (a.draining) {
        reply.status = 503;
        reply.body.put("{\"healthy\":false,\"latency\":");
        reply.body.put_double(a.health.last_latency());
        reply.body.put(",\"draining\":true}");
      } else {
        a.health.write_json(reply.body);
      }
      break;
    default: capitalize_ascii(decoded + 1, len - 1); write_greeting(reply.body, path.substr(1));
  }
}

}  // namespace hello
