"""The seed's Hello service as a Flask app: the baseline perf/run measures hello against.

Seed 000 hands over a Flask service `app/hello.py`, run with `python -m flask run` on port 8080:
  GET /        {"msg":"Hello, World!"}
  GET /<name>  {"msg":"Hello, <Name>!"}
  GET /health  {"healthy":true,"latency":0.79...}: the simulated latency (a random float in
               [0, 1) seconds) of the previous request; healthy while it is below 0.9
The seed's own curl output prints Python dict quotes ({'msg':'Hello, World!'}); this app answers
exactly the bytes hello answers (compact JSON, Content-Type: application/json, Content-Length),
so the two are compared like for like. Nothing sleeps: the latency is only reported, as in hello.

  cd perf/baselines/flask && FLASK_APP=hello.py python3 -m flask run --host 127.0.0.1 --port 8080
  cd perf/baselines/flask && gunicorn --workers 3 --bind 127.0.0.1:8080 hello:app
"""
import json
import random

from flask import Flask

app = Flask(__name__)
HEALTH_THRESHOLD = 0.9
_last_latency = 0.0


def _json(obj, status=200):
    body = json.dumps(obj, separators=(",", ":"))
    return app.response_class(body, status=status, mimetype="application/json")


@app.after_request
def _simulate_latency(response):
    global _last_latency
    _last_latency = random.random()
    return response


@app.route("/")
def hello_world():
    return _json({"msg": "Hello, World!"})


@app.route("/health")
def health():
    latency = _last_latency
    return _json({"healthy": latency < HEALTH_THRESHOLD, "latency": latency})


@app.route("/<name>")
def hello_name(name):
    return _json({"msg": "Hello, %s!" % name.capitalize()})
