// Real Redis and PostgreSQL servers for the store client tests: each in its own temporary
// directory on a free loopback port, started and stopped (or killed, paused, restarted) by the
// test. PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs
// to `nobody` and the server processes drop to it before exec.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace store_servers {

// A loopback TCP port nobody listens on right now.
int free_port();

// A socket that listens (the kernel completes TCP handshakes into its backlog) but is never
// accepted from or read: a server that "accepts" and then never answers.
class silent_listener {
 public:
  silent_listener();
  ~silent_listener();
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class server_process {
 public:
  virtual ~server_process();
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // Signals the server and its children (process group + children by pid: PostgreSQL's
  // backends have sessions of their own) and waits until every one of them is gone.
  void kill_all(int sig);
  void pause();   // SIGSTOP to all of them: the socket stays open, nothing answers
  void resume();  // SIGCONT
  std::string log_tail() const;

 protected:
  bool spawn(const char* const* argv, bool drop_privileges);
  std::vector<pid_t> family() const;
  void signal_family(const std::vector<pid_t>& pids, int sig);
  bool make_dir(const char* prefix, bool for_nobody);
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
  bool as_nobody_ = false;
};

class redis_server : public server_process {
 public:
  ~redis_server() override;
  // Starts redis-server (same port on a restart). password: requirepass, "" for none.
  bool start(std::string* error, const std::string& password = "");
  void stop();  // SIGTERM, wait
  bool restart(std::string* error) { return start(error, password_); }
  std::string unix_socket() const { return dir_ + "/redis.sock"; }

 private:
  std::string password_;
};

class pg_server : public server_process {
 public:
  ~pg_server() override;
  // initdb (once) with a superuser `postgres` whose password is in password_file(); local
  // (unix socket) connections trusted, TCP ones need scram-sha-256. Then starts the server.
  bool start(std::string* error);
  void stop();  // fast shutdown (SIGINT), wait
  bool restart(std::string* error) { return start(error); }
  const std::string& password_file() const { return password_file_; }
  const std::string& password() const { return password_; }
  // "host=127.0.0.1 port=N user=postgres dbname=postgres" (no password).
  std::string conninfo() const;

 private:
  bool initdb(std::string* error);
  bool wait_ready(std::string* error);
  bool initialized_ = false;
  std::string password_file_;
  std::string password_;
  std::string bindir_;
};

}  // namespace store_servers
