"""JWTs for the tests of accounts: signing with a key file through openssl (an implementation
independent of the service's libsodium), and the catalogue of tampered tokens that /auth, the
accounts page and nginx's /api/ must all refuse (tests/blackbox/test_accounts.py,
tests/blackbox/test_nginx_accounts.py, tests/e2e/test_accounts_stack.py).

Importable from both tiers: they put this directory on sys.path.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_ed25519_key(directory, kid):
    """Writes <directory>/<kid>.pem with `openssl genpkey -algorithm ed25519`; returns its path."""
    path = os.path.join(str(directory), kid + ".pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", path], check=True,
                   capture_output=True, timeout=30)
    return path


def ed25519_sign(key_path, data, tmp_dir):
    msg = os.path.join(str(tmp_dir), "msg.bin")
    with open(msg, "wb") as f:
        f.write(data)
    out = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", str(key_path), "-rawin",
                          "-in", msg], check=True, capture_output=True, timeout=30).stdout
    assert len(out) == 64
    return out


def make_token(key_path, tmp_dir, header=None, claims=None, issuer="test-issuer",
               audience="test-audience", **changes):
    """A token signed with key_path: our header and claims with `changes` applied (a value of
    None removes that claim or header field)."""
    now = int(time.time())
    h = {"alg": "EdDSA", "typ": "JWT", "kid": "k1"}
    h.update(header or {})
    c = {"sub": "1", "name": "alice", "iat": now, "nbf": now, "exp": now + 600,
         "iss": issuer, "aud": audience, "jti": "x"}
    c.update(claims or {})
    c.update(changes)
    h = {k: v for k, v in h.items() if v is not None}
    c = {k: v for k, v in c.items() if v is not None}
    signing_input = (b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(c).encode()))
    return signing_input + "." + b64url(ed25519_sign(key_path, signing_input.encode(), tmp_dir))


def parts(token):
    h, p, s = token.split(".")
    return json.loads(unb64url(h)), json.loads(unb64url(p)), s


def tampered_tokens(good, key_path, tmp_dir, public_key, issuer="test-issuer",
                    audience="test-audience"):
    """{what was done: token} for a valid token `good` of the service whose signing key is
    key_path (kid k1) and public key public_key (32 bytes, from the JWKS). Each must be refused;
    a token made the same way without the change is accepted (make_token with the claims of
    `good`), so each fails for the one thing it changes."""
    h64, p64, s64 = good.split(".")
    header, claims, _ = parts(good)
    other = make_ed25519_key(tmp_dir, "k1-impostor")
    now = int(time.time())
    mine = {"sub": claims["sub"], "name": claims["name"]}

    def signed(**kw):
        return make_token(key_path, tmp_dir, claims=mine, issuer=issuer, audience=audience, **kw)

    def hs256(secret):
        h = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
        signing_input = h + "." + p64
        return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(),
                                                     hashlib.sha256).digest())

    admin = dict(claims, sub="1", name="admin")
    return {
        "changed payload": h64 + "." + b64url(json.dumps(admin).encode()) + "." + s64,
        "changed header": b64url(json.dumps(dict(header, x=1)).encode()) + "." + p64 + "." + s64,
        "alg none": b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + p64 + ".",
        "alg none with a signature": b64url(json.dumps({"alg": "none", "kid": "k1"}).encode()) +
        "." + p64 + "." + s64,
        "alg HS256 with the public key": hs256(public_key),
        "alg HS256 with the JWKS x": hs256(b64url(public_key).encode()),
        "expired": signed(iat=now - 1000, nbf=now - 1000, exp=now - 60),
        "not yet valid": signed(nbf=now + 300),
        "issued in the future": signed(iat=now + 300),
        "wrong aud": signed(aud="someone-else"),
        "wrong iss": signed(iss="evil"),
        "unknown kid": signed(header={"kid": "k9"}),
        "no kid": signed(header={"kid": None}),
        "right kid, another key": make_token(other, tmp_dir, claims=mine, issuer=issuer,
                                             audience=audience),
        "crit header": signed(header={"crit": ["exp"]}),
        "exp as a string": signed(exp=str(now + 600)),
        "no exp": signed(exp=None),
        "truncated": good[:-10],
        "truncated to two parts": h64 + "." + p64,
        "extra dots": good + ".",
        "four parts": good + "." + s64,
        "empty signature": h64 + "." + p64 + ".",
        "bad base64": h64 + "." + p64[:-2] + "*!" + "." + s64,
        "padded base64": h64 + "=." + p64 + "." + s64,
        "signature with stray bits": h64 + "." + p64 + "." + s64[:-1] +
        ("B" if s64[-1] == "A" else "A"),
        "bad JSON header": b64url(b'{"alg":"EdDSA",') + "." + p64 + "." + s64,
        "duplicate alg": b64url(b'{"alg":"EdDSA","alg":"none","kid":"k1"}') + "." + p64 + "." +
        s64,
        "not JSON payload": h64 + "." + b64url(b"hello") + "." + s64,
    }
