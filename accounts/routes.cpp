#include "routes.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "form.hpp"
#include "log.hpp"

namespace accounts {

namespace {

constexpr std::string_view kAllowGet = "Allow: GET, HEAD\r\n";
constexpr std::string_view kAllowPost = "Allow: POST\r\n";
constexpr const char* kHtml = "text/html; charset=utf-8";
constexpr std::string_view kNoStore = "Cache-Control: no-store\r\n";

// A JSON error; also sets the content type (the page's routes may have set HTML).
void error(core::http_reply& reply, int status, std::string_view message) {
  reply.content_type = "application/json";
  reply.error(status, message);
}

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find_first_of("?#"));
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int64_t unix_now() {
  uv_timeval64_t tv{};
  uv_gettimeofday(&tv);
  return tv.tv_sec;
}

uint64_t retry_seconds(uint64_t ms) {
  return ms == 0 ? 1 : (ms + 999) / 1000;
}

std::string_view client_address(const app& a, const core::http_request& req) {
  if (a.trust_real_ip) {
    std::string_view v = trim(req.headers[hdr_real_ip]);
    if (!v.empty() && v.size() <= 64) return v;
  }
  return req.peer;
}

// One string for both rate-limit keys: "a:" + address, "e:" + e-mail.
std::string limit_key(char kind, std::string_view v) {
  std::string k;
  k.reserve(v.size() + 2);
  k += kind;
  k += ':';
  k += v;
  return k;
}

void lower_ascii(std::string& s) {
  for (char& ch : s) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
}

// ---- HTML -------------------------------------------------------------------------------

constexpr std::string_view kHead =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<title>Accounts</title>"
    "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #999;padding:.3em .6em;text-align:left}"
    ".error{color:#a00}</style></head><body>\n";

std::string login_page(std::string_view message) {
  std::string out(kHead);
  out += "<h1>Sign in</h1>\n";
  if (!message.empty()) {
    out += "<p class=\"error\" id=\"error\">";
    html_escape(out, message);
    out += "</p>\n";
  }
  out +=
      "<form id=\"login\" method=\"post\" action=\"/login\">\n"
      "<label>E-mail <input type=\"email\" name=\"email\" required autocomplete=\"username\">"
      "</label>\n"
      "<label>Password <input type=\"password\" name=\"password\" required "
      "autocomplete=\"current-password\"></label>\n"
      "<button type=\"submit\">Sign in</button>\n</form>\n</body></html>\n";
  return out;
}

// ---- requests that wait: login, sign-up, page -------------------------------------------

struct login_job {
  app* a = nullptr;
  core::http_deferred answer;
  bool form = false;
  std::string email;
  std::string password;
  std::string address;
  int64_t id = 0;
  std::string username;
  bool found = false;
};

struct signup_job {
  app* a;
  core::http_deferred answer;
  std::string username;
  std::string email;
};

struct page_job {
  app* a;
  core::http_deferred answer;
  uint64_t page;
  std::string name;
};

void wipe(std::string& s) {
  if (!s.empty()) sodium_memzero(s.data(), s.size());
}

void finish_login(login_job* j, login_outcome o) {
  ++j->a->logins[static_cast<size_t>(o)];
  wipe(j->password);
  delete j;
}

// Answers a login in the form the client used: JSON, or HTML for the browser's form.
void login_fail(login_job* j, int status, std::string_view message, login_outcome o,
                uint64_t retry_after_s = 0) {
  char extra[64] = "";
  if (retry_after_s > 0) {
    snprintf(extra, sizeof extra, "Retry-After: %llu\r\n",
             static_cast<unsigned long long>(retry_after_s));
  }
  if (j->form) {
    j->answer.answer(status, kHtml, login_page(message), extra);
  } else {
    std::string body = "{\"error\":\"";
    body += message;
    body += "\"}";
    j->answer.answer(status, "application/json", body, extra);
  }
  finish_login(j, o);
}

void on_login_verified(void* ctx, hasher::outcome o, const char*) {
  auto* j = static_cast<login_job*>(ctx);
  app& a = *j->a;
  if (o == hasher::outcome::error) {
    return login_fail(j, 500, "password check failed", login_outcome::error);
  }
  std::string ip_key = limit_key('a', j->address);
  std::string acct_key = limit_key('e', j->email);
  if (o != hasher::outcome::match || !j->found) {
    uint64_t now = uv_hrtime() / 1'000'000;
    a.by_address->fail(ip_key, now);
    a.by_account->fail(acct_key, now);
    core::log_event("LOGIN", "outcome=failure");
    return login_fail(j, 401, "wrong e-mail or password", login_outcome::failure);
  }
  // Only the account's failures are forgiven: a success from an address must not wipe what
  // that address failed on other accounts (one valid account would reset the count).
  a.by_account->succeed(acct_key);
  std::string token = issue_token(*a.keys->signer, a.tokens, j->id, j->username, unix_now());
  if (token.empty()) return login_fail(j, 500, "cannot make a token", login_outcome::error);
  core::log_event("LOGIN", "outcome=success id=%lld", static_cast<long long>(j->id));
  if (j->form) {
    std::string extra = "Location: /accounts_page\r\nSet-Cookie: ";
    extra += cookie_name;
    extra += '=';
    extra += token;
    extra += "; Path=/; Max-Age=";
    extra += std::to_string(a.tokens.ttl_s);
    extra += "; HttpOnly; SameSite=Strict";
    if (a.secure_cookie) extra += "; Secure";
    extra += "\r\n";
    extra += kNoStore;
    j->answer.answer(303, kHtml, "<!doctype html><a href=\"/accounts_page\">accounts</a>\n", extra);
  } else {
    std::string body =
        "{\"access_token\":\"" + token +
        "\",\"token_type\":\"Bearer\",\"expires_in\":" + std::to_string(a.tokens.ttl_s) + "}";
    j->answer.answer(200, "application/json", body, kNoStore);
  }
  finish_login(j, login_outcome::success);
}

void on_login_row(void* ctx, const core::pg_query_result& r) {
  auto* j = static_cast<login_job*>(ctx);
  app& a = *j->a;
  if (r.error != core::store_error::none || r.result == nullptr) {
    return login_fail(j, 503, "database unavailable", login_outcome::error, 1);
  }
  std::string_view stored = a.dummy_hash;
  if (PQntuples(r.result) == 1) {
    j->found = true;
    j->id = strtoll(PQgetvalue(r.result, 0, 0), nullptr, 10);
    j->username = PQgetvalue(r.result, 0, 1);
    stored = PQgetvalue(r.result, 0, 2);
  }
  // Unknown e-mail: the dummy hash, so it costs what a wrong password costs.
  if (!a.hashes->verify(stored, j->password, on_login_verified, j)) {
    return login_fail(j, 503, "busy: too many logins in progress", login_outcome::overloaded, 1);
  }
}

void handle_login(app& a, const core::http_request& req, core::http_reply& reply) {
  bool form = req.body_kind == core::body_type::form;
  std::string email, password;
  bool have_email = false, have_password = false;
  if (form) {
    char buf[4200];
    core::form_reader fr(req.body, buf, sizeof buf);
    std::string_view name, value;
    for (;;) {
      core::form_reader::result r = fr.next(&name, &value);
      if (r == core::form_reader::result::end) break;
      if (r != core::form_reader::result::field) {
        reply.status = 400;
        reply.content_type = kHtml;
        std::string page = login_page("the form could not be read");
        reply.body.put(page);
        return;
      }
      if (name == "email") {
        email.assign(value);
        have_email = true;
      } else if (name == "password") {
        password.assign(value);
        have_password = true;
      }
    }
    sodium_memzero(buf, sizeof buf);
  } else {
    core::json_ref root = req.json != nullptr ? req.json->root() : core::json_ref();
    if (!root.is(core::json_type::object)) return error(reply, 400, "a JSON object is expected");
    if (auto e = root["email"].string()) {
      email.assign(*e);
      have_email = true;
    }
    if (auto p = root["password"].string()) {
      password.assign(*p);
      have_password = true;
    }
  }
  if (!have_email || !have_password || email.empty() || password.empty() ||
      password.size() > max_password_bytes || email.size() > 254) {
    wipe(password);
    ++a.logins[static_cast<size_t>(login_outcome::invalid)];
    if (form) {
      reply.status = 400;
      reply.content_type = kHtml;
      reply.body.put(login_page("e-mail and password are required"));
      return;
    }
    return error(reply, 400, "\"email\" and \"password\" (strings) are required");
  }
  lower_ascii(email);
  std::string_view address = client_address(a, req);
  uint64_t now_ms = uv_hrtime() / 1'000'000;
  uint64_t ban = std::max(a.by_address->banned_for(limit_key('a', address), now_ms),
                          a.by_account->banned_for(limit_key('e', email), now_ms));
  auto* j = new (std::nothrow) login_job;
  if (j == nullptr) return error(reply, 503, "out of memory");
  j->a = &a;
  j->form = form;
  j->email = std::move(email);
  j->password = std::move(password);
  j->address = std::string(address);
  j->answer = reply.defer();
  if (ban > 0) {
    core::log_event("LOGIN", "outcome=rate_limited retry_after_s=%llu",
                    static_cast<unsigned long long>(retry_seconds(ban)));
    return login_fail(j, 429, "too many failed logins: try again later",
                      login_outcome::rate_limited, retry_seconds(ban));
  }
  // The queue is checked before the database is asked: a flood is refused at once.
  if (!a.hashes->has_room()) {
    return login_fail(j, 503, "busy: too many logins in progress", login_outcome::overloaded, 1);
  }
  const char* params[] = {j->email.c_str()};
  if (a.pg->query(on_login_row, j,
                  "SELECT id, username, password_hash FROM accounts WHERE email = $1", 1,
                  params) != 0) {
    return login_fail(j, 503, "database unavailable", login_outcome::error, 1);
  }
}

// ---- sign-up ----------------------------------------------------------------------------

void finish_signup(signup_job* j, signup_outcome o) {
  ++j->a->signups[static_cast<size_t>(o)];
  delete j;
}

void signup_error(signup_job* j, int status, std::string_view body, signup_outcome o,
                  std::string_view extra = {}) {
  j->answer.answer(status, "application/json", body, extra);
  finish_signup(j, o);
}

void on_signup_inserted(void* ctx, const core::pg_query_result& r) {
  auto* j = static_cast<signup_job*>(ctx);
  if (r.error == core::store_error::server && r.result != nullptr) {
    const char* state = PQresultErrorField(r.result, PG_DIAG_SQLSTATE);
    if (state != nullptr && strcmp(state, "23505") == 0) {
      const char* c = PQresultErrorField(r.result, PG_DIAG_CONSTRAINT_NAME);
      bool email = c != nullptr && strcmp(c, "accounts_email_key") == 0;
      return signup_error(j, 409,
                          email ? "{\"error\":\"already taken\",\"fields\":{\"email\":\"an "
                                  "account with this e-mail exists\"}}"
                                : "{\"error\":\"already taken\",\"fields\":{\"username\":\"this "
                                  "username is taken\"}}",
                          signup_outcome::duplicate);
    }
  }
  if (r.error != core::store_error::none || r.result == nullptr || PQntuples(r.result) != 1) {
    return signup_error(j, 503, "{\"error\":\"database unavailable\"}", signup_outcome::error,
                        "Retry-After: 1\r\n");
  }
  std::string body = "{\"id\":";
  body += PQgetvalue(r.result, 0, 0);
  std::string esc(j->username.size() * 6 + j->email.size() * 6 + 64, '\0');
  core::buf_writer w(esc.data(), esc.size());
  w.put(",\"username\":\"");
  core::json_escape(w, j->username);
  w.put("\",\"email\":\"");
  core::json_escape(w, j->email);
  w.put("\",\"created\":\"");
  body.append(w.data, w.len);
  body += PQgetvalue(r.result, 0, 1);
  body += "\"}";
  core::log_event("SIGNUP", "id=%s", PQgetvalue(r.result, 0, 0));
  j->answer.answer(201, "application/json", body);
  finish_signup(j, signup_outcome::created);
}

void on_signup_hashed(void* ctx, hasher::outcome o, const char* hash) {
  auto* j = static_cast<signup_job*>(ctx);
  if (o != hasher::outcome::hashed) {
    return signup_error(j, 500, "{\"error\":\"hashing failed\"}", signup_outcome::error);
  }
  const char* params[] = {j->username.c_str(), j->email.c_str(), hash};
  if (j->a->pg->query(on_signup_inserted, j,
                      "INSERT INTO accounts (username, email, password_hash) VALUES ($1, $2, $3) "
                      "RETURNING id, to_char(created AT TIME ZONE 'UTC', "
                      "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                      3, params) != 0) {
    return signup_error(j, 503, "{\"error\":\"database unavailable\"}", signup_outcome::error,
                        "Retry-After: 1\r\n");
  }
}

void handle_signup(app& a, const core::http_request& req, core::http_reply& reply) {
  core::json_ref root = req.json != nullptr ? req.json->root() : core::json_ref();
  if (!root.is(core::json_type::object)) return error(reply, 400, "a JSON object is expected");
  std::optional<std::string_view> username = root["username"].string();
  std::optional<std::string_view> email = root["email"].string();
  std::optional<std::string_view> password = root["password"].string();
  std::string mail = email ? std::string(*email) : std::string();
  lower_ascii(mail);
  const char* bad_user = username ? check_username(*username) : "required (a string)";
  const char* bad_mail = email ? check_email(mail) : "required (a string)";
  const char* bad_pass = password ? check_password(*password) : "required (a string)";
  if (bad_user || bad_mail || bad_pass) {
    ++a.signups[static_cast<size_t>(signup_outcome::invalid)];
    reply.status = 400;
    core::buf_writer& w = reply.body;
    w.put("{\"error\":\"invalid account\",\"fields\":{");
    bool first = true;
    for (auto [field, why] : {std::pair{"username", bad_user}, std::pair{"email", bad_mail},
                              std::pair{"password", bad_pass}}) {
      if (why == nullptr) continue;
      if (!first) w.put(',');
      first = false;
      w.put('"');
      w.put(field);
      w.put("\":\"");
      w.put(why);
      w.put('"');
    }
    w.put("}}");
    return;
  }
  std::string address_key = limit_key('s', client_address(a, req));
  uint64_t now_ms = uv_hrtime() / 1'000'000;
  if (uint64_t ban = a.signups_by_address->banned_for(address_key, now_ms)) {
    ++a.signups[static_cast<size_t>(signup_outcome::rate_limited)];
    int n = snprintf(a.header_scratch, sizeof a.header_scratch, "Retry-After: %llu\r\n",
                     static_cast<unsigned long long>(retry_seconds(ban)));
    reply.extra_headers = {a.header_scratch, static_cast<size_t>(n)};
    return error(reply, 429, "too many sign-ups from this address: try again later");
  }
  if (!a.hashes->has_room()) {
    ++a.signups[static_cast<size_t>(signup_outcome::overloaded)];
    reply.extra_headers = "Retry-After: 1\r\n";
    return error(reply, 503, "busy: too many sign-ups and logins in progress");
  }
  auto* j = new (std::nothrow) signup_job{&a, {}, std::string(*username), std::move(mail)};
  if (j == nullptr) return error(reply, 503, "out of memory");
  a.signups_by_address->fail(address_key, now_ms);  // every attempt that costs a hash counts
  if (!a.hashes->hash(*password, on_signup_hashed, j)) {
    delete j;
    ++a.signups[static_cast<size_t>(signup_outcome::overloaded)];
    reply.extra_headers = "Retry-After: 1\r\n";
    return error(reply, 503, "busy: too many sign-ups and logins in progress");
  }
  j->answer = reply.defer();
}

// ---- tokens: /auth and the page ---------------------------------------------------------

// Checks a request's token through the cache; counts the outcome.
bool check_token(app& a, std::string_view token, verified_token* out) {
  if (token.empty()) {
    ++a.token_checks[static_cast<size_t>(token_check::malformed)];
    return false;
  }
  int64_t now = unix_now();
  token_cache::key k = token_cache::key_of(token);
  if (const verified_token* v = a.cache->find(k, now)) {
    ++a.token_cache_hits;
    ++a.token_checks[static_cast<size_t>(token_check::ok)];
    *out = *v;
    return true;
  }
  token_check c = verify_token(token, *a.keys, a.tokens, now, out);
  ++a.token_checks[static_cast<size_t>(c)];
  if (c != token_check::ok) return false;
  a.cache->put(k, *out, now);
  return true;
}

void handle_auth(app& a, const core::http_request& req, core::http_reply& reply) {
  verified_token v;
  std::string_view token = token_of(req.headers[hdr_authorization], req.headers[hdr_cookie]);
  bool ok = check_token(a, token, &v);
  // Names come from validated usernames; still, nothing that could split a header line.
  for (size_t i = 0; ok && i < v.name_len; ++i) {
    auto ch = static_cast<unsigned char>(v.name[i]);
    if (ch < 0x20 || ch == 0x7f) ok = false;
  }
  if (!ok) {
    reply.extra_headers = "WWW-Authenticate: Bearer\r\nCache-Control: no-store\r\n";
    return error(reply, 401, "unauthorized");
  }
  reply.status = 204;
  int n = snprintf(a.header_scratch, sizeof a.header_scratch, "X-User: %lld:%.*s\r\n",
                   static_cast<long long>(v.sub), static_cast<int>(v.name_len), v.name);
  // nginx caches this yes for the same Authorization and Cookie (nginx/accounts-routes.conf)
  // until the absolute time given, at most auth_reuse_s and never past the token's exp: a
  // token is refused from its exp on, whether nginx asks again or not. (The answer goes to
  // nginx only: auth_request passes X-User on, not this header.)
  // nginx keeps an entry through the whole second it names (stale only once its clock's
  // second is past it), hence exp - 1: the last second that ends before exp.
  int64_t now = unix_now();
  int64_t until = std::min(v.exp - 1, now + a.auth_reuse_s);
  if (until > now && n > 0) {  // (a token this close to its exp is not reusable at all)
    n += snprintf(a.header_scratch + n, sizeof a.header_scratch - static_cast<size_t>(n),
                  "X-Accel-Expires: @%lld\r\n", static_cast<long long>(until));
  }
  reply.extra_headers = {a.header_scratch, static_cast<size_t>(n)};
}

void on_page_rows(void* ctx, const core::pg_query_result& r) {
  auto* j = static_cast<page_job*>(ctx);
  app& a = *j->a;
  if (r.error != core::store_error::none || r.result == nullptr) {
    j->answer.answer(503, kHtml, std::string(kHead) + "<p>database unavailable</p></body></html>",
                     "Retry-After: 1\r\n");
    delete j;
    return;
  }
  int rows = PQntuples(r.result);
  bool more = rows > static_cast<int>(a.page_size);
  if (more) rows = static_cast<int>(a.page_size);
  std::string out(kHead);
  out += "<h1>Accounts</h1>\n<p>Signed in as <span id=\"user\">";
  html_escape(out, j->name);
  out +=
      "</span>.</p>\n<form id=\"logout\" method=\"post\" action=\"/logout\">"
      "<button type=\"submit\">Sign out</button></form>\n"
      "<table id=\"accounts\"><thead><tr><th>id</th><th>username</th><th>email</th>"
      "<th>created</th></tr></thead><tbody>\n";
  for (int i = 0; i < rows; ++i) {
    out += "<tr>";
    for (int c = 0; c < 4; ++c) {
      out += "<td>";
      html_escape(out, PQgetvalue(r.result, i, c));
      out += "</td>";
    }
    out += "</tr>\n";
  }
  out += "</tbody></table>\n<p class=\"pages\">Page " + std::to_string(j->page);
  if (j->page > 1) {
    out += " <a rel=\"prev\" href=\"/accounts_page?page=" + std::to_string(j->page - 1) +
           "\">previous</a>";
  }
  if (more) {
    out += " <a rel=\"next\" href=\"/accounts_page?page=" + std::to_string(j->page + 1) +
           "\">next</a>";
  }
  out += "</p>\n</body></html>\n";
  j->answer.answer(200, kHtml, out, kNoStore);
  delete j;
}

uint64_t page_number(std::string_view target) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return 1;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    if (pair.substr(0, 5) == "page=") {
      uint64_t n = 0;
      for (char ch : pair.substr(5)) {
        if (ch < '0' || ch > '9' || n > 1'000'000) return 1;
        n = n * 10 + static_cast<uint64_t>(ch - '0');
      }
      return n == 0 ? 1 : n;
    }
  }
  return 1;
}

void handle_page(app& a, const core::http_request& req, core::http_reply& reply) {
  verified_token v;
  std::string_view token = token_of(req.headers[hdr_authorization], req.headers[hdr_cookie]);
  reply.content_type = kHtml;
  if (!check_token(a, token, &v)) {
    reply.status = 401;
    reply.extra_headers = kNoStore;
    reply.body.put(login_page(""));
    return;
  }
  auto* j = new (std::nothrow) page_job{&a, {}, page_number(req.target), {v.name, v.name_len}};
  if (j == nullptr) return error(reply, 503, "out of memory");
  std::string limit = std::to_string(a.page_size + 1);
  std::string offset = std::to_string((j->page - 1) * a.page_size);
  const char* params[] = {limit.c_str(), offset.c_str()};
  if (a.pg->query(on_page_rows, j,
                  "SELECT id, username, email, to_char(created AT TIME ZONE 'UTC', "
                  "'YYYY-MM-DD HH24:MI:SS') FROM accounts ORDER BY id LIMIT $1 OFFSET $2",
                  2, params) != 0) {
    delete j;
    reply.status = 503;
    reply.extra_headers = "Retry-After: 1\r\n";
    reply.body.put(kHead);
    reply.body.put("<p>database unavailable</p></body></html>");
    return;
  }
  j->answer = reply.defer();
}

void handle_logout(app& a, core::http_reply& reply) {
  reply.status = 303;
  reply.content_type = kHtml;
  int n = snprintf(a.header_scratch, sizeof a.header_scratch,
                   "Location: /accounts_page\r\nSet-Cookie: %s=; Path=/; Max-Age=0; HttpOnly; "
                   "SameSite=Strict%s\r\nCache-Control: no-store\r\n",
                   cookie_name, a.secure_cookie ? "; Secure" : "");
  reply.extra_headers = {a.header_scratch, static_cast<size_t>(n)};
  reply.body.put("<!doctype html><a href=\"/accounts_page\">accounts</a>\n");
}

}  // namespace

// ---- pure pieces ------------------------------------------------------------------------

const char* check_username(std::string_view u) {
  size_t chars = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    auto ch = static_cast<unsigned char>(u[i]);
    if (ch < 0x20 || ch == 0x7f) return "no control characters";
    // C1 controls U+0080..U+009F are C2 80..C2 9F in UTF-8.
    if (ch == 0xc2 && i + 1 < u.size() && static_cast<unsigned char>(u[i + 1]) < 0xa0) {
      return "no control characters";
    }
    if ((ch & 0xc0) != 0x80) ++chars;
  }
  if (chars < 3 || chars > 32) return "3 to 32 characters";
  if (u.front() == ' ' || u.back() == ' ') return "no leading or trailing spaces";
  return nullptr;
}

const char* check_email(std::string_view e) {
  if (e.size() < 3 || e.size() > 254) return "not a plausible e-mail address";
  size_t at = e.rfind('@');
  if (at == std::string_view::npos || at == 0 || at > 64) return "not a plausible e-mail address";
  std::string_view local = e.substr(0, at);
  std::string_view domain = e.substr(at + 1);
  for (char c : local) {
    auto ch = static_cast<unsigned char>(c);
    if (ch <= 0x20 || ch >= 0x7f) return "not a plausible e-mail address";
  }
  if (domain.size() < 3 || domain.find('.') == std::string_view::npos || domain.front() == '.' ||
      domain.back() == '.' || domain.find("..") != std::string_view::npos) {
    return "not a plausible e-mail address";
  }
  for (char ch : domain) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.';
    if (!ok) return "not a plausible e-mail address";
  }
  return nullptr;
}

const char* check_password(std::string_view p) {
  if (p.size() < min_password_bytes) return "at least 8 characters";
  if (p.size() > max_password_bytes) return "at most 128 bytes";
  return nullptr;
}

void html_escape(std::string& out, std::string_view s) {
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
}

std::string_view token_of(std::string_view authorization, std::string_view cookie) {
  authorization = trim(authorization);
  if (authorization.size() > 7) {
    std::string_view scheme = authorization.substr(0, 7);
    bool bearer = true;
    for (size_t i = 0; i < 6; ++i) {
      char ch = scheme[i];
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
      if (ch != "bearer"[i]) bearer = false;
    }
    if (bearer && scheme[6] == ' ') return trim(authorization.substr(7));
    return {};  // another scheme: not ours, and no falling back to the cookie
  }
  if (!authorization.empty()) return {};
  // Cookie: name=value; name=value
  while (!cookie.empty()) {
    size_t semi = cookie.find(';');
    std::string_view pair = trim(cookie.substr(0, semi));
    cookie.remove_prefix(semi == std::string_view::npos ? cookie.size() : semi + 1);
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == cookie_name) {
      return pair.substr(eq + 1);
    }
  }
  return {};
}

// ---- routing ----------------------------------------------------------------------------

const char* route_name(route r) {
  switch (r) {
    case route::account: return "account";
    case route::login: return "login";
    case route::logout: return "logout";
    case route::auth: return "auth";
    case route::jwks: return "jwks";
    case route::page: return "accounts_page";
    case route::health: return "health";
    case route::metrics: return "metrics";
    default: return "other";
  }
}

core::body_policy body_policy(void* ctx, llhttp_method_t method, std::string_view target) {
  auto& a = *static_cast<app*>(ctx);
  if (method != HTTP_POST) return {};
  std::string_view path = path_of(target);
  if (path == "/account") return {a.max_body, true, false};
  if (path == "/login") return {a.max_body, true, true};
  return {};
}

void handle_request(void* ctx, const core::http_request& req, core::http_reply& reply) {
  auto& a = *static_cast<app*>(ctx);
  std::string_view path = path_of(req.target);
  bool get = req.method == HTTP_GET || req.method == HTTP_HEAD;
  bool post = req.method == HTTP_POST;
  reply.route = static_cast<uint8_t>(route::other);
  if (path == "/auth") {
    reply.route = static_cast<uint8_t>(route::auth);
    if (!get) {
      reply.extra_headers = kAllowGet;
      return error(reply, 405, "method not allowed");
    }
    return handle_auth(a, req, reply);
  }
  if (path == "/login") {
    reply.route = static_cast<uint8_t>(route::login);
    if (!post) {
      reply.extra_headers = kAllowPost;
      return error(reply, 405, "method not allowed");
    }
    return handle_login(a, req, reply);
  }
  if (path == "/account") {
    reply.route = static_cast<uint8_t>(route::account);
    if (!post) {
      reply.extra_headers = kAllowPost;
      return error(reply, 405, "method not allowed");
    }
    return handle_signup(a, req, reply);
  }
  if (path == "/logout") {
    reply.route = static_cast<uint8_t>(route::logout);
    if (!post) {
      reply.extra_headers = kAllowPost;
      return error(reply, 405, "method not allowed");
    }
    return handle_logout(a, reply);
  }
  if (path == "/accounts_page") {
    reply.route = static_cast<uint8_t>(route::page);
    if (!get) {
      reply.extra_headers = kAllowGet;
      return error(reply, 405, "method not allowed");
    }
    return handle_page(a, req, reply);
  }
  if (!get && (path == "/.well-known/jwks.json" || path == "/health" || path == "/metrics")) {
    reply.extra_headers = kAllowGet;
    return error(reply, 405, "method not allowed");
  }
  if (path == "/.well-known/jwks.json") {
    reply.route = static_cast<uint8_t>(route::jwks);
    reply.content_type = "application/jwk-set+json";
    reply.extra_headers = "Cache-Control: max-age=300\r\n";
    write_jwks(*a.keys, reply.body);
    return;
  }
  if (path == "/health") {
    reply.route = static_cast<uint8_t>(route::health);
    bool up = a.pg->state() == core::store_state::up;
    reply.status = up && !a.draining ? 200 : 503;
    core::buf_writer& w = reply.body;
    w.put("{\"status\":\"");
    w.put(a.draining ? "draining" : up ? "ok" : "down");
    w.put("\",\"postgres\":\"");
    w.put(core::store_state_name(a.pg->state()));
    w.put("\",\"hash_queue\":");
    w.put_uint(a.hashes->depth());
    w.put(",\"hash_capacity\":");
    w.put_uint(a.hashes->capacity());
    w.put('}');
    return;
  }
  if (path == "/metrics") {
    reply.route = static_cast<uint8_t>(route::metrics);
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    write_metrics(a, reply.body);
    return;
  }
  error(reply, 404, "not found");
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
  core::write_route_counts(p, "accounts_http_requests_total", a.requests,
                           static_cast<size_t>(route::count),
                           [](size_t r) { return route_name(static_cast<route>(r)); });
  p.family("accounts_http_request_duration_seconds", "histogram",
           "From a request's first parsed byte to its answer, deferred ones included.");
  p.histogram("accounts_http_request_duration_seconds", {}, a.durations);
  p.family("accounts_http_connections_open", "gauge", "Open client connections.");
  p.sample_int("accounts_http_connections_open", {}, a.server->connection_count());
  p.family("accounts_http_pending_answers", "gauge",
           "Requests waiting for PostgreSQL or the hashing pool.");
  p.sample_int("accounts_http_pending_answers", {}, a.server->pending_answers());

  static const char* signup_names[] = {"created",      "invalid",    "duplicate",
                                       "rate_limited", "overloaded", "error"};
  p.family("accounts_signups_total", "counter", "Sign-ups (POST /account) by outcome.");
  for (size_t i = 0; i < static_cast<size_t>(signup_outcome::count); ++i) {
    p.sample_int("accounts_signups_total", {{"outcome", signup_names[i]}}, a.signups[i]);
  }
  static const char* login_names[] = {"success",    "failure", "rate_limited",
                                      "overloaded", "invalid", "error"};
  p.family("accounts_logins_total", "counter",
           "Logins (POST /login) by outcome; failure = unknown e-mail or wrong password.");
  for (size_t i = 0; i < static_cast<size_t>(login_outcome::count); ++i) {
    p.sample_int("accounts_logins_total", {{"outcome", login_names[i]}}, a.logins[i]);
  }
  p.family("accounts_token_checks_total", "counter",
           "Token checks (/auth, /accounts_page) by outcome.");
  for (size_t i = 0; i < static_cast<size_t>(token_check::count); ++i) {
    p.sample_int("accounts_token_checks_total",
                 {{"outcome", token_check_name(static_cast<token_check>(i))}}, a.token_checks[i]);
  }
  p.family("accounts_token_cache_hits_total", "counter",
           "Token checks answered from the cache of verified tokens.");
  p.sample_int("accounts_token_cache_hits_total", {}, a.token_cache_hits);
  p.family("accounts_hash_queue_depth", "gauge",
           "Password hash/verify jobs queued or running on the thread pool.");
  p.sample_int("accounts_hash_queue_depth", {}, a.hashes->depth());
  p.family("accounts_hash_queue_capacity", "gauge",
           "Most hash jobs allowed at once; beyond it requests get 503.");
  p.sample_int("accounts_hash_queue_capacity", {}, a.hashes->capacity());
  p.family("accounts_hash_refused_total", "counter",
           "Hash jobs refused because the queue was full.");
  p.sample_int("accounts_hash_refused_total", {}, a.hashes->refused());
  p.family("accounts_hash_duration_seconds", "histogram",
           "Time of one argon2id hash or verify on a pool thread.");
  p.histogram("accounts_hash_duration_seconds", {}, a.hashes->durations());
  p.family("accounts_store_up", "gauge", "1 while the PostgreSQL connection is up.");
  p.sample_int("accounts_store_up", {}, a.pg->state() == core::store_state::up ? 1 : 0);
  p.family("accounts_build_info", "gauge", "Always 1; the version is in the label.");
  p.sample_int("accounts_build_info", {{"version", STACK_VERSION}}, 1);
  core::write_process_metrics(p, a.start_unix);
}

}  // namespace accounts
