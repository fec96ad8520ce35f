// The pure pieces the store clients share: URL parsing, backoff, the secret file.
#include "store.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "pg_client.hpp"
#include "redis_client.hpp"

using namespace core;

TEST(RedisUrl, HostPortDb) {
  redis_endpoint ep;
  ASSERT_EQ(parse_redis_url("redis://redis:6380/2", &ep), nullptr);
  EXPECT_EQ(ep.host, "redis");
  EXPECT_EQ(ep.port, 6380);
  EXPECT_EQ(ep.db, 2);
  ASSERT_EQ(parse_redis_url("redis://10.0.0.7", &ep), nullptr);
  EXPECT_EQ(ep.host, "10.0.0.7");
  EXPECT_EQ(ep.port, 6379);
  EXPECT_EQ(ep.db, 0);
  ASSERT_EQ(parse_redis_url("redis://[::1]:7000/", &ep), nullptr);
  EXPECT_EQ(ep.host, "::1");
  EXPECT_EQ(ep.port, 7000);
  ASSERT_EQ(parse_redis_url("unix:///run/redis.sock?db=3", &ep), nullptr);
  EXPECT_EQ(ep.host, "/run/redis.sock");
  EXPECT_EQ(ep.db, 3);
}

TEST(RedisUrl, RefusesWhatItCannotHonour) {
  redis_endpoint ep;
  ep.host = "untouched";
  const char* bad[] = {"",
                       "http://redis",
                       "rediss://redis",
                       "redis://",
                       "redis://:pw@redis",
                       "redis://user:pw@redis:6379",
                       "redis://redis:",
                       "redis://redis:0",
                       "redis://redis:65536",
                       "redis://redis:12ab",
                       "redis://redis/x",
                       "redis://redis/1?x=y",
                       "redis://[::1",
                       "redis://red is",
                       "unix://relative.sock",
                       "unix:///s.sock?database=1"};
  for (const char* url : bad) {
    EXPECT_NE(parse_redis_url(url, &ep), nullptr) << url;
  }
  EXPECT_EQ(ep.host, "untouched");
  EXPECT_STREQ(parse_redis_url("redis://:pw@redis", &ep),
               "credentials in the URL are not supported (use the password file)");
}

TEST(Backoff, DoublesUpToTheCapWithBoundedJitter) {
  backoff b(100, 1000, 42);
  EXPECT_EQ(b.nominal_ms(0), 100u);
  EXPECT_EQ(b.nominal_ms(1), 200u);
  EXPECT_EQ(b.nominal_ms(3), 800u);
  EXPECT_EQ(b.nominal_ms(4), 1000u);
  EXPECT_EQ(b.nominal_ms(60), 1000u);
  bool varied = false;
  uint64_t first_at_cap = 0;
  for (uint32_t n = 0; n < 40; ++n) {
    uint64_t nominal = b.nominal_ms(n);
    uint64_t d = b.next_ms();
    EXPECT_GE(d, nominal - nominal / 2) << n;
    EXPECT_LE(d, nominal) << n;
    if (n == 10) first_at_cap = d;
    if (n > 10 && d != first_at_cap) varied = true;
  }
  EXPECT_TRUE(varied) << "no jitter";
  b.reset();
  EXPECT_EQ(b.attempt(), 0u);
  EXPECT_LE(b.next_ms(), 100u);
}

TEST(Backoff, SeedsGiveDifferentSchedules) {
  backoff a(1000, 1000, 1);
  backoff b(1000, 1000, 2);
  int same = 0;
  for (int i = 0; i < 20; ++i) same += a.next_ms() == b.next_ms();
  EXPECT_LT(same, 5);
}

namespace {
std::string write_temp(const std::string& content) {
  char path[] = "/tmp/secret-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  close(fd);
  return path;
}
}  // namespace

TEST(SecretFile, OneTrailingNewlineGoes) {
  std::string out;
  std::string p = write_temp("pa ss'\"word\n");
  EXPECT_EQ(read_secret_file(p.c_str(), &out), nullptr);
  EXPECT_EQ(out, "pa ss'\"word");
  unlink(p.c_str());
  p = write_temp("crlf\r\n");
  EXPECT_EQ(read_secret_file(p.c_str(), &out), nullptr);
  EXPECT_EQ(out, "crlf");
  unlink(p.c_str());
}

TEST(SecretFile, RefusesEmptyMultilineHugeAndMissing) {
  std::string out = "keep";
  std::string p = write_temp("\n");
  EXPECT_STREQ(read_secret_file(p.c_str(), &out), "empty");
  unlink(p.c_str());
  p = write_temp("two\nlines\n");
  EXPECT_STREQ(read_secret_file(p.c_str(), &out), "contains a line break");
  unlink(p.c_str());
  p = write_temp(std::string(5000, 'x'));
  EXPECT_STREQ(read_secret_file(p.c_str(), &out), "larger than 4 KiB");
  unlink(p.c_str());
  EXPECT_NE(read_secret_file("/nonexistent/secret", &out), nullptr);
  EXPECT_EQ(out, "keep");
}

TEST(IpLiteral, NoLookupForAddresses) {
  EXPECT_TRUE(is_ip_literal("127.0.0.1"));
  EXPECT_TRUE(is_ip_literal("::1"));
  EXPECT_TRUE(is_ip_literal("fd00::3"));
  EXPECT_FALSE(is_ip_literal("redis"));
  EXPECT_FALSE(is_ip_literal("localhost"));
  EXPECT_FALSE(is_ip_literal(""));
  EXPECT_FALSE(is_ip_literal("1.2.3.4.5"));
}

TEST(PgConninfo, CheckedWithoutConnecting) {
  std::string why;
  EXPECT_TRUE(check_pg_conninfo("host=db dbname=app user=app", &why));
  EXPECT_TRUE(check_pg_conninfo("postgresql://app@db:5432/app?sslmode=disable", &why));
  EXPECT_FALSE(check_pg_conninfo("host=db nonsense_key=1", &why));
  EXPECT_NE(why.find("nonsense_key"), std::string::npos) << why;
  EXPECT_FALSE(check_pg_conninfo("postgresql://db:5432/app?nonsense=1", &why));
  EXPECT_FALSE(check_pg_conninfo("host='unterminated", &why));
}

namespace {
struct lookup_outcome {
  int calls = 0;
  int status = 1;
  std::string ip;
  static void on_done(void* ctx, int status, const char* ip) {
    auto* o = static_cast<lookup_outcome*>(ctx);
    ++o->calls;
    o->status = status;
    o->ip = ip;
  }
};
void run_until(uv_loop_t* loop, const int& calls) {
  uint64_t deadline = uv_hrtime() + 10'000'000'000ull;
  while (calls == 0 && uv_hrtime() < deadline) uv_run(loop, UV_RUN_ONCE);
}
}  // namespace

// c-ares reads the hosts file itself (no glibc NSS: works in a static scratch image).
TEST(HostLookup, HostsFileNamesResolveOffTheLoop) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  host_lookup lookup;
  lookup_outcome o;
  ASSERT_EQ(lookup.start(&loop, "localhost", lookup_outcome::on_done, &o), 0);
  EXPECT_TRUE(lookup.active());
  EXPECT_EQ(lookup.start(&loop, "localhost", lookup_outcome::on_done, &o), UV_EBUSY);
  run_until(&loop, o.calls);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.status, 0);
  EXPECT_EQ(o.ip, "127.0.0.1");  // IPv4 preferred over ::1
  EXPECT_FALSE(lookup.active());
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

// A name nobody can resolve ends in an error within the lookup's own timeout (NXDOMAIN at
// once with a reachable DNS server, a timeout without one).
TEST(HostLookup, UnknownNamesFailWithinTheTimeout) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  host_lookup lookup;
  lookup_outcome o;
  uint64_t t0 = uv_hrtime();
  ASSERT_EQ(lookup.start(&loop, "no-such-host.invalid", lookup_outcome::on_done, &o, 500), 0);
  run_until(&loop, o.calls);
  double ms = static_cast<double>(uv_hrtime() - t0) / 1e6;
  EXPECT_EQ(o.calls, 1);
  EXPECT_TRUE(o.status == UV_EAI_NONAME || o.status == UV_EAI_AGAIN) << uv_strerror(o.status);
  EXPECT_EQ(o.ip, "");
  EXPECT_LT(ms, 1500);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}
