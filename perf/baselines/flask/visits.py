"""Seed 003's page-hit counter as the seed writes it: the baseline perf/run measures visits
against (perf/README.md, section 7).

The seed (../../../shared/seeds/003, Linode's "deploying microservices with Docker" tutorial)
runs a Flask app under gunicorn with Redis and PostgreSQL behind it:
  GET /              Hello Linode! This page has been viewed N time(s).
  GET /resetcounter  Successfully deleted redis and postgres counters   (logs "reset visitor count")
What it does on every hit, and so does this file: INCR the count in Redis, then write that value
to PostgreSQL in a connection of its own (connect, UPDATE, commit, close), then answer. Reset
deletes the Redis key and zeroes the row. Nothing is batched; two workers can write their values
to PostgreSQL in the other order (the race issue 14 names), so the row may end below Redis's
count; perf/run reports both. The table comes from visits_init.sql, as the seed's database image
creates it.

Two deliberate differences, both in the baseline's favour or neutral: the UPDATE binds the value
as a parameter (the seed pastes it into the SQL text), and the tutorial's EXISTS and GET round
trips around the INCR are left out (INCR answers the new value).

Settings (environment):
  SEED_REDIS_URL              redis://127.0.0.1:6379
  SEED_DATABASE               a libpq conninfo (no password), e.g. "host=127.0.0.1 port=5432
                              user=postgres dbname=postgres"
  SEED_DATABASE_PASSWORD_FILE the password, in a file (optional)
  SEED_PG_CONNECTION          per-request (the seed's way, default) or per-worker (one
                              connection kept by each gunicorn worker: how much of the cost is
                              the seed's connect per hit)

  cd perf/baselines/flask && SEED_DATABASE=... gunicorn --workers 3 --bind 127.0.0.1:8080 visits:app
"""
import logging
import os
import sys

import psycopg2
import redis
from flask import Flask

app = Flask(__name__)
# The seed logs to stdout (its containers' logs), at DEBUG so the reset line shows.
app.logger.addHandler(logging.StreamHandler(sys.stdout))
app.logger.setLevel(logging.DEBUG)

cache = redis.Redis.from_url(os.environ.get("SEED_REDIS_URL", "redis://127.0.0.1:6379"))
KEY = "visitor_count"
_dsn = os.environ.get("SEED_DATABASE", "host=127.0.0.1 user=postgres dbname=postgres")
_password_file = os.environ.get("SEED_DATABASE_PASSWORD_FILE")
_password = None
if _password_file:
    with open(_password_file) as f:
        _password = f.read().rstrip("\n")
_per_worker = os.environ.get("SEED_PG_CONNECTION", "per-request") == "per-worker"
if os.environ.get("SEED_PG_CONNECTION", "per-request") not in ("per-request", "per-worker"):
    sys.exit("SEED_PG_CONNECTION must be per-request or per-worker")
_kept = None  # the per-worker connection (gunicorn forks workers before the first request)


def _connect():
    if _password is None:
        return psycopg2.connect(_dsn)
    return psycopg2.connect(_dsn, password=_password)


def pg_execute(sql, params):
    """One statement in its own transaction; per-request: in its own connection, as the seed."""
    global _kept
    if _per_worker:
        if _kept is None or _kept.closed:
            _kept = _connect()
        conn = _kept
    else:
        conn = _connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        if not _per_worker:
            conn.close()


@app.route("/")
def hello():
    count = cache.incr(KEY)
    pg_execute("UPDATE seed_visitors SET visitor_count = %s WHERE site_id = 1", (count,))
    return "Hello Linode! This page has been viewed %d time(s)." % count


@app.route("/resetcounter")
def resetcounter():
    cache.delete(KEY)
    pg_execute("UPDATE seed_visitors SET visitor_count = %s WHERE site_id = 1", (0,))
    app.logger.debug("reset visitor count")
    return "Successfully deleted redis and postgres counters"
