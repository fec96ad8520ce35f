#include "counting_malloc.hpp"

#include <atomic>

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void __libc_free(void*);
}

namespace {
std::atomic<bool> g_counting{false};
std::atomic<pthread_t> g_thread{};
std::atomic<uint64_t> g_allocs{0};

void count_one() {
  if (g_counting.load(std::memory_order_relaxed) &&
      pthread_equal(pthread_self(), g_thread.load(std::memory_order_relaxed))) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
  }
}
}  // namespace

extern "C" void* malloc(size_t n) {
  count_one();
  return __libc_malloc(n);
}
extern "C" void* calloc(size_t n, size_t m) {
  count_one();
  return __libc_calloc(n, m);
}
extern "C" void* realloc(void* p, size_t n) {
  count_one();
  return __libc_realloc(p, n);
}

namespace alloc_count {

void start(pthread_t thread) {
  g_thread.store(thread);
  g_allocs.store(0);
  g_counting.store(true);
}

uint64_t stop() {
  g_counting.store(false);
  return g_allocs.load();
}

void* raw_malloc(size_t n) {
  return __libc_malloc(n);
}
void* raw_calloc(size_t n, size_t m) {
  return __libc_calloc(n, m);
}
void* raw_realloc(void* p, size_t n) {
  return __libc_realloc(p, n);
}
void raw_free(void* p) {
  __libc_free(p);
}

}  // namespace alloc_count
