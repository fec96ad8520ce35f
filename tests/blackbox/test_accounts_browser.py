"""The accounts page in a real browser: headless Chromium (tests/lib/browser_flow.py) against the
real accounts service and a real PostgreSQL on loopback.

Accounts are made the way an operator makes them, with scripts/populate-accounts, plus the
hostile usernames of browser_flow (a <script> and an onerror handler that would set
window.__pwned). With --page-size 5 the table spans three pages, so the browser follows the
rel=next links. Screenshots go to $STACK_ARTIFACTS_DIR/browser/<test>/ (default
<build dir>/artifacts/browser/<test>/).

Chromium, chromedriver or Selenium missing: the tests fail under STACK_REQUIRE_BINARIES=1 (as
scripts/test.sh runs them), and are skipped with the reason otherwise.
"""

import json
import os
import shutil
import subprocess

import pytest

import browser_flow  # tests/lib, on sys.path through conftest.py
from bbenv import BUILD_DIR, REPO, TF
from promtext import sample, samples
from rawhttp import get

POPULATE = os.path.join(REPO, "scripts", "populate-accounts")
PAGE_SIZE = 5
POPULATED = 12


@pytest.fixture
def browser():
    reason = browser_flow.missing_browser()
    if reason:
        if os.environ.get("STACK_REQUIRE_BINARIES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def artifacts(request):
    """This test's screenshot directory, emptied first so that it holds only this run's."""
    base = os.environ.get("STACK_ARTIFACTS_DIR") or os.path.join(BUILD_DIR, "artifacts")
    if not os.path.isabs(base):
        base = os.path.join(REPO, base)
    d = os.path.join(base, "browser", request.node.name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def populate(port, n):
    """scripts/populate-accounts n against the service: [(username, email, password)]."""
    p = subprocess.run([POPULATE, str(n), "http://127.0.0.1:%d" % port], capture_output=True,
                       text=True, timeout=60 * TF)
    assert p.returncode == 0, p.stderr
    assert "created %d of %d" % (n, n) in p.stderr, p.stderr
    made = [tuple(line.split(" ")) for line in p.stdout.strip().split("\n")]
    assert len(made) == n and all(len(m) == 3 for m in made), p.stdout
    return made


def signup(port, username, email, password):
    body = json.dumps({"username": username, "email": email, "password": password})
    r = get(port, "/account", "POST", headers={"Content-Type": "application/json"}, body=body)
    assert r.status == 201, r
    assert json.loads(r.body)["username"] == username


def logins(a):
    r = get(a.port, "/metrics")
    assert r.status == 200
    m = samples(r.body.decode())
    return {o: sample(m, "accounts_logins_total", outcome=o) for o in ("success", "failure")}


@pytest.mark.time_limit(90)
def test_sign_in_read_the_table_and_sign_out_in_chromium(browser, artifacts, postgres_server,
                                                         accounts_keys, start_accounts):
    a = start_accounts(postgres_server, accounts_keys.dir, "--page-size", str(PAGE_SIZE))
    made = populate(a.port, POPULATED)
    for i, name in enumerate(browser_flow.HOSTILE_USERNAMES):
        signup(a.port, name, "hostile%d@example.com" % i, "hostile-password-%d" % i)
    user, email, password = made[0]
    names = [m[0] for m in made] + list(browser_flow.HOSTILE_USERNAMES)
    assert postgres_server.psql("SELECT count(*) FROM accounts").strip() == str(len(names))

    report = browser_flow.run_accounts_flow("http://127.0.0.1:%d" % a.port, email, password,
                                            names, artifacts, timeout=10 * TF)

    # 14 accounts, 5 a page: the hostile names (the last ids) are on page 3.
    assert report.pages_walked == 3
    assert [os.path.basename(p) for p in report.screenshots] == [
        "01-login-form.png", "02-accounts-table.png", "02-accounts-table-page3.png",
        "03-after-logout.png"]
    for p in report.screenshots:
        assert os.path.getsize(p) > 1000, p
    # The service saw one successful form login: the browser's.
    assert logins(a) == {"success": 1, "failure": 0}
    # The cookie the browser held was a valid session for that account.
    r = get(a.port, "/auth", headers={"Cookie": "accounts_token=" + report.cookie["value"]})
    assert r.status == 204 and r.header("X-User").endswith(":" + user), r
    print("\nbrowser flow: %.1fs (%s), %d pages, screenshots in %s" % (
        report.seconds, ", ".join("%s %.2fs" % kv for kv in report.steps.items()),
        report.pages_walked, artifacts))


@pytest.mark.time_limit(60)
def test_the_flow_fails_on_a_wrong_password(browser, artifacts, postgres_server, accounts_keys,
                                            start_accounts):
    """The driver must not pass a page it could not sign in to: it names the step and the
    page's error, and leaves the failing page as an artefact."""
    a = start_accounts(postgres_server, accounts_keys.dir)
    user, email, password = populate(a.port, 1)[0]
    with pytest.raises(AssertionError) as e:
        browser_flow.run_accounts_flow("http://127.0.0.1:%d" % a.port, email,
                                       password + "-wrong", [user], artifacts, timeout=10 * TF)
    assert "signing in failed" in str(e.value) and "wrong e-mail or password" in str(e.value)
    assert "browser flow step: sign in through the form" in "\n".join(
        getattr(e.value, "__notes__", []))
    assert os.path.getsize(os.path.join(artifacts, "failure.png")) > 1000
    with open(os.path.join(artifacts, "failure.html"), encoding="utf-8") as f:
        assert 'id="error"' in f.read()
    assert logins(a) == {"success": 0, "failure": 1}
