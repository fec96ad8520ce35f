// The visit counter: Redis hands out the numbers, PostgreSQL keeps the durable count, and the
// count stays exact whatever fails. Everything runs on the service's loop.
//
// How a visit is counted:
// - Visits that arrive in one loop turn form one batch (a uv_check handle closes the batch
//   after the turn's I/O callbacks): one INCRBY k in Redis, whose reply n gives the batch
//   n-k+1 .. n in request order.
// - Redis is not the truth. Visits that Redis counted and whose answer was given are added to
//   a local backlog, written behind to PostgreSQL every flush interval as one idempotent
//   statement (a flush id recorded in the same statement: a retry after a lost reply is a
//   no-op that returns the first result). A visit whose client left before its answer is
//   not added: the durable count is the number of 200 answers given, exactly.
// - Redis down (or not seeded yet): the batch is counted in PostgreSQL directly, with the
//   backlog in the same statement (so the numbers continue where Redis's left off), one
//   statement in flight at a time; batches that arrive meanwhile wait and merge.
// - PostgreSQL down: Redis keeps counting; the backlog waits and is flushed when it returns.
// - Both down: 503 at once, nothing counted.
// - Redis (re)connected: before any INCRBY, one EVAL raises its value to at least the
//   highest number this process handed out and the last durable count read (a Redis that
//   restarted empty continues from there; numbers never go backwards). Until a durable count
//   has been read once, Redis is not used (an empty Redis could not be told from a new one).
// - A PostgreSQL write whose outcome is unknown (timeout, connection lost) is retried with the
//   same flush id until it answers; if every visit waiting on it has gone away (504, client
//   left), the id is first "tombstoned" so that it can never apply, and what is still owed
//   (the backlog part) is sent again under a new id.
// - SIGTERM: the HTTP server drains, then the backlog is flushed, then the clients close.
//   SIGKILL loses the unflushed backlog: at most one flush interval of visits.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "http_server.hpp"
#include "pg_client.hpp"
#include "redis_client.hpp"

namespace visits {

// One GET /visits waiting for its number.
struct visit {
  core::http_deferred answer;
  visit* next = nullptr;
  bool gone = false;  // the exchange ended without our answer (client left, deadline)
  bool html = false;  // answer with the HTML page
  bool head = false;
};

enum class store_used : uint8_t { redis, postgres, none };

struct counter_stats {
  uint64_t answered_by[3] = {};  // [store_used]: 200 answers, 503s under none
  uint64_t redis_commands = 0;
  uint64_t pg_statements = 0;
  uint64_t redis_errors[5] = {};  // [core::store_error]
  uint64_t pg_errors[5] = {};
  uint64_t batches = 0;
  uint64_t flushes = 0;
  uint64_t tombstones = 0;
  uint64_t resets = 0;
};

struct counter_options {
  uint64_t flush_interval_ms = 1000;
  std::string redis_key = "visits:count";
};

// A batch of visits counted by one store command.
struct batch;
struct pg_op;

class counter {
 public:
  using reset_done_fn = void (*)(void* ctx, bool ok);

  counter(uv_loop_t* loop, core::redis_client* redis, core::pg_client* pg, counter_options options);
  ~counter();
  counter(const counter&) = delete;
  counter& operator=(const counter&) = delete;

  // Both clients' state callbacks come here (the owner wires them).
  void on_redis_state(core::store_state s);
  void on_pg_state(core::store_state s);

  // A visit record for a request (from a free list); the caller defers the exchange into it.
  visit* new_visit();
  // Counts it: answered later with its number, or at once with 503 if both stores are down.
  void add(visit* v);
  static void on_visit_cancel(void* ctx);

  // /resetcounter: 0 in both stores (whichever is up now; PostgreSQL's part waits its turn).
  void reset();

  // SIGTERM: flush the backlog, then call on_done (also when the flush cannot happen: at the
  // deadline, with what was lost in the log line).
  void finish(uint64_t deadline_ms, void (*on_done)(void* ctx), void* ctx);

  // After finish() and the clients' close(): gives back every record still in use.
  void release_all();

  bool redis_up() const { return redis_conn_; }
  bool pg_up() const { return pg_ok_; }
  uint64_t backlog() const { return backlog_; }
  // Seconds since the oldest visit not yet in PostgreSQL was answered (0 with no backlog).
  double flush_lag_seconds() const;
  uint64_t last_number() const { return last_given_; }
  const counter_stats& stats() const { return stats_; }

 private:
  friend struct batch;
  static void on_turn(uv_check_t* h);
  static void on_flush_timer(uv_timer_t* t);
  static void on_incr(void* ctx, const core::redis_result& r);
  static void on_seed(void* ctx, const core::redis_result& r);
  static void on_pg_result(void* ctx, const core::pg_query_result& r);
  static void on_handle_closed(uv_handle_t* h);

  void close_batch();
  void send_redis(batch* b);
  void count_in_pg(batch* b);
  void answer_batch(batch* b, int64_t last, store_used used, bool add_backlog);
  void fail_batch(batch* b, int status, const char* why);
  void seed_redis();
  void raise_redis();
  void release_held();
  void read_durable();
  void pump_pg();
  void enqueue_pg(pg_op* op);
  void pg_done(pg_op* op, const core::pg_query_result& r);
  void check_finished();
  void remove_op(pg_op* op);
  void drop_all();
  batch* new_batch();
  void free_batch(batch* b);
  pg_op* new_op();
  void free_op(pg_op* op);
  uint64_t next_flush_id();
  void mark_backlog_start();
  void update_lag();

  uv_loop_t* loop_;
  core::redis_client* redis_;
  core::pg_client* pg_;
  counter_options opt_;
  uv_check_t turn_{};
  uv_timer_t flush_timer_{};
  visit* forming_head_ = nullptr;  // the batch of this loop turn
  visit* forming_tail_ = nullptr;
  uint32_t forming_count_ = 0;
  visit* free_visits_ = nullptr;
  batch* free_batches_ = nullptr;
  pg_op* free_ops_ = nullptr;
  pg_op* pg_head_ = nullptr;  // PostgreSQL writes, one in flight, in order
  pg_op* pg_tail_ = nullptr;
  bool pg_in_flight_ = false;
  batch* held_head_ = nullptr;  // batches waiting for Redis's seed
  batch* held_tail_ = nullptr;
  bool reset_pending_redis_ = false;  // Redis missed a reset: the seed sets, not raises
  uint64_t last_prune_ = 0;
  bool redis_ok_ = false;    // up and seeded: INCRBY may be sent
  bool redis_conn_ = false;  // connection up (maybe not seeded yet)
  bool pg_ok_ = false;
  bool durable_known_ = false;  // PostgreSQL was read (or written) since start
  int64_t durable_ = 0;         // PostgreSQL's seq: the highest number handed out it knows
  int64_t last_given_ = 0;      // highest number handed out
  uint64_t backlog_ = 0;        // answered visits Redis counted, not yet in PostgreSQL
  uint64_t backlog_since_ = 0;  // uv_now when the backlog became non-empty
  uint64_t epoch_ = 0;          // bumped by reset: older batches add no backlog
  uint64_t instance_ = 0;       // high half of flush ids
  uint32_t flush_seq_ = 0;
  counter_stats stats_;
  // finish()
  bool finishing_ = false;
  bool gave_up_ = false;  // the finish deadline passed
  void (*on_finished_)(void*) = nullptr;
  void* finished_ctx_ = nullptr;
  uv_timer_t finish_timer_{};
  int handles_open_ = 0;
};

const char* store_used_name(store_used s);

// The schema the counter needs, applied by pg_client at connect (versioned, idempotent): the
// durable count n, the highest number handed out seq, and the flush log.
extern const core::pg_migration schema[];
extern const size_t schema_steps;

}  // namespace visits
