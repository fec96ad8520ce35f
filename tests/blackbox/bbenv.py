"""Where the binaries are and how lenient timings must be (shared by all modules)."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def _build_dir():
    d = os.environ.get("STACK_BUILD_DIR") or "build"
    if not os.path.isabs(d):
        d = os.path.join(REPO, d)
    return d


BUILD_DIR = _build_dir()
HELLO_BIN = os.path.join(BUILD_DIR, "hello", "hello")
SIDECAR_BIN = os.path.join(BUILD_DIR, "sidecar", "sidecar")
LATER_BIN = os.path.join(BUILD_DIR, "tests", "tools", "later_server")
VISITS_BIN = os.path.join(BUILD_DIR, "visits", "visits")
ALERT_SINK_BIN = os.path.join(BUILD_DIR, "alertsink", "alert-sink")
ACCOUNTS_BIN = os.path.join(BUILD_DIR, "accounts", "accounts")


def _sanitized():
    name = os.path.basename(os.path.normpath(BUILD_DIR)).lower()
    # build-asan, build-ubsan, build-tsan, ...
    return os.environ.get("STACK_SANITIZED") == "1" or "san" in name


#: the binaries carry sanitizers (memory and start-up figures are meaningless)
SANITIZED = _sanitized()


def _timing_factor():
    env = os.environ.get("STACK_TIMING_FACTOR")
    if env:
        return float(env)
    return 3.0 if SANITIZED else 1.0


#: multiply every timing bound by this
TF = _timing_factor()

#: generic upper bound for "should happen soon" waits
WAIT = 5.0 * TF
