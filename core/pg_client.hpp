// A PostgreSQL client on the service's libuv loop: libpq's asynchronous API in pipeline mode,
// with connect and query timeouts, reconnection with capped backoff, a state the service can
// read, and a versioned schema migration run at every connect.
//
// Why these rules:
// - The connect is PQconnectStartParams + PQconnectPoll driven by a uv_poll_t on PQsocket().
//   libpq may close and open its socket during a connect (another address, SSL or GSS
//   fallback), and the new socket may even get the old number: during the connect the poll
//   handle is re-made when the number changes and stopped/started (a fresh epoll
//   registration) on every step otherwise. Handles are freed only in their close callbacks.
// - Host names are resolved on the thread pool first (store.hpp): libpq resolves a host
//   without hostaddr with a blocking getaddrinfo(). (A multi-host connection string is passed
//   to libpq as it is, and then is resolved by libpq: avoid it on the loop.)
// - Pipeline mode: every query is PQsendQueryParams (parameters always bound as $1.., never
//   pasted into SQL) followed by its own PQpipelineSync, so queries go out without waiting for
//   earlier answers, each one is its own implicit transaction, and an error in one never
//   aborts its neighbours. A result is delivered at its sync point, i.e. after the implicit
//   commit. (libpq 15's PQpipelineSync also flushes, so each query is one send(); PG 17's
//   PQsendPipelineSync would let a turn's queries leave in one write.)
// - A query is accepted only while up; otherwise query() returns an error at once and the
//   callback is never called. An accepted query's callback is called exactly once.
// - A query not answered within query_timeout_ms fails with store_error::timeout and the
//   connection is dropped (libpq 15 has no non-blocking cancel). The server may still have
//   run that statement: a timed-out write is "unknown", not "not done".
// - "up" means connected and every migration applied (see pg_migration).
//
// Allocation: libpq allocates per query (its command queue entry) and per result (PGresult,
// freed right after the callback); the client's own per-query record comes from a free list
// that grows to the most queries in flight. A connection allocates its PGconn and a poll
// handle per socket.
#pragma once

#include <libpq-fe.h>
#include <uv.h>

#include <cstdint>
#include <string>

#include "store.hpp"

namespace core {

// One step of the schema: applied once, in order of version, inside one transaction with the
// other pending steps, then recorded in schema_version (created if missing). Several steps may
// share a version (a version = all its steps). One SQL statement per step: pipeline mode uses
// the extended protocol, which takes one statement per query. A transaction-level advisory lock
// makes replicas that start together apply each version once.
struct pg_migration {
  int version;  // >= 1
  const char* sql;
};

struct pg_options {
  // A libpq connection string ("host=db dbname=app user=app") or URI
  // ("postgresql://app@db:5432/app"). No password here in production: see `password`.
  std::string conninfo;
  std::string password;                // from the password file; overrides one in conninfo
  uint64_t connect_timeout_ms = 5000;  // lookup + connect + authentication + migrations
  uint64_t query_timeout_ms = 5000;
  uint64_t backoff_initial_ms = 100;
  uint64_t backoff_max_ms = 5000;
  const pg_migration* migrations = nullptr;  // static storage, ascending versions
  size_t migration_count = 0;
  const char* name = "postgres";  // in log lines: STORE store=<name> ...
};

// Checks a connection string or URI without connecting (PQconninfoParse). Returns true, or
// false with libpq's message in *why.
bool check_pg_conninfo(const std::string& conninfo, std::string* why);

struct pg_query_result {
  const PGresult* result;  // PGRES_TUPLES_OK/COMMAND_OK, or the server's error; may be null
  store_error error;       // none, server (result has the error), timeout, disconnected, closed
  const char* detail;      // why, for errors; "" otherwise
};

struct pg_impl;

class pg_client {
 public:
  using result_fn = void (*)(void* ctx, const pg_query_result& result);
  using state_fn = void (*)(void* ctx, store_state state, const char* detail);

  pg_client(uv_loop_t* loop, pg_options options);
  ~pg_client();  // closes if still open; the loop releases the handles afterwards
  pg_client(const pg_client&) = delete;
  pg_client& operator=(const pg_client&) = delete;

  void set_state_callback(state_fn on_state, void* ctx);
  void start();

  // values: nparams text values (nullptr = SQL NULL), bound as $1..$n.
  // 0: sent, on_result will be called exactly once. < 0 (a UV_* code): not sent, on_result will
  // not be called (UV_ENOTCONN: not up; UV_EIO: libpq refused it; UV_ENOMEM).
  int query(result_fn on_result, void* ctx, const char* sql, int nparams = 0,
            const char* const* values = nullptr);

  // Fails every pending query with store_error::closed (before returning), stops reconnecting
  // and closes the handles.
  void close();

  store_state state() const;
  size_t pending() const;
  int schema_version() const;  // after the last successful connect; 0 before

  struct counters {
    uint64_t connects, disconnects, timeouts, failures;
  };
  counters stats() const;

 private:
  pg_impl* impl_;
};

}  // namespace core
