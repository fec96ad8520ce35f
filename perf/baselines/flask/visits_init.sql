-- The seed's database initialisation for perf/baselines/flask/visits.py: its PostgreSQL image
-- runs an init script that creates the visitors table with one row for the site, so the app
-- never creates it (several gunicorn workers creating it at once would race). perf/run runs
-- this with psql before starting the app. Idempotent.
CREATE TABLE IF NOT EXISTS seed_visitors (
    site_id integer PRIMARY KEY,
    site_name text NOT NULL,
    visitor_count bigint NOT NULL
);
INSERT INTO seed_visitors (site_id, site_name, visitor_count) VALUES (1, 'linode', 0)
    ON CONFLICT (site_id) DO NOTHING;
