"""The servers perf/run measures, and how each is configured and started. Every one listens on
127.0.0.1 only, on a free port, and answers GET / with exactly {"msg":"Hello, World!"},
Content-Type: application/json and a Content-Length.

  hello      build/hello/hello --listen 127.0.0.1:0 --access-log off
  nginx      one worker, `return 200` with the same JSON (nginx_static_conf)
  node       perf/baselines/node_hello.js (http.createServer)
  flask      perf/baselines/flask/hello.py under `python3 -m flask run`, as seed 000 runs it
  gunicorn   the same app under gunicorn, sync workers (gunicorn's default worker class)
  proxy      nginx with the project's nginx/default.conf.template, rendered the way
             nginx/entrypoint.sh renders it, inside Debian's stock nginx.conf (proxy_conf)
"""

import os
import re
import subprocess

from .common import PERF_DIR, ROOT
from .procs import REGISTRY, Server, free_port

FLASK_DIR = os.path.join(PERF_DIR, "baselines", "flask")
LISTEN_RE = r"LISTEN addr=127\.0\.0\.1:(\d+)"


def _nginx_modules(nginx_bin):
    try:
        return subprocess.run([nginx_bin, "-V"], capture_output=True, text=True,
                              timeout=10).stderr
    except (OSError, subprocess.SubprocessError):
        return ""


def _temp_paths(tmp, nginx_bin, indent="    "):
    built = _nginx_modules(nginx_bin)
    lines = [indent + "client_body_temp_path %s/client_body;" % tmp]
    for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
        if "--without-http_%s_module" % module not in built:
            lines.append(indent + "%s_temp_path %s/%s;" % (module, tmp, module))
    return "\n".join(lines)


def nginx_static_conf(tmp, port, nginx_bin, worker_connections=4096, access_log=None):
    """A single-worker nginx answering GET / like hello; every path under tmp."""
    extra = ""
    if worker_connections > 1000:
        extra = "worker_rlimit_nofile %d;\n" % (2 * worker_connections + 100)
    return """worker_processes 1;
%(extra)sdaemon off;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log warn;
events {
    worker_connections %(wc)d;
}
http {
    access_log %(access)s;
%(temp_paths)s
    server_tokens off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            default_type application/json;
            return 200 '{"msg":"Hello, World!"}';
        }
    }
}
""" % {"tmp": tmp, "port": port, "temp_paths": _temp_paths(tmp, nginx_bin), "extra": extra,
       "wc": worker_connections, "access": access_log or "off"}


# Debian bookworm's /etc/nginx/nginx.conf (package nginx-common, comments dropped), which the
# project's nginx image uses unchanged. Changes for loopback, and only these: no `user`
# (perf/run is not necessarily root), one worker (the servers get one core), every path in a
# temp dir, and conf.d is the temp dir's rendered template. sites-enabled is not included (the
# image deletes sites-enabled/default), nor modules-enabled (dynamic modules load relative to
# nginx's prefix, and the template uses none of them).
DEBIAN_NGINX_CONF = """worker_processes 1;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log;
events {
\tworker_connections 768;
}
http {
\tsendfile on;
\ttcp_nopush on;
\ttypes_hash_max_size 2048;
\tinclude /etc/nginx/mime.types;
\tdefault_type application/octet-stream;
\tssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3; # Dropping SSLv3, ref: POODLE
\tssl_prefer_server_ciphers on;
\taccess_log %(tmp)s/access.log;
\tgzip on;
%(temp_paths)s
\tinclude %(tmp)s/conf.d/*.conf;
}
"""


def render_template(upstream_port, listen_port, conf_dir, strategy="round_robin",
                    accounts_port=None, api_auth="jwt", var_dir=None):
    """nginx/default.conf.template rendered as nginx/entrypoint.sh renders it for one replica
    at 127.0.0.1:upstream_port without TLS, with its retry upstream and location (the entry
    point's render_retries) written to conf_dir; the changes: the plain server
    (nginx/edge-plain.conf, with nginx/routes.conf) is written in place of its includes, so the
    text is the whole site; `listen 80` becomes 127.0.0.1:listen_port, and the image's paths
    (/etc/nginx/hello/proxy.conf, conf.d) are the repository's nginx/proxy.conf and conf_dir.
    accounts is 127.0.0.1:accounts_port (None: the entry point's "down" placeholder), /api/ as
    NGINX_API_AUTH=api_auth says (nginx/api-<api_auth>.conf as conf_dir/api.locations).
    var_dir stands for the image's /var/lib/nginx (the cache of accounts' /auth answers): nginx's
    workers must be able to reach it (started as root, they run as nobody: a directory under
    a private /tmp/pytest-of-root would not do); default conf_dir."""
    directive = {"round_robin": "# round robin (nginx's default)", "random": "random;",
                 "least_conn": "least_conn;"}[strategy]
    servers = "server 127.0.0.1:%d max_fails=2 fail_timeout=5s; " % upstream_port

    def read(name):
        with open(os.path.join(ROOT, "nginx", name)) as f:
            return f.read()

    def inline(text, include, body):
        line = "include %s;" % include
        if text.count(line) != 1:
            raise RuntimeError("nginx: expected one '%s'" % line)
        indent = re.search(r"^([ \t]*)" + re.escape(line), text, re.M).group(1)
        body = re.sub(r"^[ \t]+$", "", body.strip().replace("\n", "\n" + indent), flags=re.M)
        return text.replace(line, body)

    edge = inline(read("edge-plain.conf"), "/etc/nginx/hello/routes.conf", read("routes.conf"))
    text = inline(read("default.conf.template"), "/etc/nginx/conf.d/edge.servers", edge)
    # sed -e "s|@STRATEGY@|...|" -e "s|@SERVERS@|...|": the first match on every line
    text = "".join(line.replace("@STRATEGY@", directive, 1).replace("@SERVERS@", servers, 1)
                   for line in text.splitlines(keepends=True))
    # /visits is never requested here: any resolver and address keep nginx's config valid.
    text = text.replace("@RESOLVER@", "127.0.0.1").replace("@VISITS@", "127.0.0.1:9")
    accounts = ("server 127.0.0.1:%d max_fails=2 fail_timeout=5s; " % accounts_port
                if accounts_port else "server 127.0.0.1:8080 down; ")
    text = text.replace("@ACCOUNTS_SERVERS@", accounts)
    listen = "listen 80 default_server;"
    if text.count(listen) != 1:
        raise RuntimeError("nginx/default.conf.template: expected one '%s'" % listen)
    proxy_conf_path = os.path.join(ROOT, "nginx", "proxy.conf")
    with open(os.path.join(conf_dir, "hello-retry-upstreams.conf"), "w") as f:
        f.write("upstream hello_retry1 { server 127.0.0.1:%d; keepalive 4; }\n" % upstream_port)
    with open(os.path.join(conf_dir, "hello-retry.locations"), "w") as f:
        f.write("location @retry1 {\n    proxy_pass http://hello_retry1;\n    include %s;\n}\n"
                % proxy_conf_path)
    text = text.replace("/etc/nginx/hello/proxy.conf", proxy_conf_path)
    # The stub_status listener (a fixed port, for Prometheus) is not on the path measured, and
    # two proxies run at once here.
    text = text.replace("include /etc/nginx/hello/status.conf;",
                        "# nginx/status.conf (stub_status for Prometheus) left out")
    # The other files the image has in /etc/nginx/hello/ (they include one another by that
    # path): copies in conf_dir/hello/ with the path rewritten.
    hello_dir = os.path.join(conf_dir, "hello")
    os.makedirs(hello_dir, exist_ok=True)
    for name in os.listdir(os.path.join(ROOT, "nginx")):
        if name.endswith(".conf"):
            with open(os.path.join(hello_dir, name), "w") as f:
                f.write(read(name).replace("/etc/nginx/hello/", hello_dir + "/")
                        .replace("/etc/nginx/conf.d/", conf_dir.rstrip("/") + "/"))
    with open(os.path.join(conf_dir, "api.locations"), "w") as f:
        f.write(read("api-%s.conf" % {"jwt": "jwt", "off": "off"}[api_auth])
                .replace("/etc/nginx/hello/", hello_dir + "/"))
    text = text.replace("/etc/nginx/hello/", hello_dir + "/")
    text = text.replace("/etc/nginx/conf.d/", conf_dir.rstrip("/") + "/")
    # the image's writable /var/lib/nginx (accounts' /auth cache)
    text = text.replace("/var/lib/nginx/", (var_dir or conf_dir).rstrip("/") + "/")
    return text.replace(listen, "listen 127.0.0.1:%d default_server;" % listen_port)


def proxy_conf(tmp, nginx_bin):
    return DEBIAN_NGINX_CONF % {"tmp": tmp, "temp_paths": _temp_paths(tmp, nginx_bin, "\t")}


# ---------------------------------------------------------------- starting them


def _start_on_free_port(make):
    """make(port) -> Server; retried: a probed free port may be taken before the server binds."""
    for attempt in range(5):
        s = make(free_port())
        try:
            return s.start()
        except RuntimeError as e:
            s.stop()
            if "in use" not in str(e) or attempt == 4:
                raise


def start_hello(tmp, hello_bin, name="hello", args=("--access-log", "off"), pin=True):
    s = Server(name, [hello_bin, "--listen", "127.0.0.1:0"] + list(args),
               os.path.join(tmp, name + ".log"), listen_re=LISTEN_RE, pin=pin)
    return REGISTRY.add(s).start()


def start_nginx(tmp, nginx_bin, name="nginx", worker_connections=4096, access_log=None,
                pin=True):
    ndir = os.path.join(tmp, name)
    os.makedirs(ndir, exist_ok=True)
    conf = os.path.join(ndir, "nginx.conf")

    def make(port):
        text = nginx_static_conf(ndir, port, nginx_bin, worker_connections,
                                 access_log and os.path.join(ndir, access_log))
        with open(conf, "w") as f:
            f.write(text)
        s = Server(name, [nginx_bin, "-p", ndir + "/", "-c", conf, "-e",
                          os.path.join(ndir, "error.log")],
                   os.path.join(tmp, name + ".log"), port=port, pin=pin)
        s.conf_text = text
        return REGISTRY.add(s)

    return _start_on_free_port(make)


def start_node(tmp, node_bin, name="node", pin=True):
    s = Server(name, [node_bin, os.path.join(PERF_DIR, "baselines", "node_hello.js"),
                      "127.0.0.1:0"],
               os.path.join(tmp, name + ".log"), listen_re=LISTEN_RE, pin=pin)
    return REGISTRY.add(s).start()


def flask_argv(python, port):
    return [python, "-m", "flask", "run", "--host", "127.0.0.1", "--port", str(port)]


def gunicorn_argv(gunicorn_bin, port, workers, app="hello:app"):
    return [gunicorn_bin, "--workers", str(workers), "--bind", "127.0.0.1:%d" % port, app]


def start_flask(tmp, python, name="flask", pin=True):
    # The seed: `python -m flask run` with FLASK_APP naming the app; threaded (Flask's default),
    # debug off. Werkzeug's development server logs every request to stderr, as in the seed.
    def make(port):
        return REGISTRY.add(Server(name, flask_argv(python, port), os.path.join(tmp, name + ".log"),
                                   port=port, cwd=FLASK_DIR, env={"FLASK_APP": "hello.py"},
                                   pin=pin))

    return _start_on_free_port(make)


def start_gunicorn(tmp, gunicorn_bin, workers, name="gunicorn", pin=True, app="hello:app",
                   env=None):
    def make(port):
        return REGISTRY.add(Server(name, gunicorn_argv(gunicorn_bin, port, workers, app),
                                   os.path.join(tmp, name + ".log"), port=port, cwd=FLASK_DIR,
                                   env=env, pin=pin))

    return _start_on_free_port(make)


def start_proxy(tmp, nginx_bin, upstream_port, name, accounts_port=None, api_auth="jwt"):
    ndir = os.path.join(tmp, name)
    os.makedirs(os.path.join(ndir, "conf.d"), exist_ok=True)
    conf = os.path.join(ndir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(proxy_conf(ndir, nginx_bin))

    def make(port):
        site = render_template(upstream_port, port, os.path.join(ndir, "conf.d"),
                               accounts_port=accounts_port, api_auth=api_auth)
        with open(os.path.join(ndir, "conf.d", "default.conf"), "w") as f:
            f.write(site)
        # nginx/entrypoint.sh: exec nginx -g 'daemon off; worker_shutdown_timeout 5s;'
        s = Server(name, [nginx_bin, "-p", ndir + "/", "-c", conf, "-e",
                          os.path.join(ndir, "error.log"),
                          "-g", "daemon off; worker_shutdown_timeout 5s;"],
                   os.path.join(tmp, name + ".log"), port=port)
        s.conf_text = site
        s.main_conf_text = open(conf).read()
        return REGISTRY.add(s)

    return _start_on_free_port(make)
