#include "hasher.hpp"

#include <cstring>

namespace accounts {

struct hasher::job {
  uv_work_t req{};
  hasher* owner = nullptr;
  job* next = nullptr;
  bool verify = false;
  char password[max_password_bytes];
  size_t password_len = 0;
  char stored[crypto_pwhash_STRBYTES];
  outcome result = outcome::error;
  uint64_t ns = 0;  // time on the worker
  done_fn on_done = nullptr;
  void* ctx = nullptr;
};

hasher::hasher(uv_loop_t* loop, size_t capacity, hash_params params)
    : loop_(loop), capacity_(capacity), params_(params), jobs_(new job[capacity]) {
  for (size_t i = 0; i < capacity_; ++i) {
    jobs_[i].owner = this;
    jobs_[i].req.data = &jobs_[i];
    jobs_[i].next = free_;
    free_ = &jobs_[i];
  }
  free_count_ = capacity_;
}

hasher::~hasher() = default;

hasher::job* hasher::take() {
  if (free_ == nullptr) {
    ++refused_;
    return nullptr;
  }
  job* j = free_;
  free_ = j->next;
  --free_count_;
  return j;
}

bool hasher::submit(job* j) {
  if (uv_queue_work(loop_, &j->req, on_work, on_after_work) != 0) {
    sodium_memzero(j->password, sizeof j->password);
    j->next = free_;
    free_ = j;
    ++free_count_;
    return false;
  }
  return true;
}

bool hasher::hash(std::string_view password, done_fn on_done, void* ctx) {
  if (password.size() > max_password_bytes) return false;
  job* j = take();
  if (j == nullptr) return false;
  j->verify = false;
  memcpy(j->password, password.data(), password.size());
  j->password_len = password.size();
  j->stored[0] = '\0';
  j->on_done = on_done;
  j->ctx = ctx;
  return submit(j);
}

bool hasher::verify(std::string_view stored, std::string_view password, done_fn on_done,
                    void* ctx) {
  if (password.size() > max_password_bytes || stored.size() >= crypto_pwhash_STRBYTES) {
    return false;
  }
  job* j = take();
  if (j == nullptr) return false;
  j->verify = true;
  memcpy(j->password, password.data(), password.size());
  j->password_len = password.size();
  memcpy(j->stored, stored.data(), stored.size());
  j->stored[stored.size()] = '\0';
  j->on_done = on_done;
  j->ctx = ctx;
  return submit(j);
}

// On a pool thread: touches only its own job (and the parameters, which never change).
void hasher::on_work(uv_work_t* req) {
  auto* j = static_cast<job*>(req->data);
  uint64_t t0 = uv_hrtime();
  if (j->verify) {
    int rc = crypto_pwhash_str_verify(j->stored, j->password, j->password_len);
    j->result = rc == 0 ? outcome::match : outcome::mismatch;
  } else {
    int rc = crypto_pwhash_str_alg(j->stored, j->password, j->password_len, j->owner->params_.ops,
                                   j->owner->params_.mem_bytes, crypto_pwhash_ALG_ARGON2ID13);
    j->result = rc == 0 ? outcome::hashed : outcome::error;
  }
  j->ns = uv_hrtime() - t0;
}

void hasher::on_after_work(uv_work_t* req, int status) {
  auto* j = static_cast<job*>(req->data);
  hasher* h = j->owner;
  sodium_memzero(j->password, sizeof j->password);
  outcome o = status == 0 ? j->result : outcome::error;
  if (status == 0) h->durations_.observe(static_cast<double>(j->ns) / 1e9);
  done_fn cb = j->on_done;
  void* ctx = j->ctx;
  // The record is free again before the callback, which may queue the next job.
  char stored[crypto_pwhash_STRBYTES];
  memcpy(stored, j->stored, sizeof stored);
  j->next = h->free_;
  h->free_ = j;
  ++h->free_count_;
  cb(ctx, o, o == outcome::hashed ? stored : "");
  sodium_memzero(stored, sizeof stored);
}

std::string hasher::hash_now(std::string_view password, hash_params params) {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), params.ops, params.mem_bytes,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return {};
  }
  return out;
}

}  // namespace accounts
