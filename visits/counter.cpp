#include "counter.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "log.hpp"

namespace visits {

using core::store_error;
using core::store_state;

const core::pg_migration schema[] = {
    {1,
     "CREATE TABLE IF NOT EXISTS visits_counter (id int PRIMARY KEY CHECK (id = 1), "
     "n bigint NOT NULL, seq bigint NOT NULL)"},
    {1, "INSERT INTO visits_counter (id, n, seq) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING"},
    {1,
     "CREATE TABLE IF NOT EXISTS visits_flush (flush_id bigint PRIMARY KEY, "
     "delta bigint NOT NULL, result bigint, created timestamptz NOT NULL DEFAULT now())"},
};
const size_t schema_steps = sizeof schema / sizeof schema[0];

const char* store_used_name(store_used s) {
  switch (s) {
    case store_used::redis: return "redis";
    case store_used::postgres: return "postgres";
    default: return "none";
  }
}

struct batch {
  counter* owner = nullptr;
  batch* next = nullptr;  // free list, or the list of batches held while Redis is seeded
  visit* head = nullptr;
  visit* tail = nullptr;
  uint32_t k = 0;  // visits sent to the store
  uint64_t epoch = 0;
};

// One PostgreSQL statement of the counter, queued in order; one is in flight at a time.
struct pg_op {
  enum kind_t : uint8_t { apply, tombstone, read, reset, prune };
  counter* owner = nullptr;
  pg_op* next = nullptr;
  kind_t kind = apply;
  bool sent = false;     // went out at least once (then it is never merged into)
  bool unknown = false;  // sent, and its outcome is not known
  uint64_t id = 0;       // flush id (apply, tombstone)
  int64_t delta = 0;
  int64_t backlog_part = 0;  // how much of delta is the backlog (the rest: the batch's visits)
  batch* b = nullptr;        // visits waiting for this statement's result (apply)
};

namespace {

// Once per flush id: adds $2 to the count n, and hands out $3 numbers above both the numbers
// seen so far (seq) and this process's highest ($4). n is the exact count; seq only ever
// rises (Redis's numbers have gaps where a client left, so the two differ). A retry returns
// the first result. The flush row and the counter change in one statement, so they commit
// together or not at all; two executions of one id cannot both commit (the second's INSERT
// violates the primary key and rolls back).
constexpr const char* kApplySql =
    "WITH prior AS (SELECT result FROM visits_flush WHERE flush_id = $1::bigint), "
    "upd AS (UPDATE visits_counter SET n = n + $2::bigint, "
    "seq = GREATEST(seq, $4::bigint) + $3::bigint WHERE id = 1 "
    "AND NOT EXISTS (SELECT 1 FROM prior) RETURNING seq), "
    "ins AS (INSERT INTO visits_flush (flush_id, delta, result) "
    "SELECT $1::bigint, $2::bigint, seq FROM upd RETURNING result) "
    "SELECT result FROM ins UNION ALL SELECT result FROM prior";

// Makes a flush id unusable if it did not apply: (tombstoned now, result of an earlier apply,
// tombstoned before: our own earlier try whose answer was lost).
constexpr const char* kTombstoneSql =
    "WITH ins AS (INSERT INTO visits_flush (flush_id, delta, result) "
    "VALUES ($1::bigint, 0, NULL) ON CONFLICT (flush_id) DO NOTHING RETURNING 1) "
    "SELECT (SELECT count(*) FROM ins), "
    "(SELECT result FROM visits_flush WHERE flush_id = $1::bigint), "
    "(SELECT count(*) FROM visits_flush WHERE flush_id = $1::bigint AND result IS NULL)";

constexpr const char* kReadSql = "SELECT seq FROM visits_counter WHERE id = 1";
constexpr const char* kResetSql = "UPDATE visits_counter SET n = 0, seq = 0 WHERE id = 1";
// Flush rows only matter while a retry can still come: an hour is ample.
constexpr const char* kPruneSql =
    "DELETE FROM visits_flush WHERE created < now() - interval '1 hour'";

// Raises the Redis counter to at least ARGV[1] (a Redis that restarted empty, or that missed
// visits counted in PostgreSQL while it was away); ARGV[2] = "1" sets it exactly (after a
// reset that Redis missed).
constexpr const char* kSeedScript =
    "local c = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "local v = tonumber(ARGV[1]) "
    "if ARGV[2] == '1' or c < v then redis.call('SET', KEYS[1], v) return v end "
    "return c";

constexpr uint64_t kPruneEveryMs = 10 * 60 * 1000;

bool parse_int64(const char* s, int64_t* out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  long long v = strtoll(s, &end, 10);
  if (*end != '\0') return false;
  *out = v;
  return true;
}

}  // namespace

counter::counter(uv_loop_t* loop, core::redis_client* redis, core::pg_client* pg,
                 counter_options options)
    : loop_(loop), redis_(redis), pg_(pg), opt_(std::move(options)) {
  uv_check_init(loop_, &turn_);
  turn_.data = this;
  uv_timer_init(loop_, &flush_timer_);
  flush_timer_.data = this;
  uv_timer_start(&flush_timer_, on_flush_timer, opt_.flush_interval_ms, opt_.flush_interval_ms);
  uv_timer_init(loop_, &finish_timer_);
  finish_timer_.data = this;
  // Flush ids: 32 random bits of this process, then a sequence.
  uint32_t r = 0;
  if (uv_random(nullptr, nullptr, &r, sizeof r, 0, nullptr) != 0)
    r = static_cast<uint32_t>(uv_hrtime());
  instance_ = static_cast<uint64_t>(r & 0x7fffffffu) << 32;
}

counter::~counter() {
  for (visit* v = free_visits_; v != nullptr;) {
    visit* n = v->next;
    delete v;
    v = n;
  }
  for (batch* b = free_batches_; b != nullptr;) {
    batch* n = b->next;
    delete b;
    b = n;
  }
  for (pg_op* o = free_ops_; o != nullptr;) {
    pg_op* n = o->next;
    delete o;
    o = n;
  }
}

// --- records ---------------------------------------------------------------------------------

visit* counter::new_visit() {
  visit* v = free_visits_;
  if (v != nullptr) {
    free_visits_ = v->next;
  } else {
    v = new (std::nothrow) visit;
    if (v == nullptr) return nullptr;
  }
  *v = visit{};
  return v;
}

batch* counter::new_batch() {
  batch* b = free_batches_;
  if (b != nullptr) {
    free_batches_ = b->next;
  } else {
    b = new (std::nothrow) batch;
    if (b == nullptr) return nullptr;
  }
  *b = batch{};
  b->owner = this;
  b->epoch = epoch_;
  return b;
}

void counter::free_batch(batch* b) {
  // Visits go back to the free list with their batch. A visit's http_deferred may still be
  // pending only if it was never answered (then it is cancelled by the server later, and its
  // on_cancel must not touch the record): we mark it gone before reuse by answering or by
  // failing every visit first.
  for (visit* v = b->head; v != nullptr;) {
    visit* n = v->next;
    v->next = free_visits_;
    free_visits_ = v;
    v = n;
  }
  b->next = free_batches_;
  free_batches_ = b;
}

pg_op* counter::new_op() {
  pg_op* o = free_ops_;
  if (o != nullptr) {
    free_ops_ = o->next;
  } else {
    o = new (std::nothrow) pg_op;
    if (o == nullptr) return nullptr;
  }
  *o = pg_op{};
  o->owner = this;
  return o;
}

void counter::free_op(pg_op* op) {
  op->next = free_ops_;
  free_ops_ = op;
}

uint64_t counter::next_flush_id() {
  return instance_ | ++flush_seq_;
}

void counter::mark_backlog_start() {
  if (backlog_since_ == 0) backlog_since_ = uv_now(loop_);
}

// Nothing unflushed any more: the lag clock stops.
void counter::update_lag() {
  bool owed = backlog_ > 0;
  for (pg_op* o = pg_head_; o != nullptr && !owed; o = o->next) owed = o->backlog_part > 0;
  if (!owed) backlog_since_ = 0;
}

double counter::flush_lag_seconds() const {
  if (backlog_since_ == 0) return 0;
  return static_cast<double>(uv_now(loop_) - backlog_since_) / 1000.0;
}

// --- store states ------------------------------------------------------------------------------

void counter::on_redis_state(store_state s) {
  bool was = redis_conn_;
  redis_conn_ = s == store_state::up;
  if (!redis_conn_) {
    redis_ok_ = false;
    release_held();
    return;
  }
  if (!was) seed_redis();
}

void counter::on_pg_state(store_state s) {
  bool was = pg_ok_;
  pg_ok_ = s == store_state::up;
  if (pg_ok_ && !was) {
    read_durable();
    pump_pg();
  }
  // Redis waits to be seeded only while PostgreSQL can still answer for the numbers.
  if (!pg_ok_ && redis_conn_ && !redis_ok_) seed_redis();
}

// Redis is used only once it holds at least every number handed out; the EVAL goes first on
// the connection, so every INCRBY after it is ordered after it.
// Batches held while Redis was being seeded go where they can now.
void counter::release_held() {
  while (held_head_ != nullptr) {
    batch* b = held_head_;
    held_head_ = b->next;
    b->next = nullptr;
    if (redis_ok_) {
      send_redis(b);
    } else if (pg_ok_) {
      count_in_pg(b);
    } else {
      fail_batch(b, 503, "{\"error\":\"no store can count the visit now\"}");
    }
  }
  held_tail_ = nullptr;
}

void counter::seed_redis() {
  if (!redis_conn_ || redis_ok_ || finishing_) return;
  if (!durable_known_) return;  // read_durable() calls again when it knows
  // PostgreSQL batches still running could hand out numbers above the seed: wait for them.
  if (pg_ok_) {
    for (pg_op* o = pg_head_; o != nullptr; o = o->next) {
      if (o->b != nullptr) return;  // pg_done() calls again
    }
  }
  int64_t floor = last_given_ > durable_ ? last_given_ : durable_;
  char value[24];
  snprintf(value, sizeof value, "%lld", static_cast<long long>(floor));
  const char* exact = reset_pending_redis_ ? "1" : "0";
  const char* argv[] = {"EVAL", kSeedScript, "1", opt_.redis_key.c_str(), value, exact};
  size_t lens[] = {4, strlen(kSeedScript), 1, opt_.redis_key.size(), strlen(value), 1};
  if (redis_->command_argv(on_seed, this, 6, argv, lens) != 0) return;
  ++stats_.redis_commands;
  reset_pending_redis_ = false;
  redis_ok_ = true;
  core::log_event("COUNTER", "redis=seeded floor=%lld", static_cast<long long>(floor));
  release_held();
}

// Redis lags behind numbers handed out from PostgreSQL: one EVAL brings it up.
void counter::raise_redis() {
  if (!redis_ok_) return;
  char value[24];
  snprintf(value, sizeof value, "%lld", static_cast<long long>(last_given_));
  const char* argv[] = {"EVAL", kSeedScript, "1", opt_.redis_key.c_str(), value, "0"};
  size_t lens[] = {4, strlen(kSeedScript), 1, opt_.redis_key.size(), strlen(value), 1};
  if (redis_->command_argv(on_seed, this, 6, argv, lens) == 0) ++stats_.redis_commands;
}

void counter::on_seed(void* ctx, const core::redis_result& r) {
  auto* self = static_cast<counter*>(ctx);
  if (r.error != store_error::none) {
    ++self->stats_.redis_errors[static_cast<int>(r.error)];
    // The connection is going (a failed command drops it); the next one seeds again.
    self->redis_ok_ = false;
    return;
  }
}

void counter::read_durable() {
  pg_op* op = new_op();
  if (op == nullptr) return;
  op->kind = pg_op::read;
  // Ahead of waiting writes: it only reads, and the seed needs it.
  if (pg_head_ == nullptr || pg_in_flight_) {
    enqueue_pg(op);
  } else {
    op->next = pg_head_;
    pg_head_ = op;
  }
}

// --- counting ----------------------------------------------------------------------------------

void counter::add(visit* v) {
  if (!redis_conn_ && !pg_ok_) {
    // Both stores down: an answer now, nothing counted.
    v->gone = true;
    v->answer.answer(503, "application/json",
                     "{\"error\":\"both stores are down; the visit was not counted\"}");
    ++stats_.answered_by[static_cast<int>(store_used::none)];
    v->next = free_visits_;
    free_visits_ = v;
    return;
  }
  if (forming_tail_ != nullptr) {
    forming_tail_->next = v;
  } else {
    forming_head_ = v;
    uv_check_start(&turn_, on_turn);
  }
  forming_tail_ = v;
  ++forming_count_;
}

void counter::on_visit_cancel(void* ctx) {
  static_cast<visit*>(ctx)->gone = true;
}

// After the turn's I/O callbacks: this turn's visits are one batch.
void counter::on_turn(uv_check_t* h) {
  auto* self = static_cast<counter*>(h->data);
  uv_check_stop(h);
  self->close_batch();
}

void counter::close_batch() {
  if (forming_head_ == nullptr) return;
  batch* b = new_batch();
  if (b == nullptr) {
    for (visit* v = forming_head_; v != nullptr; v = v->next) {
      v->answer.answer(503, "application/json", "{\"error\":\"out of memory\"}");
    }
    forming_head_ = forming_tail_ = nullptr;
    forming_count_ = 0;
    return;
  }
  // Visits whose client already left are not counted.
  for (visit* v = forming_head_; v != nullptr;) {
    visit* n = v->next;
    v->next = nullptr;
    if (v->gone) {
      v->next = free_visits_;
      free_visits_ = v;
    } else {
      if (b->tail != nullptr) {
        b->tail->next = v;
      } else {
        b->head = v;
      }
      b->tail = v;
      ++b->k;
    }
    v = n;
  }
  forming_head_ = forming_tail_ = nullptr;
  forming_count_ = 0;
  if (b->k == 0) {
    free_batch(b);
    return;
  }
  ++stats_.batches;
  if (redis_ok_) {
    send_redis(b);
  } else if (redis_conn_ && durable_known_ && pg_ok_) {
    // Being seeded: PostgreSQL's running batches finish first; this one goes to Redis after.
    b->next = nullptr;
    if (held_tail_ != nullptr) {
      held_tail_->next = b;
    } else {
      held_head_ = b;
    }
    held_tail_ = b;
  } else if (pg_ok_) {
    count_in_pg(b);
  } else {
    fail_batch(b, 503, "{\"error\":\"no store can count the visit now\"}");
  }
}

void counter::send_redis(batch* b) {
  char k[16];
  snprintf(k, sizeof k, "%u", b->k);
  const char* argv[] = {"INCRBY", opt_.redis_key.c_str(), k};
  size_t lens[] = {6, opt_.redis_key.size(), strlen(k)};
  if (redis_->command_argv(on_incr, b, 3, argv, lens) != 0) {
    redis_ok_ = false;
    if (pg_ok_) {
      count_in_pg(b);
    } else {
      fail_batch(b, 503, "{\"error\":\"no store can count the visit now\"}");
    }
    return;
  }
  ++stats_.redis_commands;
}

void counter::on_incr(void* ctx, const core::redis_result& r) {
  auto* b = static_cast<batch*>(ctx);
  counter* self = b->owner;
  if (r.error == store_error::none && r.reply != nullptr && r.reply->type == REDIS_REPLY_INTEGER) {
    self->answer_batch(b, r.reply->integer, store_used::redis, true);
    return;
  }
  ++self->stats_.redis_errors[static_cast<int>(r.error == store_error::none ? store_error::server
                                                                            : r.error)];
  // Redis may or may not have counted it: no matter, Redis is not the durable count (its
  // numbers only jump). PostgreSQL counts it now.
  if (self->pg_ok_ && r.error != store_error::closed) {
    self->count_in_pg(b);
  } else {
    self->fail_batch(b, 503, "{\"error\":\"no store can count the visit now\"}");
  }
}

// Hands out last-k+1 .. last in request order. A visit whose client left keeps its number
// (a gap) and, for Redis batches, is not added to the backlog.
//
// The numbers come from two sources (Redis's counter, PostgreSQL's seq), which can overlap
// for a moment after a failover (a PostgreSQL batch whose outcome was unknown completes after
// Redis was seeded). So no answer gets a number at or below one this process already gave:
// each client's numbers strictly increase, whatever the order the stores answered in; Redis is
// then raised to match. The count itself (PostgreSQL's n) never depends on the numbers.
void counter::answer_batch(batch* b, int64_t last, store_used used, bool add_backlog) {
  int64_t number = last - static_cast<int64_t>(b->k);
  uint64_t delivered = 0;
  bool bumped = false;
  char body[160];
  for (visit* v = b->head; v != nullptr; v = v->next) {
    ++number;
    if (number <= last_given_) {
      number = last_given_ + 1;
      bumped = true;
    }
    if (v->gone) continue;
    int n;
    const char* ctype;
    if (v->html) {
      n = snprintf(body, sizeof body,
                   "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>visits</title>"
                   "</head>\n<body><p>This page has been viewed %lld time(s).</p></body></html>\n",
                   static_cast<long long>(number));
      ctype = "text/html; charset=utf-8";
    } else {
      n = snprintf(body, sizeof body, "{\"visits\":%lld}", static_cast<long long>(number));
      ctype = "application/json";
    }
    v->gone = true;  // answered: the record may be reused
    if (v->answer.answer(200, ctype, std::string_view(body, static_cast<size_t>(n)))) {
      ++delivered;
      if (number > last_given_) last_given_ = number;
    }
  }
  stats_.answered_by[static_cast<int>(used)] += delivered;
  if (bumped) raise_redis();
  if (add_backlog && b->epoch == epoch_ && delivered > 0) {
    mark_backlog_start();
    backlog_ += delivered;
  }
  free_batch(b);
}

void counter::fail_batch(batch* b, int status, const char* why) {
  for (visit* v = b->head; v != nullptr; v = v->next) {
    if (v->gone) continue;
    v->gone = true;
    if (v->answer.answer(status, "application/json", why)) {
      ++stats_.answered_by[static_cast<int>(store_used::none)];
    }
  }
  free_batch(b);
}

// The batch is counted in PostgreSQL, together with the backlog, so the numbers continue
// after those Redis handed out. Batches waiting behind a running statement merge.
void counter::count_in_pg(batch* b) {
  pg_op* tail = pg_tail_;
  if (tail != nullptr && tail->kind == pg_op::apply && !tail->sent &&
      (tail->b == nullptr || tail->b->epoch == b->epoch)) {
    tail->delta += static_cast<int64_t>(b->k + backlog_);
    tail->backlog_part += static_cast<int64_t>(backlog_);
    backlog_ = 0;
    if (tail->b == nullptr) {
      tail->b = b;
    } else {
      tail->b->tail->next = b->head;
      tail->b->tail = b->tail;
      tail->b->k += b->k;
      b->head = b->tail = nullptr;
      free_batch(b);
    }
    pump_pg();
    return;
  }
  pg_op* op = new_op();
  if (op == nullptr) {
    fail_batch(b, 503, "{\"error\":\"out of memory\"}");
    return;
  }
  op->kind = pg_op::apply;
  op->id = next_flush_id();
  op->delta = static_cast<int64_t>(b->k + backlog_);
  op->backlog_part = static_cast<int64_t>(backlog_);
  op->b = b;
  backlog_ = 0;
  enqueue_pg(op);
  pump_pg();
}

void counter::enqueue_pg(pg_op* op) {
  op->next = nullptr;
  if (pg_tail_ != nullptr) {
    pg_tail_->next = op;
  } else {
    pg_head_ = op;
  }
  pg_tail_ = op;
}

// --- PostgreSQL ------------------------------------------------------------------------------

void counter::pump_pg() {
  if (pg_in_flight_ || !pg_ok_ || pg_head_ == nullptr) return;
  pg_op* op = pg_head_;
  if (op->kind == pg_op::apply && op->unknown && op->b != nullptr) {
    // Its outcome is unknown. If nobody waits for its numbers any more, make sure it never
    // applies rather than count visits whose clients got no 200.
    bool anyone = false;
    for (visit* v = op->b->head; v != nullptr && !anyone; v = v->next) anyone = !v->gone;
    if (!anyone) op->kind = pg_op::tombstone;
  }
  char id[24];
  char delta[24];
  char k[24];
  char floor[24];
  snprintf(id, sizeof id, "%llu", static_cast<unsigned long long>(op->id));
  snprintf(delta, sizeof delta, "%lld", static_cast<long long>(op->delta));
  snprintf(k, sizeof k, "%u", op->b != nullptr ? op->b->k : 0u);
  snprintf(floor, sizeof floor, "%lld", static_cast<long long>(last_given_));
  const char* params[] = {id, delta, k, floor};
  int rc;
  switch (op->kind) {
    case pg_op::apply: rc = pg_->query(on_pg_result, op, kApplySql, 4, params); break;
    case pg_op::tombstone: rc = pg_->query(on_pg_result, op, kTombstoneSql, 1, params); break;
    case pg_op::read: rc = pg_->query(on_pg_result, op, kReadSql); break;
    case pg_op::reset: rc = pg_->query(on_pg_result, op, kResetSql); break;
    default: rc = pg_->query(on_pg_result, op, kPruneSql); break;
  }
  if (rc != 0) return;  // not up: the next state change pumps again
  ++stats_.pg_statements;
  op->sent = true;
  pg_in_flight_ = true;
}

void counter::on_pg_result(void* ctx, const core::pg_query_result& r) {
  auto* op = static_cast<pg_op*>(ctx);
  op->owner->pg_done(op, r);
}

void counter::pg_done(pg_op* op, const core::pg_query_result& r) {
  pg_in_flight_ = false;
  if (r.error == store_error::closed) {
    // The client closed (shutdown): the statement's record goes back; finish() logged any loss.
    if (op->b != nullptr) fail_batch(op->b, 503, "{\"error\":\"the service is stopping\"}");
    op->b = nullptr;
    remove_op(op);
    free_op(op);
    return;
  }
  if (r.error != store_error::none) {
    ++stats_.pg_errors[static_cast<int>(r.error)];
    static const char* kinds[] = {"apply", "tombstone", "read", "reset", "prune"};
    char why[160];
    core::log_escape(r.detail != nullptr ? r.detail : "", why, sizeof why);
    core::log_event("COUNTER", "postgres=failed statement=%s error=%s detail=\"%s\" retry=yes",
                    kinds[op->kind], core::store_error_name(r.error), why);
    // Unknown outcome (or a server error, e.g. two executions of one id racing): it stays
    // first in line and is retried when PostgreSQL is up again, or at the next flush tick.
    op->unknown = true;
    return;
  }
  const PGresult* res = r.result;
  bool have_row = res != nullptr && PQntuples(res) > 0;
  bool done = true;
  switch (op->kind) {
    case pg_op::apply: {
      int64_t n = 0;
      if (!have_row || PQgetisnull(res, 0, 0) || !parse_int64(PQgetvalue(res, 0, 0), &n)) {
        // A tombstoned id cannot be applied; never happens for ids we retry.
        core::log_event("ERROR", "counter flush_id=%llu result=missing lost_visits=%lld",
                        static_cast<unsigned long long>(op->id),
                        static_cast<long long>(op->backlog_part));
        if (op->b != nullptr) fail_batch(op->b, 503, "{\"error\":\"the count failed\"}");
        break;
      }
      durable_ = n;
      durable_known_ = true;
      if (op->backlog_part > 0) ++stats_.flushes;
      if (op->b != nullptr) answer_batch(op->b, n, store_used::postgres, false);
      break;
    }
    case pg_op::tombstone: {
      int64_t tomb = 0;
      int64_t n = 0;
      bool ok = have_row && parse_int64(PQgetvalue(res, 0, 0), &tomb);
      bool applied = ok && !PQgetisnull(res, 0, 1) && parse_int64(PQgetvalue(res, 0, 1), &n);
      int64_t earlier = 0;
      if (ok && parse_int64(PQgetvalue(res, 0, 2), &earlier) && earlier == 1) tomb = 1;
      if (ok && tomb == 1) {
        // It never applied and now never will: what the backlog owed is sent again.
        ++stats_.tombstones;
        if (op->b != nullptr) free_batch(op->b);
        op->b = nullptr;
        if (op->backlog_part > 0) {
          pg_op* again = new_op();
          if (again != nullptr) {
            again->kind = pg_op::apply;
            again->id = next_flush_id();
            again->delta = again->backlog_part = op->backlog_part;
            // First in line, where the tombstoned statement stood.
            remove_op(op);
            free_op(op);
            again->next = pg_head_;
            pg_head_ = again;
            if (pg_tail_ == nullptr) pg_tail_ = again;
            pump_pg();
            return;
          }
        }
      } else if (applied) {
        // It had applied after all: counted, though nobody got its numbers.
        durable_ = n;
        durable_known_ = true;
        if (op->b != nullptr) free_batch(op->b);
        op->b = nullptr;
      } else {
        done = false;  // not visible yet (a racing apply committing): ask again
      }
      break;
    }
    case pg_op::read: {
      int64_t n = 0;
      if (have_row && parse_int64(PQgetvalue(res, 0, 0), &n)) {
        durable_ = n;
        durable_known_ = true;
      }
      break;
    }
    default: break;
  }
  if (done) {
    remove_op(op);
    free_op(op);
    update_lag();
  }
  // Batches held while Redis was being seeded go once PostgreSQL's own are done.
  if (redis_conn_ && !redis_ok_) seed_redis();
  pump_pg();
  check_finished();
}

void counter::on_flush_timer(uv_timer_t* t) {
  auto* self = static_cast<counter*>(t->data);
  uint64_t now = uv_now(self->loop_);
  if (self->backlog_ > 0 && self->pg_ok_) {
    pg_op* tail = self->pg_tail_;
    if (tail != nullptr && tail->kind == pg_op::apply && !tail->sent) {
      tail->delta += static_cast<int64_t>(self->backlog_);
      tail->backlog_part += static_cast<int64_t>(self->backlog_);
    } else if (pg_op* op = self->new_op()) {
      op->kind = pg_op::apply;
      op->id = self->next_flush_id();
      op->delta = op->backlog_part = static_cast<int64_t>(self->backlog_);
      self->enqueue_pg(op);
    }
    self->backlog_ = 0;
  }
  if (now - self->last_prune_ >= kPruneEveryMs && self->pg_ok_) {
    if (pg_op* op = self->new_op()) {
      op->kind = pg_op::prune;
      self->enqueue_pg(op);
      self->last_prune_ = now;
    }
  }
  self->update_lag();
  self->pump_pg();
  self->check_finished();
}

// --- reset and finish ------------------------------------------------------------------------

void counter::reset() {
  ++epoch_;
  ++stats_.resets;
  backlog_ = 0;
  backlog_since_ = 0;
  last_given_ = 0;
  durable_ = 0;
  if (redis_conn_) {
    const char* argv[] = {"SET", opt_.redis_key.c_str(), "0"};
    size_t lens[] = {3, opt_.redis_key.size(), 1};
    if (redis_->command_argv(
            [](void* ctx, const core::redis_result& r) {
              if (r.error != store_error::none) {
                static_cast<counter*>(ctx)->reset_pending_redis_ = true;
              }
            },
            this, 3, argv, lens) == 0) {
      ++stats_.redis_commands;
    } else {
      reset_pending_redis_ = true;
    }
  } else {
    reset_pending_redis_ = true;  // the seed sets it exactly when Redis is back
  }
  // PostgreSQL's part runs after whatever is queued before it, so that is zeroed too.
  if (pg_op* op = new_op()) {
    op->kind = pg_op::reset;
    enqueue_pg(op);
    pump_pg();
  }
  core::log_event("RESET", "visits=0 redis=%s postgres=%s", redis_conn_ ? "up" : "down",
                  pg_ok_ ? "up" : "down");
}

void counter::finish(uint64_t deadline_ms, void (*on_done)(void*), void* ctx) {
  finishing_ = true;
  on_finished_ = on_done;
  finished_ctx_ = ctx;
  close_batch();
  // The flush timer's work, now; the timer keeps running, since its ticks are also what retries
  // a statement that failed while PostgreSQL stayed up.
  on_flush_timer(&flush_timer_);
  uv_timer_start(
      &finish_timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<counter*>(t->data);
        uint64_t owed = self->backlog_;
        for (pg_op* o = self->pg_head_; o != nullptr; o = o->next) {
          if (o->backlog_part > 0) owed += static_cast<uint64_t>(o->backlog_part);
        }
        core::log_event("ERROR", "counter flush=timeout lost_visits=%llu",
                        static_cast<unsigned long long>(owed));
        self->gave_up_ = true;
        self->drop_all();
        self->check_finished();
      },
      deadline_ms, 0);
  check_finished();
}

void counter::remove_op(pg_op* op) {
  pg_op* prev = nullptr;
  for (pg_op* o = pg_head_; o != nullptr; prev = o, o = o->next) {
    if (o != op) continue;
    if (prev != nullptr) {
      prev->next = o->next;
    } else {
      pg_head_ = o->next;
    }
    if (pg_tail_ == o) pg_tail_ = prev;
    return;
  }
}

// The finish deadline: what is still owed is lost (logged); every record goes back, except a
// statement still out, whose callback (closed, when the client closes) frees it.
void counter::drop_all() {
  backlog_ = 0;
  for (pg_op* o = pg_head_; o != nullptr;) {
    pg_op* n = o->next;
    bool out = pg_in_flight_ && o == pg_head_;
    if (!out) {
      if (o->b != nullptr) fail_batch(o->b, 503, "{\"error\":\"the service is stopping\"}");
      o->b = nullptr;
      remove_op(o);
      free_op(o);
    }
    o = n;
  }
  while (held_head_ != nullptr) {
    batch* b = held_head_;
    held_head_ = b->next;
    fail_batch(b, 503, "{\"error\":\"the service is stopping\"}");
  }
  held_tail_ = nullptr;
}

void counter::check_finished() {
  if (!finishing_ || on_finished_ == nullptr || handles_open_ > 0) return;
  if (!gave_up_) {
    if (backlog_ > 0 || pg_in_flight_) return;
    for (pg_op* o = pg_head_; o != nullptr; o = o->next) {
      if (o->kind != pg_op::read && o->kind != pg_op::prune) return;
    }
  }
  core::log_event("COUNTER", "flushed=%s seq=%lld", gave_up_ ? "no" : "yes",
                  static_cast<long long>(durable_));
  for (uv_handle_t* h :
       {reinterpret_cast<uv_handle_t*>(&turn_), reinterpret_cast<uv_handle_t*>(&flush_timer_),
        reinterpret_cast<uv_handle_t*>(&finish_timer_)}) {
    if (!uv_is_closing(h)) {
      ++handles_open_;
      uv_close(h, on_handle_closed);
    }
  }
}

// After the owner closed the clients: records still in use go back (nothing is leaked).
void counter::release_all() {
  drop_all();
  for (pg_op* o = pg_head_; o != nullptr;) {
    pg_op* n = o->next;
    if (o->b != nullptr) free_batch(o->b);
    free_op(o);
    o = n;
  }
  pg_head_ = pg_tail_ = nullptr;
}

void counter::on_handle_closed(uv_handle_t* h) {
  auto* self = static_cast<counter*>(h->data);
  if (--self->handles_open_ > 0) return;
  auto fn = self->on_finished_;
  self->on_finished_ = nullptr;
  if (fn != nullptr) fn(self->finished_ctx_);
}

}  // namespace visits
