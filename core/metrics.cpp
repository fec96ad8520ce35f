#include "metrics.hpp"

#include <cmath>
#include <cstdio>

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

}  // namespace core
