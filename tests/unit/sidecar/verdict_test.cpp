// The one decision on a poll: facts in, verdict out, as a table.
#include "verdict.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace sidecar;

namespace {

constexpr const char* kHealthy = "{\"healthy\":true,\"latency\":0.25}";
constexpr const char* kUnhealthy = "{\"healthy\":false,\"latency\":0.95}";

poll_facts answer(long status, const char* body = "", double round_trip = 0.002) {
  poll_facts f;
  f.http_status = status;
  f.body = body;
  f.round_trip = round_trip;
  f.timeout_ms = 100;
  return f;
}

poll_facts error(transport_error e, const char* text = "") {
  poll_facts f;
  f.error = e;
  f.error_text = text;
  f.round_trip = 0.1;
  f.timeout_ms = 100;
  return f;
}

struct verdict_case {
  const char* name;
  poll_facts facts;
  check_policy policy;
  outcome want;
  health_state want_state;
  const char* want_detail;  // nullptr: not checked here
};

const check_policy kHealth{check_kind::health, 0};
const check_policy kHealthSlow{check_kind::health, 10};  // 10 ms
const check_policy kHttp{check_kind::http, 0};
const check_policy kHttpSlow{check_kind::http, 10};

const verdict_case kCases[] = {
    // A /health target: 200 with a healthy body, and nothing else, is ok.
    {"healthy 200", answer(200, kHealthy), kHealth, outcome::ok, health_state::healthy, ""},
    {"healthy:false", answer(200, kUnhealthy), kHealth, outcome::unhealthy, health_state::degraded,
     "healthy=false latency=0.950000"},
    {"503 with a healthy body", answer(503, kHealthy), kHealth, outcome::status, health_state::down,
     "HTTP 503"},
    {"204", answer(204), kHealth, outcome::status, health_state::down, "HTTP 204"},
    {"301 is not followed", answer(301), kHealth, outcome::status, health_state::down, "HTTP 301"},
    {"not JSON", answer(200, "<html>"), kHealth, outcome::body, health_state::down, nullptr},
    {"empty body", answer(200, ""), kHealth, outcome::body, health_state::down, nullptr},
    {"no latency", answer(200, "{\"healthy\":true}"), kHealth, outcome::body, health_state::down,
     nullptr},
    // Transport errors win over whatever status came before them.
    {"timeout", error(transport_error::timeout), kHealth, outcome::timeout, health_state::down,
     "no answer within 100ms"},
    {"lookup", error(transport_error::resolve, "Could not resolve host: x"), kHealth, outcome::dns,
     health_state::down, "Could not resolve host: x"},
    {"refused", error(transport_error::connect, "Connection refused"), kHealth, outcome::connect,
     health_state::down, "Connection refused"},
    {"body too large", error(transport_error::body_too_large), kHealth, outcome::body,
     health_state::down, "body larger than 16384 bytes"},
    {"http error on a probe", error(transport_error::timeout), kHttp, outcome::timeout,
     health_state::down, "no answer within 100ms"},
    // Slow: only a poll that is otherwise ok, and only over the limit.
    {"slow", answer(200, kHealthy, 0.0125), kHealthSlow, outcome::slow, health_state::degraded,
     "round trip 12.500ms over 10ms"},
    {"at the limit is not slow", answer(200, kHealthy, 0.010), kHealthSlow, outcome::ok,
     health_state::healthy, ""},
    {"slow and unhealthy is unhealthy", answer(200, kUnhealthy, 0.5), kHealthSlow,
     outcome::unhealthy, health_state::degraded, nullptr},
    {"slow and 503 is status", answer(503, "", 0.5), kHealthSlow, outcome::status,
     health_state::down, "HTTP 503"},
    {"slow off", answer(200, kHealthy, 4.0), kHealth, outcome::ok, health_state::healthy, ""},
    // An external probe: any 2xx is up, the body is not read.
    {"probe 200", answer(200), kHttp, outcome::ok, health_state::healthy, ""},
    {"probe 204", answer(204, "not json"), kHttp, outcome::ok, health_state::healthy, ""},
    {"probe 299", answer(299), kHttp, outcome::ok, health_state::healthy, ""},
    {"probe 302 (redirects exhausted)", answer(302), kHttp, outcome::status, health_state::down,
     "HTTP 302"},
    {"probe 404", answer(404), kHttp, outcome::status, health_state::down, "HTTP 404"},
    {"probe 199", answer(199), kHttp, outcome::status, health_state::down, "HTTP 199"},
    {"probe slow", answer(200, "", 0.011), kHttpSlow, outcome::slow, health_state::degraded,
     "round trip 11.000ms over 10ms"},
};

}  // namespace

TEST(Verdict, TableOfCases) {
  for (const verdict_case& c : kCases) {
    SCOPED_TRACE(c.name);
    poll_result r = judge(c.facts, c.policy);
    EXPECT_EQ(outcome_name(r.result), std::string(outcome_name(c.want)));
    EXPECT_EQ(state_name(r.state), std::string(state_name(c.want_state)));
    EXPECT_EQ(r.state, state_of(r.result));
    if (c.want_detail != nullptr) {
      EXPECT_STREQ(r.detail, c.want_detail);
    }
    EXPECT_EQ(r.http_status, c.facts.http_status);
    EXPECT_EQ(r.has_rtt, c.facts.http_status != 0);
    EXPECT_DOUBLE_EQ(r.rtt, c.facts.round_trip);
  }
}

TEST(Verdict, KeepsTheHealthReadingOfAnyParsedBody) {
  poll_result ok = judge(answer(200, kHealthy), kHealth);
  EXPECT_TRUE(ok.has_latency);
  EXPECT_TRUE(ok.healthy);
  EXPECT_DOUBLE_EQ(ok.latency, 0.25);
  poll_result sick = judge(answer(200, kUnhealthy), kHealth);
  EXPECT_TRUE(sick.has_latency);
  EXPECT_FALSE(sick.healthy);
  EXPECT_DOUBLE_EQ(sick.latency, 0.95);
  poll_result slow = judge(answer(200, kHealthy, 1.0), kHealthSlow);
  EXPECT_TRUE(slow.has_latency);  // a slow answer still reported its latency
  EXPECT_DOUBLE_EQ(slow.latency, 0.25);
  // A 503's body is not read, nor a probe's.
  EXPECT_FALSE(judge(answer(503, kHealthy), kHealth).has_latency);
  EXPECT_FALSE(judge(answer(200, kHealthy), kHttp).has_latency);
}

TEST(Verdict, BadBodyDetailQuotesTheStartOfTheBody) {
  std::string body(100, 'x');
  poll_result r = judge(answer(200, body.c_str()), kHealth);
  EXPECT_EQ(r.result, outcome::body);
  std::string detail = r.detail;
  // "<what is wrong>: " and the first 40 bytes, raw (the log line escapes them).
  ASSERT_GT(detail.size(), 42u);
  EXPECT_EQ(detail.substr(detail.size() - 42), ": " + std::string(40, 'x')) << detail;
}

TEST(Verdict, EveryOutcomeHasANameAndAState) {
  EXPECT_EQ(state_of(outcome::ok), health_state::healthy);
  for (outcome o : {outcome::unhealthy, outcome::slow}) {
    EXPECT_EQ(state_of(o), health_state::degraded) << outcome_name(o);
  }
  for (outcome o :
       {outcome::status, outcome::timeout, outcome::connect, outcome::dns, outcome::body}) {
    EXPECT_EQ(state_of(o), health_state::down) << outcome_name(o);
  }
  for (size_t i = 0; i < outcome_count; ++i) {
    EXPECT_STRNE(outcome_name(static_cast<outcome>(i)), "unknown") << i;
  }
}
