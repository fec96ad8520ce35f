// Prometheus text exposition (format 0.0.4) written straight from the application's own
// counters at scrape time. Updating a metric is a plain integer or double store in the owner's
// struct (no registry, no locks, no allocation); only a scrape formats text, into the HTTP
// server's fixed body buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "response.hpp"

namespace core {

struct metric_label {
  std::string_view name;
  std::string_view value;  // escaped on output (backslash, quote, newline)
};

// Buckets are upper bounds in increasing order; +Inf is implicit.
template <size_t N>
struct fixed_histogram {
  const double* bounds;         // N bounds, static storage
  uint64_t counts[N + 1] = {};  // per bucket (not cumulative); last = above every bound
  uint64_t count = 0;
  double sum = 0;

  explicit fixed_histogram(const double (&b)[N]) : bounds(b) {}
  void observe(double v) {
    size_t i = 0;
    while (i < N && v > bounds[i]) ++i;
    ++counts[i];
    ++count;
    sum += v;
  }
};

class prom_writer {
 public:
  explicit prom_writer(buf_writer& w) : w_(w) {}

  // "# HELP name help" and "# TYPE name type" (counter, gauge, histogram, info-style gauge).
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, std::initializer_list<metric_label> labels, double v);
  void sample_int(std::string_view name, std::initializer_list<metric_label> labels, uint64_t v);
  template <size_t N>
  void histogram(std::string_view name, std::initializer_list<metric_label> labels,
                 const fixed_histogram<N>& h) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= N; ++i) {
      cumulative += h.counts[i];
      bucket(name, labels, i < N ? h.bounds[i] : -1, cumulative);
    }
    suffixed(name, "_sum", labels);
    number(h.sum);
    w_.put('\n');
    suffixed(name, "_count", labels);
    w_.put_uint(h.count);
    w_.put('\n');
  }

 private:
  void labels_out(std::initializer_list<metric_label> labels, std::string_view le);
  void suffixed(std::string_view name, std::string_view suffix,
                std::initializer_list<metric_label> labels);
  void bucket(std::string_view name, std::initializer_list<metric_label> labels, double le,
              uint64_t cumulative);
  void number(double v);

  buf_writer& w_;
};

// The standard process_* families (CPU, resident memory, open descriptors, start time), read
// from /proc at scrape time.
void write_process_metrics(prom_writer& p, double start_unix);

// A status code's class as an index: 0 for 1xx .. 4 for 5xx (anything else counts as 5xx).
inline size_t status_class(int status) {
  int c = status / 100 - 1;
  return c < 0 || c > 4 ? 4 : static_cast<size_t>(c);
}

// One counter family `name` {route, code} from counts[route][status_class] (2xx to 5xx: a
// 1xx is never a final answer), the same shape in every service's /metrics.
void write_route_counts(prom_writer& p, std::string_view name, const uint64_t (*counts)[5],
                        size_t routes, const char* (*route_name)(size_t route));

}  // namespace core
