"""HTTPS at the edge: the stack started with `scripts/up.sh --self-signed -d` (a self-signed
pair made into a temporary TLS_DIR, docker-compose.tls.yml on top), checked with curl from the
host: the handshake (TLS 1.2 and 1.3; TLS 1.1 and ciphers outside Mozilla's intermediate
profile refused), HTTP/2, HSTS, and port 80: the assignment's routes plain, the rest
redirected to HTTPS.

    /usr/bin/python3 -m pytest -q tests/e2e/test_edge_tls.py

Its own compose project (E2E_PROJECT-tls) on free loopback ports, so it never meets the
plain stack of test_e2e_stack.py or another run; removed at the end.
"""

import os
import re
import socket
import subprocess
import tempfile

import pytest
import requests
import urllib3

import e2e_common
from e2e_common import REPO, wait_for

PROJECT = os.environ.get("E2E_PROJECT", "hellostack-e2e") + "-tls"
UP_TIMEOUT = float(os.environ.get("E2E_UP_TIMEOUT", "1800"))
HOST = "localhost"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def edge():
    tls_dir = tempfile.mkdtemp(prefix="edge-tls-")
    http_port, https_port = free_port(), free_port()
    # The PostgreSQL password (visits) goes to the temporary directory too, not to .secrets/.
    env = dict(os.environ, COMPOSE_PROJECT_NAME=PROJECT, TLS_DIR=tls_dir, SECRETS_DIR=tls_dir,
               HTTP_PORT=str(http_port), HTTPS_PORT=str(https_port))
    env.pop("COMPOSE_FILE", None)
    compose = [str(REPO / "scripts" / "compose"), "-f", "docker-compose.yml", "-f",
               "docker-compose.tls.yml"]
    e2e_common.run(compose + ["down", "-v", "--remove-orphans", "--timeout", "5"], 180,
                   check=False, env=env)
    info = {"http": "http://%s:%d" % (HOST, http_port),
            "https": "https://%s:%d" % (HOST, https_port),
            "https_port": https_port, "tls_dir": tls_dir, "env": env, "compose": compose}
    try:
        up = e2e_common.run([str(REPO / "scripts" / "up.sh"), "--self-signed", "-d"], UP_TIMEOUT,
                            env=env)
        info["up"] = up.stdout + up.stderr
        wait_for("HTTPS to answer", lambda: curl(info, "-k", info["https"] + "/").returncode == 0,
                 timeout=60)
        yield info
    finally:
        p = e2e_common.run(compose + ["logs", "--no-color", "--tail", "100", "nginx"], 60,
                           check=False, env=env)
        print(p.stdout)
        e2e_common.run(compose + ["down", "-v", "--remove-orphans", "--timeout", "10"], 180,
                       check=False, env=env)
        subprocess.run(["rm", "-rf", tls_dir], check=False)


def curl(edge, *args, timeout=20):
    """curl with a hard bound; never follows redirects (we look at them)."""
    return e2e_common.run(["curl", "-sS", "--max-time", "10", *args], timeout, check=False)


def status_and_headers(edge, *args):
    p = curl(edge, "-o", "/dev/null", "-D", "-", *args)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


def test_up_made_a_self_signed_pair_never_in_the_repo(edge):
    assert "made a self-signed certificate" in edge["up"], edge["up"]
    key = os.path.join(edge["tls_dir"], "key.pem")
    st = os.stat(key)
    if os.geteuid() == 0:  # given to nginx's user alone; without root up.sh cannot chown
        assert (st.st_uid, st.st_mode & 0o777) == (65532, 0o400), (st.st_uid, oct(st.st_mode))
    # .tls/ (the default TLS_DIR) is ignored by git and by the image build.
    assert "/.tls/" in (REPO / ".gitignore").read_text().split()
    assert not (REPO / ".dockerignore").read_text().count("!.tls")


def test_https_verifies_with_the_mounted_certificate(edge):
    """Verified against the pair up.sh made (no -k): nginx serves the secret's certificate."""
    cacert = os.path.join(edge["tls_dir"], "cert.pem")
    p = curl(edge, "--cacert", cacert, edge["https"] + "/baz")
    assert p.returncode == 0, p.stderr
    assert p.stdout == '{"msg":"Hello, Baz!"}'


def test_http2_negotiated(edge):
    p = curl(edge, "-k", "--http2", "-o", "/dev/null", "-w", "%{http_version}", edge["https"] + "/")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "2", p.stdout


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_12_and_13_accepted(edge, version):
    p = curl(edge, "-k", "--tlsv" + version, "--tls-max", version, "-o", "/dev/null",
             "-w", "%{http_code}", edge["https"] + "/")
    assert p.returncode == 0 and p.stdout == "200", (p.returncode, p.stdout, p.stderr)


def test_tls_11_refused(edge):
    """The client offers TLS 1.1 only, with its own security level lowered so that it really
    does (OpenSSL 3 would not otherwise): the server must refuse (alert protocol_version)."""
    p = curl(edge, "-k", "--tlsv1.1", "--tls-max", "1.1", "--ciphers", "DEFAULT:@SECLEVEL=0",
             edge["https"] + "/")
    assert p.returncode == 35, (p.returncode, p.stdout, p.stderr)  # SSL connect error
    port = edge["https_port"]
    p = e2e_common.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_1",
                        "-cipher", "DEFAULT@SECLEVEL=0"], 20, check=False)
    assert "alert protocol version" in p.stdout + p.stderr, p.stdout + p.stderr


def test_cipher_outside_the_profile_refused(edge):
    """TLS 1.2 with RSA key exchange (no forward secrecy): not in the intermediate profile."""
    p = curl(edge, "-k", "--tlsv1.2", "--tls-max", "1.2", "--ciphers", "AES128-GCM-SHA256",
             edge["https"] + "/")
    assert p.returncode == 35, (p.returncode, p.stdout, p.stderr)
    p = curl(edge, "-k", "--tlsv1.2", "--tls-max", "1.2", "--ciphers",
             "ECDHE-ECDSA-AES128-GCM-SHA256", "-o", "/dev/null", edge["https"] + "/")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("path", ["/", "/baz", "/status", "/metrics"])
def test_hsts_on_every_https_answer(edge, path):
    """Proxied answers and nginx's own (the 404 of /metrics) alike."""
    status, headers = status_and_headers(edge, "-k", edge["https"] + path)
    assert status == (404 if path == "/metrics" else 200), status
    assert headers.get("strict-transport-security") == "max-age=63072000", headers


@pytest.mark.parametrize("path,body", [("/", {"msg": "Hello, World!"}),
                                       ("/baz", {"msg": "Hello, Baz!"})])
def test_assignment_routes_stay_plain_on_80(edge, path, body):
    """seed 000: `curl localhost/` and `curl localhost/baz` answer JSON on port 80."""
    r = requests.get(edge["http"] + path, timeout=5, allow_redirects=False)
    assert r.status_code == 200, (r.status_code, r.headers)
    assert r.json() == body
    assert "Strict-Transport-Security" not in r.headers  # never over plain HTTP (RFC 6797)
    r = requests.get(edge["http"] + "/health", timeout=5, allow_redirects=False)
    assert r.status_code == 200 and set(r.json()) == {"healthy", "latency"}


def test_visits_stays_plain_on_80_and_counts_on_https_too(edge):
    """seed 003: `curl localhost` (here /visits) and `curl localhost/resetcounter` are plain
    curl commands, which follow no redirect: plain JSON on port 80, like /baz. Over HTTPS the
    same counter answers, with HSTS."""
    r = requests.get(edge["http"] + "/resetcounter", timeout=5, allow_redirects=False)
    assert r.status_code == 200 and r.json() == {"visits": 0}, (r.status_code, r.text)
    r = requests.get(edge["http"] + "/visits", timeout=5, allow_redirects=False)
    assert r.status_code == 200 and r.json() == {"visits": 1}, (r.status_code, r.text)
    assert "Strict-Transport-Security" not in r.headers
    p = curl(edge, "-k", "-D", "-", edge["https"] + "/visits")
    assert p.returncode == 0 and p.stdout.endswith('{"visits":2}'), p.stdout
    assert "strict-transport-security: max-age=63072000" in p.stdout.lower(), p.stdout


@pytest.mark.parametrize("path", ["/status", "/a/b", "/baz/"])
def test_port_80_redirects_the_rest(edge, path):
    status, headers = status_and_headers(edge, edge["http"] + path)
    assert status == 308, (status, headers)
    assert headers["location"] == edge["https"] + path, headers


@pytest.mark.parametrize("path", ["/login", "/account", "/logout", "/accounts_page", "/auth",
                                  "/api/baz", "/.well-known/jwks.json"])
def test_port_80_sends_accounts_and_the_api_to_https(edge, path):
    """Passwords and tokens never cross port 80 in the clear when HTTPS is there: accounts'
    one-segment paths are redirected too, unlike /baz (308 keeps a POST a POST)."""
    status, headers = status_and_headers(edge, "-X", "POST", edge["http"] + path)
    assert status == 308, (path, status, headers)
    assert headers["location"] == edge["https"] + path, headers


def test_accounts_over_https_with_a_secure_cookie(edge):
    """Sign-up, the page's form login (its cookie is Secure behind TLS) and /api/ over HTTPS."""
    s = requests.Session()
    # The certificate is checked by test_https_verifies_with_the_mounted_certificate (curl);
    # Python's ssl does not take a self-signed leaf as its own trust anchor.
    # (Per request: a REQUESTS_CA_BUNDLE in the environment would override the session's.)
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    r = s.post(edge["https"] + "/account", timeout=10, verify=False,
               json={"username": "tls-user", "email": "tls@example.com",
                     "password": "correct horse tls"})
    assert r.status_code == 201, r.text
    r = s.post(edge["https"] + "/login", timeout=10, allow_redirects=False, verify=False,
               data={"email": "tls@example.com", "password": "correct horse tls"})
    assert r.status_code == 303, r.text
    cookie = r.headers["Set-Cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    assert r.headers["Strict-Transport-Security"] == "max-age=63072000"
    r = s.get(edge["https"] + "/api/baz", timeout=10, verify=False)  # the cookie is the credential
    assert r.status_code == 200 and r.json() == {"msg": "Hello, Baz!"}, r.text
    r = requests.get(edge["https"] + "/api/baz", timeout=10, verify=False)
    assert r.status_code == 401, r.text


def test_port_80_redirects_browsers(edge):
    """A browser announces it takes HTTPS (Upgrade-Insecure-Requests: 1): even / moves."""
    status, headers = status_and_headers(edge, "-H", "Upgrade-Insecure-Requests: 1",
                                         edge["http"] + "/baz")
    assert status == 308, (status, headers)
    assert headers["location"] == edge["https"] + "/baz", headers
    # and curl -L follows it to an HTTPS answer
    p = curl(edge, "-k", "-L", "-H", "Upgrade-Insecure-Requests: 1", "-w", " %{url_effective}",
             edge["http"] + "/baz")
    assert p.stdout == '{"msg":"Hello, Baz!"} %s/baz' % edge["https"], p.stdout


def test_secrets_come_from_files_not_the_compose_file(edge):
    """The key reaches nginx as a file secret (a bind mount of TLS_DIR/key.pem), and is in
    neither compose file."""
    env = edge["env"]
    cid = e2e_common.run(edge["compose"] + ["ps", "-q", "nginx"], 30, env=env).stdout.strip()
    mounts = e2e_common.run(["docker", "inspect", "-f",
                             "{{range .Mounts}}{{.Source}}={{.Destination}} {{end}}", cid], 30).stdout
    assert "%s/key.pem=/run/secrets/tls_key" % edge["tls_dir"] in mounts, mounts
    for f in ("docker-compose.yml", "docker-compose.tls.yml"):
        assert "PRIVATE KEY" not in (REPO / f).read_text()
    logs = e2e_common.run(["docker", "logs", cid], 30).stdout
    assert re.search(r"^nginx-entrypoint: tls=on certificate=/run/secrets/tls_cert", logs, re.M), logs
