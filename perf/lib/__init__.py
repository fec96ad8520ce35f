"""perf/run's engine, one module per section (perf/bench.py is the table of contents)."""
