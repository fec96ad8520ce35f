"""What the sidecar's lines carry, in the order it prints them (README, "Reading its output"):
one definition for every sidecar test module. A helper module: it imports no test module."""

#: START's fields, in order
START_KEYS = ["version", "target", "interval", "window", "timeout", "fail_after",
              "recover_after", "ring", "replicas", "probes"]
#: REPLICA's fields
REPLICA_KEYS = ["target", "replica", "change", "replicas"]
#: ALERT's fields
ALERT_KEYS = ["reason", "target", "replica", "state", "consecutive", "detail"]
#: RECOVERED's fields
RECOVERED_KEYS = ["target", "replica", "state", "after", "failures"]
#: a replica's or target's states
STATES = {"unknown", "healthy", "degraded", "down"}
#: an ALERT's (and a bad state's) reasons
REASONS = {"status", "unhealthy", "slow", "timeout", "connect", "dns", "body"}
