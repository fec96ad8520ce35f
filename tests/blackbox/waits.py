"""Waiting for something a test cannot be told about: poll a condition until it holds or a
deadline passes. One helper for every test module (timeouts are the caller's, already scaled
by bbenv.TF where they bound the binaries' timing)."""

import time


def wait_until(pred, timeout, what="condition", interval=0.05):
    """Calls pred() until it returns something true, and returns that; AssertionError naming
    `what` when `timeout` seconds pass first. pred runs at least once."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("%s not met within %.1fs" % (what, timeout))
        time.sleep(interval)
