"""The repository's nginx configuration in front of the real accounts service (real PostgreSQL
on loopback) and a recording backend in place of the hello pool: what reaches the backend
through /api/ and what does not.

nginx is Debian's binary with nginx/default.conf.template and its includes rendered as
nginx/entrypoint.sh renders them (perf/lib/peers.py render_template: accounts at 127.0.0.1,
NGINX_API_AUTH jwt or off). Covered: /api/ needs a token accounts accepts (bearer or cookie),
every tampered token is refused there and never reaches the backend, the user is passed on in
X-User and a client's own X-User never is, /auth and the subrequest location are not
reachable, hello's internal routes stay hidden under /api/, accounts down -> 503, /login's
limit_req -> 429 with Retry-After, NGINX_API_AUTH=off.
"""

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from bbenv import TF
from rawhttp import get
from tokens import make_token, tampered_tokens, unb64url
from waits import wait_until

# perf/lib renders the site as the image's entry point does (the package `lib` under perf/;
# `perf` itself is a Debian module's name).
PERF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "perf")
if PERF_DIR not in sys.path:
    sys.path.insert(0, PERF_DIR)
from lib import peers  # noqa: E402
from lib.procs import free_port  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
JSON = {"Content-Type": "application/json"}


class Recorder:
    """The backend: answers every request with {"msg": "Hello from <path>"} and keeps
    (method, path, headers) of each."""

    def __init__(self):
        self.seen = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                recorder.seen.append((self.command, self.path, dict(self.headers.items()),
                                      self.headers.get_all("X-User") or []))
                body = json.dumps({"msg": "Hello from " + self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Nginx:
    def __init__(self, tmp, upstream_port, accounts_port, api_auth):
        if not os.access(NGINX, os.X_OK):
            pytest.fail("nginx is not installed (scripts/install-deps.sh installs it)")
        self.dir = os.path.join(str(tmp), "nginx-" + api_auth)
        os.makedirs(os.path.join(self.dir, "conf.d"), exist_ok=True)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(peers.proxy_conf(self.dir, NGINX))
        self.port = free_port()
        # The image's /var/lib/nginx (the /auth cache): somewhere nginx's workers (nobody, when
        # started as root) can reach; removed in stop().
        self.var = tempfile.mkdtemp(prefix="nginx-var-")
        os.chmod(self.var, 0o755)
        site = peers.render_template(upstream_port, self.port, os.path.join(self.dir, "conf.d"),
                                     accounts_port=accounts_port, api_auth=api_auth,
                                     var_dir=self.var)
        with open(os.path.join(self.dir, "conf.d", "default.conf"), "w") as f:
            f.write(site)
        self.log = open(os.path.join(self.dir, "out.log"), "wb")
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir + "/", "-c", conf, "-e", os.path.join(self.dir, "error.log"),
             "-g", "daemon off;"], stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_until(lambda: self._up(), 10 * TF, "nginx to listen")
        except BaseException:
            self.stop()
            raise

    def _up(self):
        if self.proc.poll() is not None:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                pytest.fail("nginx exited %d: %s" % (self.proc.returncode, f.read()[-2000:]))
        try:
            return get(self.port, "/auth").status == 404  # answered by nginx itself
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.var, ignore_errors=True)


@pytest.fixture
def edge(postgres_server, accounts_keys, start_accounts, tmp_path):
    """start(api_auth) -> (nginx, recorder, accounts), all on loopback, torn down after."""
    made = []

    def start(api_auth="jwt"):
        accounts = start_accounts(postgres_server, accounts_keys.dir, "--trust-real-ip", "on")
        rec = Recorder()
        made.append(rec)
        n = Nginx(tmp_path, rec.port, accounts.port, api_auth)
        made.append(n)
        return n, rec, accounts

    yield start
    for m in reversed(made):
        m.close() if isinstance(m, Recorder) else m.stop()


def post_json(port, target, obj, headers=None):
    return get(port, target, "POST", headers={**JSON, **(headers or {})}, body=json.dumps(obj))


def account_and_token(port, name="alice"):
    r = post_json(port, "/account", {"username": name, "email": name + "@example.com",
                                     "password": "correct horse " + name})
    assert r.status == 201, r
    acct = json.loads(r.body)
    r = post_json(port, "/login", {"email": name + "@example.com",
                                   "password": "correct horse " + name})
    assert r.status == 200, r
    return acct, json.loads(r.body)["access_token"]


def api(port, path, token=None, headers=None):
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    return get(port, path, headers=h)


def test_api_needs_a_token_and_the_user_cannot_be_forged(edge):
    n, rec, accounts = edge("jwt")
    acct, token = account_and_token(n.port)  # sign-up and login through nginx

    r = api(n.port, "/api/baz")
    assert r.status == 401, r
    assert r.header("Content-Type") == "application/json"
    assert json.loads(r.body)["error"] == "unauthorized"
    assert r.header("WWW-Authenticate") == "Bearer"
    assert r.header("X-Request-ID")
    assert rec.seen == [], "a request without a token reached the backend"

    forged = {"X-User": "1:admin", "X-Real-IP": "203.0.113.9"}
    r = api(n.port, "/api/baz?x=1", token, headers=forged)
    assert r.status == 200 and json.loads(r.body) == {"msg": "Hello from /baz?x=1"}, r
    method, path, headers, users = rec.seen[-1]
    assert (method, path) == ("GET", "/baz?x=1")
    assert users == ["%d:alice" % acct["id"]], headers  # exactly one, and not the client's
    assert headers.get("X-Real-IP") == "127.0.0.1", headers

    # The session cookie works as the bearer token does (the accounts page's login).
    r = get(n.port, "/api/cookie", headers={"Cookie": "accounts_token=" + token,
                                            "X-User": "1:admin"})
    assert r.status == 200, r
    assert rec.seen[-1][1] == "/cookie" and rec.seen[-1][3] == ["%d:alice" % acct["id"]]


def test_every_tampered_token_is_refused_by_nginx(edge, accounts_keys, tmp_path):
    n, rec, accounts = edge("jwt")
    acct, good = account_and_token(n.port, "erin")
    pk = unb64url(json.loads(get(n.port, "/.well-known/jwks.json").body)["keys"][0]["x"])
    key = accounts_keys.path("k1")
    mine = {"sub": str(acct["id"]), "name": "erin"}
    assert api(n.port, "/api/ok", make_token(key, tmp_path, claims=mine)).status == 200
    before = len(rec.seen)
    cases = tampered_tokens(good, key, tmp_path, pk)
    for name, token in cases.items():
        r = api(n.port, "/api/tampered", token)
        assert r.status == 401, (name, r)
        r = get(n.port, "/api/tampered", headers={"Cookie": "accounts_token=" + token})
        assert r.status == 401, (name, r)
    assert len(rec.seen) == before, "a tampered token reached the backend: %r" % rec.seen[before:]
    assert api(n.port, "/api/ok", good).status == 200


def test_internal_routes_are_not_reachable(edge):
    n, rec, accounts = edge("jwt")
    acct, token = account_and_token(n.port)
    for path in ("/auth", "/_accounts_auth", "/api/metrics", "/api/die", "/api/poison",
                 "/api/antidote/"):
        r = api(n.port, path, token)
        assert r.status == 404, (path, r)
        assert b"Hello" not in r.body
    assert all(p not in ("/metrics", "/die", "/poison", "/antidote/") for _, p, _, _ in rec.seen)
    # /auth from outside does not answer for a token either (it would say who the bearer is).
    assert api(n.port, "/auth", token).header("X-User") is None


def test_accounts_down_gives_503_not_a_pass(edge):
    n, rec, accounts = edge("jwt")
    acct, token = account_and_token(n.port)
    accounts.assert_clean_exit(signal.SIGTERM, timeout=10 * TF)
    r = api(n.port, "/api/baz", token)
    assert r.status == 503, r
    assert json.loads(r.body)["error"] == "unavailable" and r.header("Retry-After") == "5"
    assert rec.seen == []


def test_login_attempts_are_limited_per_address_by_nginx(edge):
    n, rec, accounts = edge("jwt")
    statuses = []
    for i in range(30):
        r = post_json(n.port, "/login", {"email": "nobody%d@example.com" % i,
                                         "password": "wrong password"})
        statuses.append(r.status)
        if r.status == 429:
            assert r.header("Retry-After") == "1", r
            assert json.loads(r.body)["error"] == "too many requests", r
    # burst 10 at 5/s: about 11 pass within the burst, the rest are refused at nginx before
    # any hashing (the service's own per-address ban needs 20 failures: not reached).
    assert statuses.count(429) >= 15, statuses
    assert set(statuses) <= {401, 429}, statuses
    time.sleep(1.0)
    assert post_json(n.port, "/login", {"email": "a@example.com", "password": "x" * 10}).status \
        == 401


def test_api_off_is_open_and_passes_no_user(edge):
    n, rec, accounts = edge("off")
    r = api(n.port, "/api/baz", headers={"X-User": "1:admin"})
    assert r.status == 200 and json.loads(r.body) == {"msg": "Hello from /baz"}, r
    assert rec.seen[-1][3] == [], rec.seen[-1]
    # A token changes nothing: no user is passed when nobody checks.
    acct, token = account_and_token(n.port)
    r = api(n.port, "/api/baz", token, headers={"X-User": "1:admin"})
    assert r.status == 200 and rec.seen[-1][3] == []


def checks(accounts):
    """accounts' /auth verdicts so far (token checks, any outcome), from its /metrics."""
    from promtext import samples
    m = samples(get(accounts.port, "/metrics").body.decode())
    return sum(v for (name, labels), v in m.items() if name == "accounts_token_checks_total")


def test_a_yes_is_reused_for_seconds_never_past_exp(edge, accounts_keys, tmp_path):
    """nginx caches /auth's 204 (X-Accel-Expires): the same token again is let through without
    asking accounts, with the same X-User; a token whose exp comes first is asked about again
    from its exp on; a refusal is never cached."""
    n, rec, accounts = edge("jwt")
    acct, token = account_and_token(n.port)
    r = get(accounts.port, "/auth", headers={"Authorization": "Bearer " + token})
    assert r.status == 204
    until = int(r.header("X-Accel-Expires").lstrip("@"))
    assert 3.5 <= until - time.time() <= 5.5, r.header("X-Accel-Expires")

    before = checks(accounts)
    for _ in range(5):
        assert api(n.port, "/api/again", token).status == 200
    assert checks(accounts) == before + 1, "nginx asked accounts more than once"
    assert [u for _, p, _, u in rec.seen if p == "/again"] == [["%d:alice" % acct["id"]]] * 5

    # A refusal is asked about every time.
    before = checks(accounts)
    for _ in range(3):
        assert api(n.port, "/api/x", "not-a-token").status == 401
    assert checks(accounts) == before + 3

    # A token that expires in 3 s: reused until then, asked about again from its exp on.
    key = accounts_keys.path("k1")
    now = int(time.time())
    short = make_token(key, tmp_path, claims={"sub": str(acct["id"]), "name": "alice"},
                       iat=now, nbf=now, exp=now + 3)
    before = checks(accounts)
    assert api(n.port, "/api/short", short).status == 200
    assert api(n.port, "/api/short", short).status == 200
    assert checks(accounts) == before + 1
    time.sleep(max(0.0, now + 3.05 - time.time()))
    api(n.port, "/api/short", short)  # accounts' clock-skew allowance may still accept it
    assert checks(accounts) == before + 2, "nginx reused a yes past the token's exp"


def test_a_repeated_header_cannot_plant_a_yes_for_another_credential(edge):
    """The subrequest sends exactly what the cache key holds. A repeated Authorization never
    gets that far (nginx answers 400 itself); cookies split over two Cookie headers are sent
    joined, as keyed: checked and cached as one credential."""
    n, rec, accounts = edge("jwt")
    acct, token = account_and_token(n.port)
    from rawhttp import Conn
    c = Conn(n.port)
    c.send(b"GET /api/planted HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bogus\r\n"
           b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
    assert c.read_response().status == 400
    assert api(n.port, "/api/planted", "bogus").status == 401
    c = Conn(n.port)
    c.send(b"GET /api/planted HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n"
           b"Cookie: accounts_token=" + token.encode() + b"\r\n\r\n")
    assert c.read_response().status == 200
    r = get(n.port, "/api/planted", headers={"Cookie": "a=1"})
    assert r.status == 401, r
    assert [u for _, p, _, u in rec.seen if p == "/planted"] == [["%d:alice" % acct["id"]]]
