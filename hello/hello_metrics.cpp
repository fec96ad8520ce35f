#include "hello_metrics.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace hello {

const char* route_name(route r) {
  switch (r) {
    case route::root: return "root";
    case route::name: return "name";
    case route::health: return "health";
    case route::status: return "status";
    case route::chaos: return "chaos";
    case route::metrics: return "metrics";
    default: return "other";
  }
}

namespace {

// utime + stime (clock ticks) and RSS pages from /proc/self; false if unreadable.
bool read_proc(double* cpu_seconds, double* rss_bytes) {
  FILE* f = fopen("/proc/self/stat", "r");
  if (f == nullptr) return false;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  // Fields after the command name, which is in parentheses and may hold spaces.
  const char* p = strrchr(buf, ')');
  if (p == nullptr) return false;
  unsigned long utime = 0, stime = 0;
  long rss_pages = 0;
  // state(3) ... utime(14) stime(15) ... rss(24), counted from the field after ')'.
  if (sscanf(p + 2,
             "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %*u "
             "%*u %ld",
             &utime, &stime, &rss_pages) != 3) {
    return false;
  }
  long ticks = sysconf(_SC_CLK_TCK);
  *cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(ticks > 0 ? ticks : 100);
  *rss_bytes = static_cast<double>(rss_pages) * static_cast<double>(sysconf(_SC_PAGESIZE));
  return true;
}

size_t open_fds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  size_t n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n > 0 ? n - 1 : 0;  // not counting the directory's own descriptor
}

}  // namespace

void write_metrics(core::buf_writer& w, const scrape_inputs& in) {
  core::prom_writer p(w);
  static const char* classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  p.family("hello_http_requests_total", "counter", "Answered requests by route and status class.");
  for (size_t r = 0; r < static_cast<size_t>(route::count); ++r) {
    for (size_t c = 1; c < 5; ++c) {
      p.sample_int("hello_http_requests_total",
                   {{"route", route_name(static_cast<route>(r))}, {"code", classes[c]}},
                   in.metrics->requests[r][c]);
    }
  }
  p.family("hello_http_request_duration_seconds", "histogram",
           "From a request's first parsed byte to its answer being queued.");
  p.histogram("hello_http_request_duration_seconds", {}, in.metrics->durations);
  p.family("hello_http_connections_open", "gauge", "Open client connections.");
  p.sample_int("hello_http_connections_open", {}, in.open_connections);
  p.family("hello_http_requests_in_flight", "gauge", "Requests begun and not yet answered.");
  p.sample_int("hello_http_requests_in_flight", {}, in.in_flight);
  p.family("hello_http_pending_answers", "gauge",
           "Requests handled whose answer is deferred and not given yet.");
  p.sample_int("hello_http_pending_answers", {}, in.pending_answers);
  p.family("hello_poisoned", "gauge", "1 while /poison has made this instance unhealthy.");
  p.sample_int("hello_poisoned", {}, in.poisoned ? 1 : 0);
  p.family("hello_draining", "gauge", "1 while the instance is stopping.");
  p.sample_int("hello_draining", {}, in.draining ? 1 : 0);
  p.family("hello_build_info", "gauge", "Always 1; the version is in the label.");
  p.sample_int("hello_build_info", {{"version", in.version}}, 1);

  double cpu = 0, rss = 0;
  if (read_proc(&cpu, &rss)) {
    p.family("process_cpu_seconds_total", "counter", "User and system CPU time spent.");
    p.sample("process_cpu_seconds_total", {}, cpu);
    p.family("process_resident_memory_bytes", "gauge", "Resident memory size.");
    p.sample("process_resident_memory_bytes", {}, rss);
  }
  p.family("process_open_fds", "gauge", "Open file descriptors.");
  p.sample_int("process_open_fds", {}, open_fds());
  p.family("process_start_time_seconds", "gauge", "Start time since the Unix epoch.");
  p.sample("process_start_time_seconds", {}, in.process.start_unix);
}

}  // namespace hello
