"""The accounts page in a real browser: headless Chromium driven through Selenium 4.

Shared by the black-box tier (tests/blackbox/test_accounts_browser.py, the accounts service on
loopback) and the end-to-end tier (the same flow through nginx on port 80). Neither tier is a
package, so a caller puts this directory on sys.path first:

    import os, sys
    sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
    import browser_flow

    reason = browser_flow.missing_browser()      # None, or why the browser cannot run here
    report = browser_flow.run_accounts_flow(
        "http://127.0.0.1:80",                   # base URL: the service, or nginx
        "user1-abc@example.com", "secret",       # an existing account's e-mail and password
        ["user1-abc", *browser_flow.HOSTILE_USERNAMES],  # usernames the table must show
        "/path/to/artefacts")                    # screenshots (made if missing)

run_accounts_flow returns a FlowReport when every step held. When the page does not behave
(a check fails, or something waited for never happens) it raises AssertionError naming the
step, with a failure screenshot and the page's HTML saved beside the others; a browser that
cannot start or crashes raises selenium's WebDriverException instead.
It uses Debian's packages only: /usr/bin/chromium, /usr/bin/chromedriver, python3-selenium
(4.8); scripts/install-deps.sh installs them. Nothing is downloaded at run time.

The steps, each wait bounded by `timeout` seconds (WebDriverWait, page-load and script
timeouts, and a bound on every command sent to chromedriver):
 1. GET /accounts_page without a cookie: the login form (form#login, method post, action
    /login, form-encoded, an email and a password input, a submit button); screenshot.
 2. Fill and submit it with real key presses and a click: the browser follows the 303 to
    /accounts_page, which shows table#accounts.
 3. The session cookie (accounts_token): HttpOnly, SameSite=Strict, Path=/, persistent
    (Max-Age), as both WebDriver and the DevTools protocol report it; document.cookie does not
    show it, and a script cannot overwrite it. Screenshot of the table.
 4. Every expected username is in a username cell as plain text (the cell has no child
    element: markup in a name was escaped), following rel=next links across pages. On every
    page no injected script ran: window.__pwned and window.__pwned2 are unset and the title
    is still "Accounts". HOSTILE_USERNAMES are names that set them if the page ever renders
    them as HTML; create them as accounts beforehand and include them in the usernames.
 5. Click "Sign out": back on /accounts_page with the login form, the cookie gone;
    screenshot. A reload still shows the login form.

The browser runs with a fresh temporary profile (removed afterwards), a fixed window size,
--headless=new, and --no-sandbox only when running as root (Chromium's sandbox refuses
root). The driver is quit whatever happens.
"""

import dataclasses
import os
import shutil
import tempfile
import time
import urllib.parse

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
COOKIE_NAME = "accounts_token"
WINDOW_SIZE = (1280, 1024)
PAGE_TITLE = "Accounts"

#: Usernames (at most 32 characters, as the service allows) that run script if the page ever
#: renders them as markup: a <script> element sets window.__pwned, and an event handler (for an
#: escaper that only knows about <script>) sets window.__pwned2.
HOSTILE_USERNAMES = (
    "<script>__pwned=1</script>",
    "<img src=x onerror=__pwned2=1>",
)

# One round trip per page: the header cells and, per row, each cell's text and how many
# child elements it has (escaped markup is text: no child elements).
_READ_TABLE_JS = """
const t = document.querySelector('table#accounts');
if (!t) return null;
return {
  heads: Array.from(t.querySelectorAll('thead th')).map(th => th.textContent.trim()),
  rows: Array.from(t.querySelectorAll('tbody tr')).map(
      tr => Array.from(tr.cells).map(td => [td.textContent, td.childElementCount])),
};
"""

_MARKERS_JS = """
return {ran: ['__pwned', '__pwned2'].filter(k => typeof window[k] !== 'undefined'),
        title: document.title};
"""


@dataclasses.dataclass
class FlowReport:
    """What a successful run saw: screenshot paths, pages of the table walked, the session
    cookie as WebDriver reported it (value included), the wall time in seconds, and the
    seconds each step took ({step: seconds}, browser start-up included as "start")."""
    screenshots: list
    pages_walked: int
    cookie: dict
    seconds: float
    steps: dict


def missing_browser():
    """None when Chromium, chromedriver and Selenium 4 are all here; otherwise the reason
    (for a skip, or a failure where the browser is required)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return "%s not installed (scripts/install-deps.sh: chromium chromium-driver)" % path
    try:
        import selenium
    except ImportError:
        return "selenium not importable (scripts/install-deps.sh: python3-selenium)"
    if int(selenium.__version__.split(".")[0]) < 4:
        return "selenium %s is older than 4" % selenium.__version__
    return None


def run_accounts_flow(base_url, email, password, usernames, screenshot_dir, timeout=15.0,
                      max_pages=50):
    """Signs in on base_url's /accounts_page with email/password, checks the table shows every
    name in `usernames`, the cookie's attributes, that no injected script ran, then signs out
    (see the module's docstring for every step). Screenshots 01-login-form.png,
    02-accounts-table.png (page 1), 02-accounts-table-page<N>.png (the last page read, when
    the names span several), 03-after-logout.png go to screenshot_dir (made if missing), with
    chromedriver.log (chromedriver's own log, for a browser that would not start or crashed);
    on a failure also failure.png and failure.html. `timeout` bounds each wait (seconds);
    `max_pages` bounds the rel=next links followed. Returns a FlowReport; raises
    AssertionError (or WebDriverException for a browser that failed, as the module says)."""
    reason = missing_browser()
    if reason:
        raise AssertionError("cannot run the browser: " + reason)
    base = base_url.rstrip("/")
    os.makedirs(screenshot_dir, exist_ok=True)
    started = time.monotonic()
    profile = tempfile.mkdtemp(prefix="browser-flow-profile-")
    driver = None
    log = os.path.join(screenshot_dir, "chromedriver.log")
    try:
        try:
            driver = _start_chromium(profile, timeout, log)
        except Exception as e:
            if hasattr(e, "add_note"):
                e.add_note("browser flow step: start Chromium; see " + log)
            raise
        flow = _Flow(driver, base, screenshot_dir, timeout)
        flow.steps["start"] = time.monotonic() - started
        try:
            return flow.run(email, password, list(usernames), max_pages, started)
        except Exception as e:  # not the test's time limit (a BaseException): quit at once
            flow.save_failure(e)
            raise
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _start_chromium(profile, timeout, log):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.remote.remote_connection import RemoteConnection

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--user-data-dir=" + profile,
                "--window-size=%d,%d" % WINDOW_SIZE, "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--password-store=basic",
                # the targets are local: never through a proxy from the environment
                "--no-proxy-server"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    # No password manager bubbles or leak checks over the page.
    options.add_experimental_option("prefs", {"credentials_enable_service": False,
                                              "profile.password_manager_enabled": False})
    options.ignore_local_proxy_environment_variables()
    options.page_load_strategy = "normal"
    # Every command to chromedriver is an HTTP request; bound it (the connection pool reads
    # the class-wide timeout when the driver is made, so it is restored right after).
    previous = RemoteConnection.get_timeout()
    RemoteConnection.set_timeout(2 * timeout + 10)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER, log_path=log),
                                  options=options)
    finally:
        if previous is None:
            RemoteConnection.reset_timeout()
        else:
            RemoteConnection.set_timeout(previous)
    try:
        driver.set_page_load_timeout(timeout)
        driver.set_script_timeout(timeout)
        driver.implicitly_wait(0)
    except BaseException:
        driver.quit()
        raise
    return driver


class _Flow:
    def __init__(self, driver, base, shots, timeout):
        from selenium.webdriver.support.ui import WebDriverWait
        self.d = driver
        self.base = base
        self.shots = shots
        self.timeout = timeout
        self.wait = WebDriverWait(driver, timeout, poll_frequency=0.05)
        self.screenshots = []
        self.steps = {}
        self.step = "start"
        self.step_started = time.monotonic()

    def until(self, condition, message):
        """WebDriverWait.until, bounded by the flow's timeout; a timeout is the page's failure,
        so it is an AssertionError naming what never happened and where."""
        from selenium.common.exceptions import TimeoutException
        try:
            return self.wait.until(condition)
        except TimeoutException as e:
            what = message() if callable(message) else message
            raise AssertionError("%s (waited %gs; at %s)" % (what, self.timeout,
                                                             self.d.current_url)) from e

    def begin(self, step):
        now = time.monotonic()
        if self.step != "start":
            self.steps[self.step] = now - self.step_started
        self.step, self.step_started = step, now

    # ---- the steps

    def run(self, email, password, usernames, max_pages, started):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        self.begin("open /accounts_page signed out")
        self.d.get(self.base + "/accounts_page")
        form = self.login_form()
        self.assert_path("/accounts_page")
        self.assert_no_table()
        assert self.d.get_cookie(COOKIE_NAME) is None, "a session cookie before signing in"
        self.screenshot("01-login-form.png")

        self.begin("sign in through the form")
        form.find_element(By.CSS_SELECTOR, "input[name=email]").send_keys(email)
        form.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(password)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        self.until(EC.staleness_of(form), "the login form never went away after submit")
        self.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table#accounts, #error"),
                   "neither the accounts table nor an error after signing in")
        errors = self.d.find_elements(By.CSS_SELECTOR, "#error")
        assert not errors, "signing in failed at %s: %r" % (self.d.current_url, errors[0].text)
        self.assert_path("/accounts_page")
        self.wait_loaded()

        self.begin("the session cookie")
        cookie = self.check_cookie()
        self.screenshot("02-accounts-table.png")

        self.begin("the table's usernames")
        pages = self.walk_table(usernames, max_pages)
        if pages > 1:
            self.screenshot("02-accounts-table-page%d.png" % pages)

        self.begin("sign out")
        table = self.d.find_element(By.CSS_SELECTOR, "table#accounts")
        self.d.find_element(By.CSS_SELECTOR, "form#logout button[type=submit]").click()
        self.until(EC.staleness_of(table), "the table never went away after signing out")
        self.login_form()
        self.assert_path("/accounts_page")
        self.assert_no_table()
        self.until(lambda d: d.get_cookie(COOKIE_NAME) is None,
                   lambda: "the session cookie is still there after signing out: %r"
                   % self.d.get_cookie(COOKIE_NAME))
        assert not self.cdp_cookies(), "DevTools still lists the cookie: %r" % self.cdp_cookies()
        self.assert_no_script_ran()
        self.screenshot("03-after-logout.png")

        self.begin("reload after signing out")
        form = self.d.find_element(By.CSS_SELECTOR, "form#login")
        self.d.refresh()
        self.until(EC.staleness_of(form), "the page was not reloaded")
        self.login_form()
        self.assert_no_table()

        self.begin("done")
        return FlowReport(self.screenshots, pages, cookie, time.monotonic() - started,
                          self.steps)

    def login_form(self):
        """Waits for form#login and checks what the browser will post: returns the form."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        form = self.until(EC.presence_of_element_located((By.CSS_SELECTOR, "form#login")),
                          "no form#login")
        self.wait_loaded()
        assert form.get_dom_attribute("action") == "/login", form.get_dom_attribute("action")
        assert (form.get_dom_attribute("method") or "").lower() == "post", \
            form.get_dom_attribute("method")
        # The property, not the attribute: what the browser will actually send.
        assert form.get_property("enctype") == "application/x-www-form-urlencoded", \
            form.get_property("enctype")
        for name, kind in (("email", "email"), ("password", "password")):
            fields = form.find_elements(By.CSS_SELECTOR, "input[name=%s]" % name)
            assert len(fields) == 1, "form#login has %d inputs named %s" % (len(fields), name)
            assert fields[0].get_dom_attribute("type") == kind, fields[0].get_dom_attribute("type")
            assert fields[0].is_displayed() and fields[0].is_enabled(), name + " not usable"
        buttons = form.find_elements(By.CSS_SELECTOR, "button[type=submit]")
        assert len(buttons) == 1 and buttons[0].is_displayed(), "no visible submit button"
        self.assert_no_script_ran()
        return form

    def check_cookie(self):
        """The session cookie as WebDriver and DevTools see it; HttpOnly must hold in the page."""
        c = self.d.get_cookie(COOKIE_NAME)
        assert c is not None, "no %s cookie after signing in (cookies: %r)" % (
            COOKIE_NAME, self.d.get_cookies())
        value = c.get("value") or ""
        assert value.count(".") == 2 and len(value) > 40, "not a JWT: %r" % value[:80]
        assert c.get("httpOnly") is True, "cookie not HttpOnly: %r" % c
        assert c.get("sameSite") == "Strict", "cookie not SameSite=Strict: %r" % c
        assert c.get("path") == "/", "cookie path: %r" % c
        expiry = c.get("expiry")
        assert expiry is not None and expiry > time.time(), "not a persistent cookie: %r" % c
        cdp = self.cdp_cookies()
        assert len(cdp) == 1, "DevTools lists %d %s cookies: %r" % (len(cdp), COOKIE_NAME, cdp)
        assert cdp[0]["httpOnly"] is True and cdp[0]["sameSite"] == "Strict" and \
            cdp[0]["session"] is False and cdp[0]["value"] == value, cdp[0]

        seen = self.d.execute_script("return document.cookie")
        assert COOKIE_NAME not in seen and value not in seen, \
            "document.cookie shows the token: %r" % seen
        # A script cannot replace an HttpOnly cookie either (RFC 6265bis 5.7 step 15).
        self.d.execute_script("document.cookie = arguments[0] + '=forged; Path=/'", COOKIE_NAME)
        after = self.d.get_cookie(COOKIE_NAME)
        assert after is not None and after.get("value") == value, \
            "a script replaced the HttpOnly cookie: %r" % after
        return c

    def walk_table(self, usernames, max_pages):
        """Finds every expected username in the table, following rel=next; returns the number
        of pages read."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        wanted = set(usernames)
        found = set()
        page = 1
        while True:
            self.assert_no_script_ran()
            table = self.d.execute_script(_READ_TABLE_JS)
            assert table is not None, "no table#accounts on page %d" % page
            assert "username" in table["heads"], "no username column: %r" % table["heads"]
            col = table["heads"].index("username")
            for row in table["rows"]:
                assert len(row) == len(table["heads"]), "row %r, header %r" % (row, table["heads"])
                text, children = row[col]
                if text in wanted:
                    assert children == 0, "username %r was rendered as markup" % text
                    found.add(text)
                for _, cell_children in row:
                    assert cell_children == 0, "markup in a cell on page %d: %r" % (page, row)
            if found == wanted:
                return page
            links = self.d.find_elements(By.CSS_SELECTOR, "a[rel=next]")
            if not links:
                break
            assert page < max_pages, "still a next page after %d pages" % max_pages
            old = self.d.find_element(By.CSS_SELECTOR, "table#accounts")
            links[0].click()
            self.until(EC.staleness_of(old), "page %d never went away" % page)
            page += 1
            self.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table#accounts")),
                       "no table#accounts on page %d" % page)
            self.wait_loaded()
            self.assert_path("/accounts_page")
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.d.current_url).query)
            assert q.get("page") == [str(page)], "rel=next led to %s" % self.d.current_url
        missing = sorted(wanted - found)
        raise AssertionError("usernames not in the table after %d page(s): %r" % (page, missing))

    # ---- checks and artefacts

    def wait_loaded(self):
        # The load event waits for images too, so an onerror handler would have run by then.
        self.until(lambda d: d.execute_script("return document.readyState") == "complete",
                   "the page never finished loading")

    def assert_no_script_ran(self):
        m = self.d.execute_script(_MARKERS_JS)
        payload = {"__pwned": "the <script> username", "__pwned2": "the onerror username"}
        assert not m["ran"], "injected script ran: " + ", ".join(
            "window.%s set by %s" % (k, payload[k]) for k in m["ran"])
        assert m["title"] == PAGE_TITLE, "the title is %r, not %r" % (m["title"], PAGE_TITLE)

    def assert_path(self, path):
        got = urllib.parse.urlsplit(self.d.current_url).path
        assert got == path, "at %s, expected the path %s" % (self.d.current_url, path)

    def assert_no_table(self):
        from selenium.webdriver.common.by import By
        assert not self.d.find_elements(By.CSS_SELECTOR, "table#accounts"), \
            "the accounts table is shown while signed out"

    def cdp_cookies(self):
        got = self.d.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
        return [c for c in got if c["name"] == COOKIE_NAME]

    def screenshot(self, name):
        path = os.path.join(self.shots, name)
        assert self.d.save_screenshot(path), "screenshot %s not saved" % path
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", "%s is not a PNG" % path
        self.screenshots.append(path)

    def save_failure(self, error):
        """Best effort: the failing page as a screenshot and its HTML, named in the error."""
        saved = []
        try:
            png = os.path.join(self.shots, "failure.png")
            if self.d.save_screenshot(png):
                saved.append(png)
            html = os.path.join(self.shots, "failure.html")
            with open(html, "w", encoding="utf-8") as f:
                f.write("<!-- %s -->\n" % self.d.current_url.replace("--", "%2D%2D"))
                f.write(self.d.page_source)
            saved.append(html)
        except Exception as e:  # the browser may be the thing that failed
            saved.append("(no artefacts: %s)" % e)
        if hasattr(error, "add_note"):
            error.add_note("browser flow step: %s; artefacts: %s" % (self.step, ", ".join(saved)))
