#include "metrics.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>

namespace core {

void prom_writer::family(std::string_view name, std::string_view type, std::string_view help) {
  w_.put("# HELP ");
  w_.put(name);
  w_.put(' ');
  w_.put(help);
  w_.put("\n# TYPE ");
  w_.put(name);
  w_.put(' ');
  w_.put(type);
  w_.put('\n');
}

void prom_writer::labels_out(std::initializer_list<metric_label> labels, std::string_view le) {
  if (labels.size() == 0 && le.empty()) return;
  w_.put('{');
  bool first = true;
  auto one = [&](std::string_view name, std::string_view value) {
    if (!first) w_.put(',');
    first = false;
    w_.put(name);
    w_.put("=\"");
    for (char c : value) {
      if (c == '\\') {
        w_.put("\\\\");
      } else if (c == '"') {
        w_.put("\\\"");
      } else if (c == '\n') {
        w_.put("\\n");
      } else {
        w_.put(c);
      }
    }
    w_.put('"');
  };
  for (const metric_label& l : labels) one(l.name, l.value);
  if (!le.empty()) one("le", le);
  w_.put('}');
}

void prom_writer::number(double v) {
  if (std::isnan(v)) {
    w_.put("NaN");
  } else if (std::isinf(v)) {
    w_.put(v > 0 ? "+Inf" : "-Inf");
  } else {
    w_.put_double(v);
  }
}

void prom_writer::sample(std::string_view name, std::initializer_list<metric_label> labels,
                         double v) {
  w_.put(name);
  labels_out(labels, {});
  w_.put(' ');
  number(v);
  w_.put('\n');
}

void prom_writer::sample_int(std::string_view name, std::initializer_list<metric_label> labels,
                             uint64_t v) {
  w_.put(name);
  labels_out(labels, {});
  w_.put(' ');
  w_.put_uint(v);
  w_.put('\n');
}

void prom_writer::suffixed(std::string_view name, std::string_view suffix,
                           std::initializer_list<metric_label> labels) {
  w_.put(name);
  w_.put(suffix);
  labels_out(labels, {});
  w_.put(' ');
}

void prom_writer::bucket(std::string_view name, std::initializer_list<metric_label> labels,
                         double le, uint64_t cumulative) {
  char bound[32];
  if (le < 0) {
    snprintf(bound, sizeof bound, "+Inf");
  } else {
    char tmp[64];
    buf_writer b(tmp, sizeof tmp);
    b.put_double(le);
    snprintf(bound, sizeof bound, "%.*s", static_cast<int>(b.len), tmp);
  }
  w_.put(name);
  w_.put("_bucket");
  labels_out(labels, bound);
  w_.put(' ');
  w_.put_uint(cumulative);
  w_.put('\n');
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

void write_process_metrics(prom_writer& p, double start_unix) {
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
  p.sample("process_start_time_seconds", {}, start_unix);
}

void write_route_counts(prom_writer& p, std::string_view name, const uint64_t (*counts)[5],
                        size_t routes, const char* (*route_name)(size_t route)) {
  static const char* classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  p.family(name, "counter", "Answered requests by route and status class.");
  for (size_t r = 0; r < routes; ++r) {
    for (size_t c = 1; c < 5; ++c) {
      p.sample_int(name, {{"route", route_name(r)}, {"code", classes[c]}}, counts[r][c]);
    }
  }
}

}  // namespace core
