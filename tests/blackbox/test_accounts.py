"""The accounts service against a real PostgreSQL on loopback (stores.py), with Ed25519 keys
made by `openssl genpkey -algorithm ed25519`.

The contract (sign-up, login as JSON and as a form, /auth, the JWKS, the page, logout), input
that must stay data (SQL injection strings, <script>), bad bodies, token tampering (each kind
refused by /auth), key rotation, the timing of unknown e-mails against wrong passwords, the
bound of the hashing queue under a login flood (with /health still fast), brute-force
regulation (429), /metrics, settings errors.
"""

import base64
import html
import json
import os
import signal
import re
import statistics
import subprocess
import sys
import threading
import time

import pytest

from bbenv import ACCOUNTS_BIN, TF
from bbproc import run_to_completion
from tokens import make_token, parts, tampered_tokens, unb64url
from promtext import promtool_check, sample, samples
from rawhttp import Conn, get

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# ------------------------------------------------------------------ helpers

def post_json(port, target, obj, headers=None):
    body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
    return get(port, target, "POST", headers={**JSON, **(headers or {})}, body=body)


def signup(port, username, email, password, status=201):
    r = post_json(port, "/account", {"username": username, "email": email, "password": password})
    assert r.status == status, r
    return json.loads(r.body)


def login(port, email, password, status=200, headers=None):
    r = post_json(port, "/login", {"email": email, "password": password}, headers)
    assert r.status == status, r
    return json.loads(r.body) if r.body else None


def token_for(port, email, password):
    return login(port, email, password)["access_token"]


def auth(port, token):
    return get(port, "/auth", headers={"Authorization": "Bearer " + token})


def metrics(a):
    r = get(a.port, "/metrics")
    assert r.status == 200
    return samples(r.body.decode())


def ed25519_verify(x_b64url, data, sig, tmp_path):
    """Verifies with the JWKS's public key, through openssl (an independent implementation)."""
    der = bytes.fromhex("302a300506032b6570032100") + unb64url(x_b64url)
    pem = tmp_path / "pub.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\n%s\n-----END PUBLIC KEY-----\n"
                   % base64.b64encode(der).decode())
    (tmp_path / "m.bin").write_bytes(data)
    (tmp_path / "s.bin").write_bytes(sig)
    p = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin",
                        "-in", str(tmp_path / "m.bin"), "-sigfile", str(tmp_path / "s.bin")],
                       capture_output=True, timeout=30)
    return p.returncode == 0


# ------------------------------------------------------------------ the contract

def test_signup_login_auth_and_jwks(postgres_server, accounts_keys, start_accounts, tmp_path):
    a = start_accounts(postgres_server, accounts_keys.dir)
    acct = signup(a.port, "alice", "Alice@Example.COM", "correct horse battery")
    assert set(acct) == {"id", "username", "email", "created"}, acct
    assert acct["username"] == "alice" and acct["email"] == "alice@example.com"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", acct["created"])
    stored = postgres_server.psql("SELECT password_hash FROM accounts WHERE id = %d" % acct["id"])
    assert stored.strip().startswith("$argon2id$v=19$m=8192,t=1,p=1$"), stored

    t0 = int(time.time())
    answer = login(a.port, "ALICE@example.com", "correct horse battery")
    assert set(answer) == {"access_token", "token_type", "expires_in"}
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 900
    token = answer["access_token"]
    h, c, sig = parts(token)
    assert h == {"alg": "EdDSA", "typ": "JWT", "kid": "k1"}
    assert c["sub"] == str(acct["id"]) and c["name"] == "alice"
    assert c["iss"] == "test-issuer" and c["aud"] == "test-audience"
    assert abs(c["iat"] - t0) <= 2 and c["nbf"] == c["iat"] and c["exp"] == c["iat"] + 900
    assert len(unb64url(c["jti"])) == 16

    jwks = get(a.port, "/.well-known/jwks.json")
    assert jwks.status == 200 and jwks.header("Content-Type") == "application/jwk-set+json"
    keys = json.loads(jwks.body)["keys"]
    assert len(keys) == 1
    k = keys[0]
    assert k == {"kty": "OKP", "crv": "Ed25519", "x": k["x"], "kid": "k1", "use": "sig",
                 "alg": "EdDSA"}
    signing_input = token.rsplit(".", 1)[0].encode()
    assert ed25519_verify(k["x"], signing_input, unb64url(sig), tmp_path)
    assert not ed25519_verify(k["x"], signing_input + b"x", unb64url(sig), tmp_path)

    r = auth(a.port, token)
    assert r.status == 204, r
    assert r.header("X-User") == "%d:alice" % acct["id"]
    assert r.header("Content-Length") is None and r.body == b""
    again = auth(a.port, token)  # from the cache
    assert again.status == 204 and again.header("X-User") == r.header("X-User")
    r = get(a.port, "/auth", headers={"Cookie": "other=1; accounts_token=" + token})
    assert r.status == 204 and r.header("X-User") == "%d:alice" % acct["id"]
    for headers in ({}, {"Authorization": "Basic YTpi"}, {"Authorization": "Bearer"},
                    {"Cookie": "accounts_token="}):
        r = get(a.port, "/auth", headers=headers)
        assert r.status == 401 and r.header("WWW-Authenticate") == "Bearer", (headers, r)
    m = metrics(a)
    assert sample(m, "accounts_signups_total", outcome="created") == 1
    assert sample(m, "accounts_logins_total", outcome="success") == 1
    assert sample(m, "accounts_token_checks_total", outcome="ok") == 3
    assert sample(m, "accounts_token_cache_hits_total") == 2
    health = get(a.port, "/health")
    assert health.status == 200
    assert json.loads(health.body) == {"status": "ok", "postgres": "up", "hash_queue": 0,
                                       "hash_capacity": 64}


def test_wrong_password_and_unknown_email_get_one_answer(postgres_server, accounts_keys,
                                                          start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    signup(a.port, "bob", "bob@example.com", "s3cret-password")
    wrong = post_json(a.port, "/login", {"email": "bob@example.com", "password": "nope-nope"})
    unknown = post_json(a.port, "/login", {"email": "nobody@example.com", "password": "nope-nope"})
    assert wrong.status == unknown.status == 401
    assert wrong.body == unknown.body == b'{"error":"wrong e-mail or password"}'
    assert sample(metrics(a), "accounts_logins_total", outcome="failure") == 2


def test_signup_validation_is_per_field(postgres_server, accounts_keys, start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    r = post_json(a.port, "/account", {"username": "x", "email": "not-an-email",
                                        "password": "short"})
    assert r.status == 400
    body = json.loads(r.body)
    assert body["error"] == "invalid account"
    assert set(body["fields"]) == {"username", "email", "password"}, body
    cases = [
        ({"email": "a@example.com", "password": "long enough"}, {"username"}),
        ({"username": "ok name", "email": "a@b", "password": "long enough"}, {"email"}),
        ({"username": "ok name", "email": "a b@example.com", "password": "long enough"},
         {"email"}),
        ({"username": " lead", "email": "a@example.com", "password": "long enough"},
         {"username"}),
        ({"username": "tab\tname", "email": "a@example.com", "password": "long enough"},
         {"username"}),
        ({"username": "u" * 33, "email": "a@example.com", "password": "long enough"},
         {"username"}),
        ({"username": "okname", "email": "a@example.com", "password": "p" * 129}, {"password"}),
        ({"username": 5, "email": "a@example.com", "password": "long enough"}, {"username"}),
    ]
    for obj, fields in cases:
        r = post_json(a.port, "/account", obj)
        assert r.status == 400, (obj, r)
        assert set(json.loads(r.body)["fields"]) == fields, (obj, r)
    # 32 characters of more than one byte each are fine.
    signup(a.port, "é" * 32, "multi@example.com", "long enough")
    assert postgres_server.psql("SELECT count(*) FROM accounts").strip() == "1"


def test_bad_bodies_are_refused(postgres_server, accounts_keys, start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    for body in [b"{", b"[]", b'{"username":"a","username":"b"}', b"\"just a string\"",
                 b'{"email":"a@example.com","password":"x"' + b"}" * 2,
                 b"[" * 40 + b"]" * 40, b'{"a":[' + b"1," * 300 + b"1]}"]:
        for target in ("/account", "/login"):
            r = post_json(a.port, target, body)
            assert r.status == 400, (target, body[:40], r)
            assert "error" in json.loads(r.body)
    big = json.dumps({"username": "big", "email": "big@example.com", "password": "x" * 5000})
    r = post_json(a.port, "/account", big)
    assert r.status == 413, r
    r = get(a.port, "/account", "POST", headers={"Content-Type": "text/plain"}, body=b"{}")
    assert r.status == 415
    r = get(a.port, "/account")
    assert r.status == 405 and r.header("Allow") == "POST"
    assert postgres_server.psql("SELECT count(*) FROM accounts").strip() == "0"


def test_duplicates_get_409_naming_the_field(postgres_server, accounts_keys, start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    signup(a.port, "carol", "carol@example.com", "password-1")
    r = post_json(a.port, "/account", {"username": "carol", "email": "other@example.com",
                                        "password": "password-1"})
    assert r.status == 409 and set(json.loads(r.body)["fields"]) == {"username"}, r
    r = post_json(a.port, "/account", {"username": "carol2", "email": "CAROL@example.com",
                                        "password": "password-1"})
    assert r.status == 409 and set(json.loads(r.body)["fields"]) == {"email"}, r
    m = metrics(a)
    assert sample(m, "accounts_signups_total", outcome="duplicate") == 2


# ------------------------------------------------------------------ data stays data

INJECTIONS = [
    ("Robert'); DROP TABLE accounts;--", "o'or'1'='1@example.com", "' OR '1'='1' --"),
    ('x" OR ""="', "a';delete--@example.com", "'; SELECT pg_sleep(5); --"),
    ("admin'--", "b\\\"@example.com", "\\'; DROP TABLE accounts; --"),
]


def test_sql_injection_strings_are_stored_and_shown_verbatim(postgres_server, accounts_keys,
                                                             start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    ids = {}
    for user, mail, password in INJECTIONS:
        ids[user] = signup(a.port, user, mail, password)["id"]
    for user, mail, password in INJECTIONS:
        t0 = time.monotonic()
        token = token_for(a.port, mail, password)
        assert time.monotonic() - t0 < 3 * TF  # no pg_sleep ran
        r = auth(a.port, token)
        assert r.status == 204 and r.header("X-User") == "%d:%s" % (ids[user], user)
        login(a.port, mail, password + "x", status=401)
    rows = postgres_server.psql("SELECT username || '|' || email FROM accounts ORDER BY id")
    assert rows.strip().split("\n") == ["%s|%s" % (u, m) for u, m, _ in INJECTIONS]
    page = get(a.port, "/accounts_page", headers={"Cookie": "accounts_token=" + token})
    assert page.status == 200
    cells = re.findall(r"<td>(.*?)</td>", page.body.decode())
    for user, mail, _ in INJECTIONS:
        assert html.escape(user, quote=True).replace("&#x27;", "&#39;") in cells
        assert html.unescape(html.escape(user)) == user
        assert html.escape(mail, quote=True).replace("&#x27;", "&#39;") in cells


def test_script_in_a_username_is_escaped_on_the_page(postgres_server, accounts_keys,
                                                     start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    evil = "<script>alert(1)</script>"
    signup(a.port, evil, "evil@example.com", "password-evil")
    signup(a.port, "q\"'&<b>", "quote@example.com", "password-evil")
    token = token_for(a.port, "evil@example.com", "password-evil")
    page = get(a.port, "/accounts_page", headers={"Cookie": "accounts_token=" + token})
    text = page.body.decode()
    assert page.status == 200 and page.header("Content-Type") == "text/html; charset=utf-8"
    assert "<script>" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "q&quot;&#39;&amp;&lt;b&gt;" in text
    assert page.header("X-Content-Type-Options") == "nosniff"


# ------------------------------------------------------------------ the browser's way

def test_form_login_sets_a_cookie_and_logout_clears_it(postgres_server, accounts_keys,
                                                       start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir, "--page-size", "2")
    for i in range(5):
        signup(a.port, "user%d" % i, "user%d@example.com" % i, "password-%d" % i)
    r = get(a.port, "/accounts_page", headers={"Accept": "text/html"})
    assert r.status == 401 and r.header("Content-Type").startswith("text/html")
    assert 'action="/login"' in r.body.decode() and "<table" not in r.body.decode()

    r = get(a.port, "/login", "POST", headers=FORM,
            body="email=USER1%40example.com&password=wrong-one")
    assert r.status == 401 and 'action="/login"' in r.body.decode()
    assert "wrong e-mail or password" in r.body.decode()
    assert r.header("Set-Cookie") is None

    r = get(a.port, "/login", "POST", headers=FORM,
            body="email=user1%40example.com&password=password-1")
    assert r.status == 303 and r.header("Location") == "/accounts_page"
    cookie = r.header("Set-Cookie")
    m = re.fullmatch(r"accounts_token=([A-Za-z0-9_.-]+); Path=/; Max-Age=900; HttpOnly; "
                     r"SameSite=Strict", cookie)
    assert m, cookie
    token = m.group(1)
    page = get(a.port, "/accounts_page", headers={"Cookie": "accounts_token=" + token})
    body = page.body.decode()
    assert page.status == 200 and '<span id="user">user1</span>' in body
    assert re.findall(r"<tr><td>(\d+)</td>", body) == ["1", "2"]
    assert 'href="/accounts_page?page=2"' in body
    page3 = get(a.port, "/accounts_page?page=3", headers={"Cookie": "accounts_token=" + token})
    assert re.findall(r"<tr><td>(\d+)</td>", page3.body.decode()) == ["5"]
    assert "rel=\"next\"" not in page3.body.decode()

    r = get(a.port, "/logout", "POST", headers=FORM, body="")
    assert r.status == 303 and r.header("Location") == "/accounts_page"
    assert r.header("Set-Cookie") == ("accounts_token=; Path=/; Max-Age=0; HttpOnly; "
                                      "SameSite=Strict")


def test_secure_cookie_when_asked(postgres_server, accounts_keys, start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir, "--secure-cookie", "on")
    signup(a.port, "dave", "dave@example.com", "password-dave")
    r = get(a.port, "/login", "POST", headers=FORM,
            body="email=dave%40example.com&password=password-dave")
    assert r.status == 303 and r.header("Set-Cookie").endswith("; HttpOnly; SameSite=Strict; "
                                                               "Secure")


# ------------------------------------------------------------------ tokens

def test_tampered_tokens_are_refused(postgres_server, accounts_keys, start_accounts, tmp_path):
    a = start_accounts(postgres_server, accounts_keys.dir)
    acct = signup(a.port, "erin", "erin@example.com", "password-erin")
    good = token_for(a.port, "erin@example.com", "password-erin")
    assert auth(a.port, good).status == 204
    key = accounts_keys.path("k1")
    pk = unb64url(json.loads(get(a.port, "/.well-known/jwks.json").body)["keys"][0]["x"])
    # A token made by the test with the service's own key is accepted: the cases below fail
    # only for the one thing each changes.
    mine = {"sub": str(acct["id"]), "name": "erin"}
    assert auth(a.port, make_token(key, tmp_path, claims=mine)).status == 204
    cases = tampered_tokens(good, key, tmp_path, pk)
    assert len(cases) == 28
    for name, token in cases.items():
        r = auth(a.port, token)
        assert r.status == 401, (name, token, r)
        r = get(a.port, "/accounts_page", headers={"Cookie": "accounts_token=" + token})
        assert r.status == 401 and "<table" not in r.body.decode(), name
    m = metrics(a)
    for outcome in ("malformed", "bad_alg", "unknown_kid", "bad_signature", "expired",
                    "not_yet_valid", "wrong_issuer", "wrong_audience"):
        assert sample(m, "accounts_token_checks_total", outcome=outcome) > 0, outcome
    assert auth(a.port, good).status == 204


def test_a_cached_token_is_refused_after_its_exp(postgres_server, accounts_keys,
                                                 start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir, "--token-ttl", "2s")
    signup(a.port, "fay", "fay@example.com", "password-fay")
    token = token_for(a.port, "fay@example.com", "password-fay")
    assert auth(a.port, token).status == 204
    assert auth(a.port, token).status == 204  # cached
    _, c, _ = parts(token)
    # The verifier allows 30 s of clock skew; the cache never serves past exp.
    while time.time() < c["exp"] + 0.2:
        time.sleep(0.1)
    assert sample(metrics(a), "accounts_token_cache_hits_total") >= 1
    before = sample(metrics(a), "accounts_token_cache_hits_total")
    assert auth(a.port, token).status == 204  # within the skew allowance, verified again
    assert sample(metrics(a), "accounts_token_cache_hits_total") == before


@pytest.mark.time_limit(60)
def test_auth_says_how_long_nginx_may_reuse_its_yes(postgres_server, accounts_keys,
                                                    start_accounts, tmp_path):
    """X-Accel-Expires on /auth's 204 only: --auth-reuse from now, never into the token's last
    second; none with --auth-reuse 0s, none on a 401."""
    a = start_accounts(postgres_server, accounts_keys.dir, "--auth-reuse", "7s")
    acct = signup(a.port, "reuse", "reuse@example.com", "password-reuse")
    token = token_for(a.port, "reuse@example.com", "password-reuse")
    r = auth(a.port, token)
    assert r.status == 204
    assert 6 < int(r.header("X-Accel-Expires").lstrip("@")) - time.time() <= 7, r
    assert auth(a.port, token + "x").header("X-Accel-Expires") is None
    now = int(time.time())
    mine = {"sub": str(acct["id"]), "name": "reuse"}
    soon = make_token(accounts_keys.path("k1"), tmp_path, claims=mine, exp=now + 4)
    r = auth(a.port, soon)
    assert r.status == 204 and r.header("X-Accel-Expires") == "@%d" % (now + 3), r
    last = make_token(accounts_keys.path("k1"), tmp_path, claims=mine, exp=now + 1)
    r = auth(a.port, last)
    assert r.status == 204 and r.header("X-Accel-Expires") is None, r
    b = start_accounts(postgres_server, accounts_keys.dir, "--auth-reuse", "0s")
    r = auth(b.port, token)
    assert r.status == 204 and r.header("X-Accel-Expires") is None, r


def test_key_rotation(postgres_server, accounts_keys, start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    signup(a.port, "gus", "gus@example.com", "password-gus")
    old = token_for(a.port, "gus@example.com", "password-gus")
    a.assert_clean_exit()

    # A new key signs; the old one stays to verify what it signed.
    accounts_keys.add("k2")
    b = start_accounts(postgres_server, accounts_keys.dir, signing_key="k2")
    new = token_for(b.port, "gus@example.com", "password-gus")
    assert parts(new)[0]["kid"] == "k2" and parts(old)[0]["kid"] == "k1"
    assert auth(b.port, old).status == 204
    assert auth(b.port, new).status == 204
    kids = [k["kid"] for k in json.loads(get(b.port, "/.well-known/jwks.json").body)["keys"]]
    assert kids == ["k1", "k2"]
    b.assert_clean_exit()

    # The old key retired: its tokens are refused, the new ones still pass.
    os.unlink(accounts_keys.path("k1"))
    c = start_accounts(postgres_server, accounts_keys.dir, signing_key="k2")
    assert auth(c.port, old).status == 401
    assert auth(c.port, new).status == 204
    assert sample(metrics(c), "accounts_token_checks_total", outcome="unknown_kid") == 1


# ------------------------------------------------------------------ timing, load, brute force

@pytest.mark.time_limit(120)
def test_unknown_email_costs_what_a_wrong_password_costs(postgres_server, accounts_keys,
                                                         start_accounts):
    # Production hashing parameters: the dummy hash must cost what a real one costs.
    a = start_accounts(postgres_server, accounts_keys.dir, "--hash-memory", "19MiB",
                       "--hash-iterations", "2", "--login-max-retries", "1000",
                       "--address-max-retries", "1000")
    signup(a.port, "hal", "hal@example.com", "password-hal")
    times = {"unknown": [], "wrong": []}
    # Interleaved, so that both kinds meet the same load from whatever else runs on the machine;
    # 100 of each (the issue asks for 50 at least): a median that moves less with that load.
    with Conn(a.port) as c:
        for i in range(100):
            for kind, mail in (("unknown", "nobody%d@example.com" % i), ("wrong",
                                                                         "hal@example.com")):
                body = json.dumps({"email": mail, "password": "not-the-password"})
                t0 = time.perf_counter()
                r = c.request("POST", "/login", headers=JSON, body=body)
                times[kind].append(time.perf_counter() - t0)
                assert r.status == 401, r
    unknown = statistics.median(times["unknown"])
    wrong = statistics.median(times["wrong"])
    print("median login: unknown e-mail %.1f ms, wrong password %.1f ms" % (unknown * 1e3,
                                                                          wrong * 1e3))
    assert abs(unknown - wrong) <= 0.2 * max(unknown, wrong), (unknown, wrong)


HEALTH_POLLER = """
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
req = b"GET /health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
out = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    t0 = time.perf_counter()
    s.sendall(req)
    buf = b""
    while not (b"\\r\\n\\r\\n" in buf and buf.endswith(b"}")):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit(1)
        buf += chunk
    out.append("%.6f:%.6f" % (time.monotonic(), time.perf_counter() - t0))
    if not buf.startswith(b"HTTP/1.1 200 "):
        sys.exit(1)
print(" ".join(out))
"""


@pytest.mark.time_limit(120)
def test_a_login_flood_beyond_the_queue_gets_503_while_health_stays_fast(
        postgres_server, accounts_keys, start_accounts):
    # One hashing thread (UV_THREADPOOL_SIZE=1: this machine has 2 cores shared with the test
    # client), a queue of 4, and slow hashes: most of a flood of 60 is refused.
    a = start_accounts(postgres_server, accounts_keys.dir, "--hash-queue", "4",
                       "--hash-memory", "19MiB", "--hash-iterations", "2",
                       "--login-max-retries", "1000", "--address-max-retries", "1000",
                       env={**os.environ, "UV_THREADPOOL_SIZE": "1"})
    signup(a.port, "ivy", "ivy@example.com", "password-ivy")
    results = []
    lock = threading.Lock()
    start = threading.Event()

    def one():
        body = json.dumps({"email": "ivy@example.com", "password": "password-ivy"})
        start.wait()
        t0 = time.perf_counter()
        r = get(a.port, "/login", "POST", headers=JSON, body=body)
        with lock:
            results.append((r.status, time.perf_counter() - t0, r.header("Retry-After")))

    threads = [threading.Thread(target=one) for _ in range(60)]
    for t in threads:
        t.start()
    # /health is polled from a process of its own (the flood's threads would otherwise share
    # the poller's interpreter lock and add their waits to its figures), on one keep-alive
    # connection, from just before the flood until after it.
    poller = subprocess.Popen([sys.executable, "-c", HEALTH_POLLER, str(a.port), "1.5"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)
    flood_start = time.monotonic()
    start.set()
    for t in threads:
        t.join()
    flood_end = time.monotonic()
    out, _ = poller.communicate(timeout=30 * TF)
    assert poller.returncode == 0, out
    assert flood_end + 0.1 < flood_start + 1.5, "the flood outlasted the poller"
    # Only the polls answered while the flood was on (CLOCK_MONOTONIC is one clock for both
    # processes).
    polls = [tuple(map(float, x.split(":"))) for x in out.split()]
    health = [lat for at, lat in polls if flood_start <= at <= flood_end]
    ok = [r for r in results if r[0] == 200]
    busy = [r for r in results if r[0] == 503]
    assert len(ok) + len(busy) == 60, sorted(set(r[0] for r in results))
    assert 1 <= len(ok) <= 30 and len(busy) >= 30, (len(ok), len(busy))
    assert all(r[2] == "1" for r in busy)
    busy_times = sorted(r[1] for r in busy)
    health.sort()
    assert len(health) >= 100, len(health)
    p99 = health[int(len(health) * 0.99) - 1]
    print("flood: %d ok, %d 503 (median %.1f ms) in %.0f ms; /health p99 %.2f ms over %d polls"
          % (len(ok), len(busy), statistics.median(busy_times) * 1e3,
             (flood_end - flood_start) * 1e3, p99 * 1e3, len(health)))
    assert statistics.median(busy_times) < 0.1 * TF
    assert p99 < 0.005 * TF, p99
    m = metrics(a)
    assert sample(m, "accounts_hash_queue_capacity") == 4
    assert sample(m, "accounts_logins_total", outcome="overloaded") == len(busy)
    assert sample(m, "accounts_hash_refused_total") == len(busy)
    assert sample(m, "accounts_hash_queue_depth") == 0


@pytest.mark.time_limit(60)
def test_failed_logins_are_rate_limited(postgres_server, accounts_keys, start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir, "--login-max-retries", "3",
                       "--address-max-retries", "6", "--login-ban-time", "1m")
    signup(a.port, "joe", "jo@example.com", "password-jo")
    signup(a.port, "kim", "kim@example.com", "password-kim")
    for _ in range(3):
        login(a.port, "jo@example.com", "wrong-password", status=401)
    r = post_json(a.port, "/login", {"email": "JO@example.com", "password": "password-jo"})
    assert r.status == 429, r
    assert 50 <= int(r.header("Retry-After")) <= 60
    # Another account from the same address is still served ...
    token_for(a.port, "kim@example.com", "password-kim")
    # ... until the address has failed too often (unknown e-mails count the same).
    for i in range(3):
        login(a.port, "ghost%d@example.com" % i, "wrong-password", status=401)
    r = post_json(a.port, "/login", {"email": "kim@example.com", "password": "password-kim"})
    assert r.status == 429 and r.header("Retry-After"), r
    r = get(a.port, "/login", "POST", headers=FORM,
            body="email=kim%40example.com&password=password-kim")
    assert r.status == 429 and 'action="/login"' in r.body.decode()
    assert sample(metrics(a), "accounts_logins_total", outcome="rate_limited") == 3


def test_rate_limit_uses_x_real_ip_only_when_trusted(postgres_server, accounts_keys,
                                                     start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir, "--login-max-retries", "100",
                       "--address-max-retries", "2", "--trust-real-ip", "on")
    signup(a.port, "lee", "lee@example.com", "password-lee")
    for _ in range(2):
        login(a.port, "x@example.com", "wrong-password", status=401,
              headers={"X-Real-IP": "203.0.113.9"})
    login(a.port, "lee@example.com", "password-lee", status=429,
          headers={"X-Real-IP": "203.0.113.9"})
    login(a.port, "lee@example.com", "password-lee", headers={"X-Real-IP": "203.0.113.10"})


# ------------------------------------------------------------------ operations

def test_metrics_are_promtool_clean(postgres_server, accounts_keys, start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    signup(a.port, "max", "max@example.com", "password-max")
    token_for(a.port, "max@example.com", "password-max")
    r = get(a.port, "/metrics")
    text = r.body.decode()
    promtool_check(text)
    m = samples(text)
    assert sample(m, "accounts_hash_queue_depth") == 0
    assert sample(m, "accounts_hash_queue_capacity") == 64
    assert sample(m, "accounts_hash_duration_seconds_count") == 2
    for outcome in ("success", "failure", "rate_limited", "overloaded", "invalid", "error"):
        sample(m, "accounts_logins_total", outcome=outcome)
    assert sample(m, "accounts_store_up") == 1


def test_healthcheck_mode(postgres_server, accounts_keys, start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    ok = run_to_completion([ACCOUNTS_BIN, "--healthcheck", "http://127.0.0.1:%d/health" % a.port])
    assert ok.p.returncode == 0


def bad_start(*args):
    p = run_to_completion([ACCOUNTS_BIN, "--listen", "127.0.0.1:0"] + list(args))
    err = p.stderr_text().strip()
    return p.p.returncode, err


def test_bad_settings_end_with_one_line_and_status_2(accounts_keys, tmp_path):
    import shutil
    if not (os.path.isfile(ACCOUNTS_BIN)):
        pytest.skip("binary not built")
    d = accounts_keys.dir
    cases = [
        (["--keys-dir", d], "--signing-key"),
        (["--keys-dir", d, "--signing-key", "k2"], "k2.pem"),
        (["--keys-dir", d, "--signing-key", "../k1"], "kid"),
        (["--keys-dir", str(tmp_path / "none"), "--signing-key", "k1"], "keys directory"),
        (["--keys-dir", d, "--signing-key", "k1", "--token-ttl", "0s"], "--token-ttl"),
        (["--keys-dir", d, "--signing-key", "k1", "--hash-queue", "0"], "--hash-queue"),
        (["--keys-dir", d, "--signing-key", "k1", "--secure-cookie", "maybe"],
         "--secure-cookie"),
        (["--keys-dir", d, "--signing-key", "k1", "--auth-reuse", "1500ms"], "--auth-reuse"),
        (["--keys-dir", d, "--signing-key", "k1", "--auth-reuse", "10m"], "--auth-reuse"),
        (["--keys-dir", d, "--signing-key", "k1", "--database", "host=x bogus"], "--database"),
        (["--keys-dir", d, "--signing-key", "k1", "--database-password-file",
          str(tmp_path / "missing")], "--database-password-file"),
    ]
    x25519 = tmp_path / "x"
    os.mkdir(x25519)
    shutil.copy(accounts_keys.path("k1"), x25519 / "k1.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "x25519", "-out", str(x25519 / "xk.pem")],
                   check=True, capture_output=True, timeout=30)
    cases.append((["--keys-dir", str(x25519), "--signing-key", "k1"], "xk.pem"))
    broken = tmp_path / "b"
    os.mkdir(broken)
    pem = open(accounts_keys.path("k1")).read().split("\n")
    (broken / "k1.pem").write_text("\n".join([pem[0], pem[1][:-8], pem[2]]) + "\n")
    cases.append((["--keys-dir", str(broken), "--signing-key", "k1"], "k1.pem"))
    for args, word in cases:
        rc, err = bad_start(*args)
        assert rc == 2, (args, rc, err)
        assert err.count("\n") == 0 and err.startswith("accounts: error:") and word in err, \
            (args, err)


def test_populate_script_creates_accounts_through_the_api(postgres_server, accounts_keys,
                                                           start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts",
                          "populate-accounts")
    p = subprocess.run([script, "5", "http://127.0.0.1:%d" % a.port], capture_output=True,
                       text=True, timeout=60 * TF)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().split("\n")
    assert len(lines) == 5 and "created 5 of 5" in p.stderr
    assert postgres_server.psql("SELECT count(*) FROM accounts").strip() == "5"
    user, email, password = lines[-1].split(" ")
    assert auth(a.port, token_for(a.port, email, password)).header("X-User").endswith(":" + user)
    bad = subprocess.run([script, "x"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.time_limit(60)
def test_postgres_down_gives_503_and_recovery_serves_again(postgres_server, accounts_keys,
                                                           start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir)
    signup(a.port, "nia", "nia@example.com", "password-nia")
    token = token_for(a.port, "nia@example.com", "password-nia")
    postgres_server.stop()
    a.wait_event("STORE", state="down")
    assert get(a.port, "/health").status == 503
    r = post_json(a.port, "/login", {"email": "nia@example.com", "password": "password-nia"})
    assert r.status == 503 and r.header("Retry-After") == "1", r
    r = post_json(a.port, "/account", {"username": "oli", "email": "oli@example.com",
                                        "password": "password-oli"})
    assert r.status == 503 and r.header("Retry-After") == "1", r
    # Tokens are checked without the database.
    assert auth(a.port, token).status == 204
    postgres_server.start()
    deadline = time.monotonic() + 20 * TF
    while get(a.port, "/health").status != 200:
        assert time.monotonic() < deadline, "PostgreSQL never came back"
        time.sleep(0.1)
    token_for(a.port, "nia@example.com", "password-nia")
    signup(a.port, "oli", "oli@example.com", "password-oli")


@pytest.mark.time_limit(60)
def test_sigterm_answers_logins_in_flight_then_exits_clean(postgres_server, accounts_keys,
                                                           start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir, "--hash-queue", "4",
                       "--hash-memory", "64MiB", "--hash-iterations", "3",
                       env={**os.environ, "UV_THREADPOOL_SIZE": "1"})
    signup(a.port, "pat", "pat@example.com", "password-pat")
    conns = [Conn(a.port) for _ in range(4)]
    body = json.dumps({"email": "pat@example.com", "password": "password-pat"})
    for c in conns:
        c.send(("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    deadline = time.monotonic() + 5 * TF
    while sample(metrics(a), "accounts_hash_queue_depth") < 4:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    a.send_signal(signal.SIGTERM)
    for c in conns:
        r = c.read_response()
        assert r.status == 200 and r.header("Connection") == "close", r
        assert "access_token" in json.loads(r.body)
        c.close()
    assert a.wait(10 * TF) == 0
    a.assert_clean_exit()  # EXIT code=0: the loop closed with nothing left open


def test_signups_per_address_are_bounded(postgres_server, accounts_keys, start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir, "--signup-max-per-address", "3",
                       "--trust-real-ip", "on")
    for i in range(3):
        # Field errors cost no hash and do not count.
        post_json(a.port, "/account", {"username": "x", "email": "y", "password": "z"})
        signup(a.port, "quinn%d" % i, "quinn%d@example.com" % i, "password-quinn")
    r = post_json(a.port, "/account", {"username": "quinn9", "email": "quinn9@example.com",
                                        "password": "password-quinn"})
    assert r.status == 429 and 590 <= int(r.header("Retry-After")) <= 600, r
    r = post_json(a.port, "/account", {"username": "quinn9", "email": "quinn9@example.com",
                                        "password": "password-quinn"},
                  headers={"X-Real-IP": "198.51.100.7"})
    assert r.status == 201, r
    m = metrics(a)
    assert sample(m, "accounts_signups_total", outcome="rate_limited") == 1
    assert sample(m, "accounts_signups_total", outcome="created") == 4
