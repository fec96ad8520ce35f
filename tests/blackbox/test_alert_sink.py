"""alert-sink (alertsink/main.cpp): Alertmanager's webhook into one ALERT line per alert.

The payloads are Alertmanager's webhook JSON (version 4), as its notifier sends them; what a
user sees is the line on stdout, so the tests read the lines.
"""

import json

from rawhttp import get


def alert(status, name, severity, instance, summary, **labels):
    labels.update(alertname=name, severity=severity, instance=instance)
    return {"status": status, "labels": labels, "annotations": {"summary": summary},
            "startsAt": "2026-11-30T07:40:04.129Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": "0123456789abcdef"}


def payload(*alerts, status="firing"):
    return {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": status,
            "receiver": "alert-log", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
            "alerts": list(alerts)}


def post(port, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return get(port, "/alerts", method="POST", headers={"Content-Type": content_type},
               body=data)


def test_each_alert_is_one_line_with_its_fields(start_alert_sink):
    sink = start_alert_sink()
    r = post(sink.port, payload(
        alert("firing", "HelloReplicaPoisoned", "warning", "172.18.0.3:8080",
              "hello replica 172.18.0.3:8080 is poisoned", job="hello"),
        alert("resolved", "TargetDown", "warning", "sidecar:9100",
              "Prometheus cannot scrape sidecar", job="sidecar")))
    assert r.status == 200, r
    assert json.loads(r.body) == {"logged": 2}
    first = sink.wait_event("ALERT", alertname="HelloReplicaPoisoned")
    assert first.fields["status"] == "firing"
    assert first.fields["severity"] == "warning"
    assert first.fields["where"] == "172.18.0.3:8080"
    assert first.fields["receiver"] == "alert-log"
    assert first.fields["starts_at"] == "2026-11-30T07:40:04.129Z"
    assert first.fields["summary"] == "hello replica 172.18.0.3:8080 is poisoned"
    assert set(first.fields["labels"].split(",")) == {
        "alertname=HelloReplicaPoisoned", "severity=warning", "instance=172.18.0.3:8080",
        "job=hello"}
    second = sink.wait_event("ALERT", alertname="TargetDown")
    assert second.fields["status"] == "resolved"
    assert second.fields["where"] == "sidecar:9100"


def test_hostile_text_cannot_forge_a_line(start_alert_sink):
    """A label or summary with a newline stays on its own line, escaped."""
    sink = start_alert_sink()
    forged = "x\n2026-11-30T00:00:00.000Z alert-sink ALERT status=resolved alertname=Fake"
    r = post(sink.port, payload(alert("firing", "Real", "page", "a:1", forged, note=forged)))
    assert r.status == 200, r
    sink.wait_event("ALERT", alertname="Real")
    alerts = sink.events("ALERT")
    assert [a.fields["alertname"] for a in alerts] == ["Real"], [a.raw for a in alerts]
    assert "\\x0a" in alerts[0].raw


def test_refuses_what_is_not_a_webhook_payload(start_alert_sink):
    sink = start_alert_sink()
    assert post(sink.port, b"{}").status == 400
    assert post(sink.port, b'{"alerts": [', "application/json").status == 400
    assert post(sink.port, payload(), "text/plain").status == 415
    assert get(sink.port, "/alerts").status == 405
    assert get(sink.port, "/other").status == 404
    assert get(sink.port, "/health").status == 200
    assert not sink.events("ALERT")
    # An empty group is fine (Alertmanager never sends one, but nothing to log).
    r = post(sink.port, payload())
    assert r.status == 200 and json.loads(r.body) == {"logged": 0}


def test_larger_than_max_body_is_413(start_alert_sink):
    sink = start_alert_sink("--max-body", "1KiB")
    big = payload(*[alert("firing", "A%d" % i, "warning", "x:%d" % i, "s" * 50)
                    for i in range(20)])
    assert post(sink.port, big).status == 413
    assert not sink.events("ALERT")
