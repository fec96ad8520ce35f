"""accounts (seed 001) in the whole stack, started as the README says (scripts/up.sh -d), through
nginx's port 80 only: the secrets up.sh makes, sign-up and login, the accounts made by
scripts/populate-accounts, /api/ behind auth_request (every tampered token refused, the user
passed on and never forged), SQL injection strings and <script> staying data, bad bodies, what
stays internal, the container's hardening, a real browser on the accounts page, and SIGINT.

    E2E_PROJECT=hellostack-mine /usr/bin/python3 -m pytest -q tests/e2e/test_accounts_stack.py

Its own compose project (E2E_PROJECT-accounts) on a free loopback port and a temporary
SECRETS_DIR, so it never meets another run or the repository's .secrets/; everything, the
volume included, is removed at the end. The tests share one stack and run in file order; the
last one stops accounts.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import time

import pytest
import requests

import e2e_common
from e2e_common import REPO, tail, wait_for

sys.path.insert(0, str(REPO / "tests" / "lib"))
import browser_flow  # noqa: E402
from tokens import make_token, parts, tampered_tokens, unb64url  # noqa: E402

PROJECT = os.environ.get("E2E_PROJECT", "hellostack-e2e") + "-accounts"
UP_TIMEOUT = float(os.environ.get("E2E_UP_TIMEOUT", "1800"))
HOST = "127.0.0.1"
ARTIFACTS = os.environ.get("STACK_ARTIFACTS_DIR", str(REPO / "build" / "artifacts"))
# Every client of this test reaches nginx through Docker's port forwarding, so accounts sees
# one address for all of them: more sign-ups from it than the default 20 per 10 min.
SIGNUPS = 60


class Stack(e2e_common.ComposeStack):
    def __init__(self):
        super().__init__(PROJECT, "accounts-secrets-",
                         ACCOUNTS_SIGNUP_MAX_PER_ADDRESS=str(SIGNUPS))
        self.tmp = tempfile.mkdtemp(prefix="accounts-e2e-")
        self.env.pop("COMPOSE_PROFILES", None)
        self.env.pop("NGINX_API_AUTH", None)  # the compose default (jwt) is under test

    def get(self, path, timeout=5, **kw):
        return super().get(path, timeout=timeout, allow_redirects=False, **kw)

    def post(self, path, timeout=10, wait_out_limits=True, **kw):
        """POST; a 429 of nginx's limit_req (sign-ups 2/s, logins 5/s from one address: every
        request of this test comes from Docker's gateway) is waited out, as
        scripts/populate-accounts does, unless the limit is what is tested."""
        for _ in range(20):
            r = requests.post(self.base + path, timeout=timeout, allow_redirects=False, **kw)
            if r.status_code != 429 or not wait_out_limits:
                return r
            time.sleep(float(r.headers.get("Retry-After", "1")))
        return r

    def psql(self, sql):
        """As the superuser over the socket inside the postgres container (no password)."""
        p = self.run(["docker", "exec", self.container("postgres"), "psql", "-X", "-At",
                      "-U", "postgres", "-d", "accounts", "-c", sql])
        return p.stdout

    def signup(self, username, email, password):
        r = self.post("/account", json={"username": username, "email": email,
                                        "password": password})
        assert r.status_code == 201, (r.status_code, r.text)
        return r.json()

    def token(self, email, password):
        r = self.post("/login", json={"email": email, "password": password})
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()["access_token"]

    def api(self, path, token=None, **kw):
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        return self.get(path, headers=headers, **kw)


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    try:
        s.up(UP_TIMEOUT)
        wait_for("the JWKS through nginx",
                 lambda: s.get("/.well-known/jwks.json", timeout=2).status_code == 200,
                 timeout=60)
        yield s
    finally:
        print(s.compose("logs", "--no-color", "--tail", "60", "accounts", "nginx", "postgres",
                        timeout=60, check=False).stdout)
        s.remove()
        shutil.rmtree(s.tmp, ignore_errors=True)


# ------------------------------------------------------------------ secrets

def test_secrets_made_by_up_and_never_in_the_config(stack):
    keys = os.path.join(stack.secrets, "accounts-keys")
    for path, mode in ((os.path.join(stack.secrets, "accounts_db_password"), 0o400),
                       (os.path.join(keys, "k1.pem"), 0o400), (keys, 0o500)):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (65532, 65532), path
        assert st.st_mode & 0o777 == mode, (path, oct(st.st_mode))
    assert "made the token signing key" in stack.up_output, stack.up_output[-2000:]
    pem = open(os.path.join(keys, "k1.pem")).read()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----"), "not an openssl PKCS#8 key"
    password = open(os.path.join(stack.secrets, "accounts_db_password")).read().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", password)
    c = stack.inspect(stack.container("accounts"))
    text = json.dumps(c["Config"]) + stack.logs("accounts")
    assert password not in text and "PRIVATE KEY" not in text
    env = dict(e.split("=", 1) for e in c["Config"]["Env"])
    assert env["ACCOUNTS_DATABASE_PASSWORD_FILE"] == "/run/secrets/accounts_db_password"
    assert env["ACCOUNTS_KEYS_DIR"] == "/run/secrets/accounts-keys"
    # Its own role and database, not visits'.
    assert stack.psql("SELECT rolname FROM pg_roles WHERE rolname IN ('visits', 'accounts') "
                      "ORDER BY 1").split() == ["accounts", "visits"]
    assert stack.psql("SELECT pg_get_userbyid(datdba) FROM pg_database "
                      "WHERE datname = 'accounts'").strip() == "accounts"


# ------------------------------------------------------------------ the contract, port 80

def test_populate_login_and_the_protected_api(stack):
    p = stack.run([str(REPO / "scripts" / "populate-accounts"), "25", stack.base], timeout=120)
    lines = [line.split() for line in p.stdout.splitlines()]
    assert len(lines) == 25 and all(len(x) == 3 for x in lines), p.stdout
    stack.people = lines
    user, email, password = lines[0]
    token = stack.token(email, password)
    header, claims, _ = parts(token)
    assert header["alg"] == "EdDSA" and header["kid"] == "k1"
    assert claims["name"] == user and claims["iss"] == "accounts" and claims["aud"] == "stack"

    r = stack.api("/api/baz", token)
    assert r.status_code == 200 and r.json() == {"msg": "Hello, Baz!"}, r.text
    r = stack.api("/api/baz")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized", r.text
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert stack.api("/api/baz", "not-a-token").status_code == 401
    # the root of the pool, and hello's other routes
    assert stack.api("/api/", token).json() == {"msg": "Hello, World!"}
    assert stack.api("/api/health", token).status_code == 200
    # The count of accounts is the database's.
    assert int(stack.psql("SELECT count(*) FROM accounts")) == 25


def test_every_tampered_token_is_refused_through_port_80(stack):
    user, email, password = stack.people[1]
    good = stack.token(email, password)
    key = os.path.join(stack.secrets, "accounts-keys", "k1.pem")
    pk = unb64url(stack.get("/.well-known/jwks.json").json()["keys"][0]["x"])
    _, claims, _ = parts(good)
    mine = {"sub": claims["sub"], "name": claims["name"]}
    made = make_token(key, stack.tmp, claims=mine, issuer="accounts", audience="stack")
    assert stack.api("/api/ok", made).status_code == 200  # the control: the same, unchanged
    cases = tampered_tokens(good, key, stack.tmp, pk, issuer="accounts", audience="stack")
    refused = 0
    for name, token in cases.items():
        r = stack.api("/api/ok", token)
        assert r.status_code == 401, (name, r.status_code, r.text)
        r = stack.get("/accounts_page", cookies={"accounts_token": token})
        assert r.status_code == 401 and "<table" not in r.text, name
        refused += 1
    assert refused == 28
    assert stack.api("/api/ok", good).status_code == 200


def test_injection_strings_stay_data_and_script_is_escaped(stack):
    evil = [("Robert'); DROP TABLE accounts;--", "o'or'1'='1@example.com", "' OR '1'='1' --"),
            ("<script>alert(1)</script>", "xss@example.com", "'; SELECT pg_sleep(5); --")]
    ids = {}
    for user, mail, password in evil:
        ids[user] = stack.signup(user, mail, password)["id"]
    for user, mail, password in evil:
        t0 = time.monotonic()
        token = stack.token(mail, password)
        assert time.monotonic() - t0 < 3, "a pg_sleep ran"
        r = stack.post("/login", json={"email": mail, "password": password + "x"})
        assert r.status_code == 401
        assert stack.api("/api/ok", token).status_code == 200
    assert stack.psql("SELECT username FROM accounts WHERE id = %d"
                      % ids[evil[0][0]]).strip() == evil[0][0]
    token = stack.token(evil[1][1], evil[1][2])
    page = stack.get("/accounts_page?page=2", cookies={"accounts_token": token})
    assert page.status_code == 200, page.text
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "Robert&#39;); DROP TABLE accounts;--" in page.text


def test_bad_bodies_get_specific_errors(stack):
    for body in (b"{", b"[]", b'{"username":"a","username":"b"}', b"[" * 40 + b"]" * 40):
        for path in ("/account", "/login"):
            r = stack.post(path, data=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and "error" in r.json(), (path, body[:20], r.text)
    # Over the body limit (4 KiB): 413 Payload Too Large, the more specific answer.
    big = json.dumps({"username": "big", "email": "big@example.com", "password": "x" * 5000})
    r = stack.post("/account", data=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "error" in r.json(), r.text
    r = stack.post("/account", data=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = stack.post("/account", json={"username": "x", "email": "nope", "password": "short"})
    assert r.status_code == 400
    assert set(r.json()["fields"]) == {"username", "email", "password"}, r.text


def test_internal_routes_stay_inside(stack):
    user, email, password = stack.people[2]
    token = stack.token(email, password)
    for path in ("/auth", "/_accounts_auth", "/api/metrics", "/api/die", "/api/poison",
                 "/metrics"):
        r = stack.api(path, token)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert "X-User" not in r.headers
    # accounts' own /metrics and /health are not on port 80 either: /health is hello's.
    assert "accounts_logins_total" not in stack.get("/health").text


def test_accounts_hardened_and_internal(stack, capsys):
    c = stack.inspect(stack.container("accounts"))
    hc, cfg = c["HostConfig"], c["Config"]
    assert cfg["User"] == "65532:65532", cfg["User"]
    with open("/proc/%d/status" % c["State"]["Pid"]) as f:
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", f.read(), re.M).groups()
    assert uids == ("65532", "65532")
    assert hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and not hc.get("CapAdd")
    assert any(o.startswith("no-new-privileges") for o in hc["SecurityOpt"] or [])
    assert hc["Memory"] > 0 and (hc.get("PidsLimit") or 0) > 0
    assert not any((c["NetworkSettings"]["Ports"] or {}).values()), "published"
    assert sorted(c["NetworkSettings"]["Networks"]) == [PROJECT + "_backend"]
    assert c["State"]["Health"]["Status"] == "healthy"
    image = stack.inspect(c["Image"])
    size = image["Size"]
    assert size < 10 * 1000 * 1000, size
    with capsys.disabled():
        print("\n[e2e] accounts: image %.2f MB, 65532, read-only, cap_drop ALL, memory %d MiB, "
              "backend only, healthy" % (size / 1e6, hc["Memory"] >> 20), end="")


def test_a_real_browser_logs_in_sees_the_accounts_and_logs_out(stack, capsys):
    """Headless Chromium through port 80 (tests/lib/browser_flow.py): the login form, the
    table with every account populate-accounts made (across pages) and two hostile usernames
    shown as text, the HttpOnly SameSite=Strict cookie, logout. Screenshots in
    $STACK_ARTIFACTS_DIR/e2e-browser."""
    why = browser_flow.missing_browser()
    assert why is None, why  # the e2e tier needs the browser (scripts/install-deps.sh)
    for i, name in enumerate(browser_flow.HOSTILE_USERNAMES):
        stack.signup(name, "hostile%d@example.com" % i, "hostile password %d" % i)
    user, email, password = stack.people[3]
    expected = [p[0] for p in stack.people] + list(browser_flow.HOSTILE_USERNAMES)
    out = os.path.join(ARTIFACTS, "e2e-browser")
    report = browser_flow.run_accounts_flow(stack.base, email, password, expected, out)
    with capsys.disabled():
        print("\n[e2e] browser: %d accounts seen on port 80 over %d page(s) in %.1f s, "
              "screenshots in %s" % (len(expected), report.pages_walked, report.seconds, out),
              end="")


def test_login_attempts_are_limited_by_nginx(stack):
    # After the browser's login: the failures here count towards accounts' own ban of this
    # address (20 in 2 min), which every client of this test shares.
    statuses = []
    for i in range(30):
        r = stack.post("/login", json={"email": "nobody%d@example.com" % i,
                                       "password": "wrong password"}, wait_out_limits=False)
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["Retry-After"] and r.json()["error"] == "too many requests"
    assert statuses.count(429) >= 10 and set(statuses) <= {401, 429}, statuses


def test_sigint_stops_accounts_cleanly(stack, capsys):
    cid = stack.container("accounts")
    t0 = time.monotonic()
    stack.run(["docker", "kill", "--signal=SIGINT", cid])
    wait_for("accounts to exit", lambda: not stack.inspect(cid)["State"]["Running"], timeout=15,
             interval=0.05)
    took = time.monotonic() - t0
    state = stack.inspect(cid)
    out = stack.logs("accounts")
    with capsys.disabled():
        print("\n[e2e] accounts: SIGINT -> exit %d in %.2f s" % (state["State"]["ExitCode"],
                                                                took))
    assert state["State"]["ExitCode"] == 0, tail(out)
    assert re.search(r"^\S+ accounts SIGNAL name=SIGINT action=drain$", out, re.M), tail(out)
    assert re.search(r"^\S+ accounts EXIT code=0$", out, re.M), tail(out)
    # nginx stays up; /api/ now cannot check tokens: 503, never a pass.
    user, email, password = stack.people[0]
    r = stack.api("/api/baz", "x.y.z")
    assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
    assert stack.get("/baz").json() == {"msg": "Hello, Baz!"}
