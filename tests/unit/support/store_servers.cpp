#include "store_servers.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace store_servers {

namespace {

constexpr uid_t nobody_uid = 65534;
constexpr gid_t nobody_gid = 65534;

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

void sleep_ms(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, nullptr);
}

int remove_entry(const char* path, const struct stat*, int, FTW*) {
  ::remove(path);
  return 0;
}

// A blocking loopback exchange: sends `req`, returns the first bytes answered ("" on failure).
std::string ask(int port, const char* req, int timeout_ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      send(fd, req, strlen(req), MSG_NOSIGNAL) == static_cast<ssize_t>(strlen(req))) {
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) out.assign(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

std::string pg_bindir() {
  if (const char* e = getenv("STACK_PG_BINDIR")) return e;
  glob_t g{};
  std::string best;
  if (glob("/usr/lib/postgresql/*/bin/postgres", 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) {
      std::string p = g.gl_pathv[i];
      std::string dir = p.substr(0, p.size() - strlen("/postgres"));
      // Numeric order of the major version: "15" > "9.6" by length first.
      if (best.empty() || dir.size() > best.size() || (dir.size() == best.size() && dir > best)) {
        best = dir;
      }
    }
  }
  globfree(&g);
  return best;
}

}  // namespace

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

silent_listener::silent_listener() {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(fd_, 64) == 0 &&
      getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port_ = ntohs(a.sin_port);
  }
}

silent_listener::~silent_listener() {
  if (fd_ >= 0) close(fd_);
}

// ------------------------------------------------------------------------ server_process

server_process::~server_process() {
  kill_all(SIGKILL);
  if (!dir_.empty()) nftw(dir_.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

bool server_process::make_dir(const char* prefix, bool for_nobody) {
  if (!dir_.empty()) return true;
  std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) return false;
  dir_ = buf.data();
  as_nobody_ = for_nobody && geteuid() == 0;
  if (as_nobody_ && chown(dir_.c_str(), nobody_uid, nobody_gid) != 0) return false;
  return true;
}

bool server_process::spawn(const char* const* argv, bool drop_privileges) {
  // Orphans of a killed server group (PostgreSQL's backends) come back to us to be reaped.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::string log = dir_ + "/server.log";
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    setsid();
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    if (drop_privileges && geteuid() == 0) {
      if (setgroups(0, nullptr) != 0 || setgid(nobody_gid) != 0 || setuid(nobody_uid) != 0) {
        _exit(126);
      }
    }
    execv(argv[0], const_cast<char* const*>(argv));
    _exit(127);
  }
  pid_ = pid;
  return true;
}

// The server and its children. PostgreSQL's backends call setsid(), so they are not in the
// postmaster's process group: a crash of "the server" must reach them by pid.
std::vector<pid_t> server_process::family() const {
  std::vector<pid_t> out;
  if (pid_ <= 0) return out;
  out.push_back(pid_);
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = readdir(proc)) {
    char* end = nullptr;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string stat;
    std::getline(f, stat);
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == pid_) out.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  return out;
}

void server_process::signal_family(const std::vector<pid_t>& pids, int sig) {
  ::kill(-pid_, sig);
  for (pid_t p : pids) ::kill(p, sig);
}

void server_process::kill_all(int sig) {
  if (pid_ <= 0) return;
  std::vector<pid_t> pids = family();
  signal_family(pids, sig);
  signal_family(pids, SIGCONT);  // a paused server handles SIGTERM/SIGINT only once resumed
  double deadline = now_s() + 20;
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (now_s() > deadline) {
      signal_family(pids, SIGKILL);
      deadline = now_s() + 5;
    }
    sleep_ms(5);
  }
  // The children come back to us (the subreaper) when their parent is gone: reap them all,
  // so a restart never meets a backend of the old server.
  deadline = now_s() + 10;
  for (size_t i = 1; i < pids.size(); ++i) {
    while (now_s() < deadline) {
      pid_t r = waitpid(pids[i], &status, WNOHANG);
      if (r == pids[i] || (r < 0 && ::kill(pids[i], 0) != 0)) break;
      sleep_ms(2);
    }
  }
  pid_ = -1;
}

void server_process::pause() {
  if (pid_ > 0) signal_family(family(), SIGSTOP);
}

void server_process::resume() {
  if (pid_ > 0) signal_family(family(), SIGCONT);
}

std::string server_process::log_tail() const {
  std::ifstream f(dir_ + "/server.log");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  return s.size() > 3000 ? s.substr(s.size() - 3000) : s;
}

// -------------------------------------------------------------------------- redis_server

redis_server::~redis_server() = default;

bool redis_server::start(std::string* error, const std::string& password) {
  if (running()) return true;
  if (!make_dir("stores-redis", false)) {
    *error = "mkdtemp failed";
    return false;
  }
  if (port_ == 0) port_ = free_port();
  password_ = password;
  std::string port = std::to_string(port_);
  std::string sock = unix_socket();
  std::vector<const char*> argv = {"/usr/bin/redis-server",
                                   "--port",
                                   port.c_str(),
                                   "--bind",
                                   "127.0.0.1",
                                   "--unixsocket",
                                   sock.c_str(),
                                   "--unixsocketperm",
                                   "700",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--dir",
                                   dir_.c_str(),
                                   "--daemonize",
                                   "no",
                                   "--loglevel",
                                   "warning"};
  if (!password_.empty()) {
    argv.push_back("--requirepass");
    argv.push_back(password_.c_str());
  }
  argv.push_back(nullptr);
  if (!spawn(argv.data(), false)) {
    *error = "fork failed";
    return false;
  }
  // Retried: the port may be in TIME_WAIT-free use by another test for a moment.
  double deadline = now_s() + 10;
  while (now_s() < deadline) {
    std::string answer = ask(port_, "PING\r\n", 200);
    if (answer.starts_with("+PONG") || answer.starts_with("-NOAUTH")) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      *error = "redis-server exited: " + log_tail();
      return false;
    }
    sleep_ms(10);
  }
  *error = "redis-server not ready in 10 s: " + log_tail();
  return false;
}

void redis_server::stop() {
  kill_all(SIGTERM);
}

// ----------------------------------------------------------------------------- pg_server

pg_server::~pg_server() = default;

std::string pg_server::conninfo() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=postgres";
}

bool pg_server::initdb(std::string* error) {
  bindir_ = pg_bindir();
  if (bindir_.empty()) {
    *error = "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin; STACK_PG_BINDIR)";
    return false;
  }
  if (!make_dir("stores-pg", true)) {
    *error = "mkdtemp/chown failed";
    return false;
  }
  // Quotes and spaces on purpose: the password goes to libpq as a value, never as text.
  password_ = "s3cret 'quoted' \"pass\" word";
  password_file_ = dir_ + "/password";
  {
    std::ofstream f(password_file_);
    f << password_ << "\n";
  }
  if (as_nobody_ && chown(password_file_.c_str(), nobody_uid, nobody_gid) != 0) {
    *error = "chown password file failed";
    return false;
  }
  chmod(password_file_.c_str(), 0600);
  std::string initdb = bindir_ + "/initdb";
  std::string data = dir_ + "/data";
  std::string pwfile = "--pwfile=" + password_file_;
  const char* argv[] = {
      initdb.c_str(), "-D",           data.c_str(),         "-U",
      "postgres",     pwfile.c_str(), "--auth-local=trust", "--auth-host=scram-sha-256",
      "-E",           "UTF8",         "--locale=C",         "--no-sync",
      nullptr};
  if (!spawn(argv, true)) {
    *error = "fork failed";
    return false;
  }
  int status = 0;
  double deadline = now_s() + 120;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (now_s() > deadline) {
      kill_all(SIGKILL);
      *error = "initdb took more than 120 s";
      return false;
    }
    sleep_ms(20);
  }
  pid_ = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *error = "initdb failed: " + log_tail();
    return false;
  }
  initialized_ = true;
  return true;
}

bool pg_server::start(std::string* error) {
  if (running()) return true;
  if (!initialized_ && !initdb(error)) return false;
  if (port_ == 0) port_ = free_port();
  // After a SIGKILL the lock file names a dead postmaster (or, with pid reuse, a live
  // stranger): every process of the old group is gone, so it is stale.
  ::remove((dir_ + "/data/postmaster.pid").c_str());
  // fsync=off only matters if the machine crashes: a commit is in the WAL (page cache) before
  // it is answered (synchronous_commit stays on), so a SIGKILL loses nothing committed.
  std::string postgres = bindir_ + "/postgres";
  std::string data = dir_ + "/data";
  std::string port = std::to_string(port_);
  const char* argv[] = {postgres.c_str(),
                        "-D",
                        data.c_str(),
                        "-p",
                        port.c_str(),
                        "-k",
                        dir_.c_str(),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        "fsync=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=40",
                        "-c",
                        "shared_buffers=16MB",
                        "-c",
                        "password_encryption=scram-sha-256",
                        "-c",
                        "log_min_messages=warning",
                        nullptr};
  if (!spawn(argv, true)) {
    *error = "fork failed";
    return false;
  }
  return wait_ready(error);
}

bool pg_server::wait_ready(std::string* error) {
  double deadline = now_s() + 60;
  std::string pidfile = dir_ + "/data/postmaster.pid";
  while (now_s() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      *error = "postgres exited: " + log_tail();
      return false;
    }
    std::ifstream f(pidfile);
    std::string line;
    int n = 0;
    while (std::getline(f, line)) {
      // Line 8 is the postmaster's status; "ready" once it accepts connections.
      if (++n == 8 && line.find("ready") != std::string::npos) return true;
    }
    sleep_ms(20);
  }
  *error = "postgres not ready in 60 s: " + log_tail();
  return false;
}

void pg_server::stop() {
  kill_all(SIGINT);
}

}  // namespace store_servers
