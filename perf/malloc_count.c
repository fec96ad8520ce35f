/* LD_PRELOAD shim for perf/run's sidecar section: counts every allocation call in a process
 * (malloc, calloc, realloc, memalign family; frees separately), from all threads and all
 * libraries (libcurl, OpenSSL, libc itself), and reports the counts on demand.
 *
 *   cc -O2 -shared -fPIC -o malloc_count.so perf/malloc_count.c
 *   PERF_MALLOC_COUNT_OUT=counts.txt LD_PRELOAD=./malloc_count.so sidecar ...
 *   kill -USR2 PID      appends "allocs=N frees=N malloc=N calloc=N realloc=N memalign=N\n"
 *
 * The same line is appended when the process exits. The real work is done by glibc's exported
 * __libc_* entry points, so there is no dlsym bootstrapping (dlsym itself allocates). The
 * SIGUSR2 handler uses only write(2); the counters are relaxed atomics. perf/run compiles this
 * file itself; tests/unit/support/counting_malloc.cpp is the unit tests' in-process
 * counterpart (zero allocations outside libcurl), this one counts libcurl too. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);
extern void __libc_free(void*);

static uint64_t n_malloc, n_calloc, n_realloc, n_memalign, n_free;
static int out_fd = -1;

#define COUNT(c) __atomic_fetch_add(&(c), 1, __ATOMIC_RELAXED)
#define LOAD(c) __atomic_load_n(&(c), __ATOMIC_RELAXED)

void* malloc(size_t n) {
  COUNT(n_malloc);
  return __libc_malloc(n);
}

void* calloc(size_t k, size_t n) {
  COUNT(n_calloc);
  return __libc_calloc(k, n);
}

void* realloc(void* p, size_t n) {
  COUNT(n_realloc);
  return __libc_realloc(p, n);
}

void free(void* p) {
  if (p != NULL) COUNT(n_free);
  __libc_free(p);
}

void* memalign(size_t align, size_t n) {
  COUNT(n_memalign);
  return __libc_memalign(align, n);
}

void* aligned_alloc(size_t align, size_t n) {
  COUNT(n_memalign);
  return __libc_memalign(align, n);
}

void* valloc(size_t n) {
  COUNT(n_memalign);
  return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), n);
}

int posix_memalign(void** out, size_t align, size_t n) {
  COUNT(n_memalign);
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  void* p = __libc_memalign(align, n);
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

/* Async-signal-safe: digits by hand, one write(2). */
static char* put_num(char* at, const char* key, uint64_t v) {
  char digits[24];
  int n = 0;
  while (*key) *at++ = *key++;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) *at++ = digits[--n];
  return at;
}

static void report(void) {
  if (out_fd < 0) return;
  char line[256];
  uint64_t m = LOAD(n_malloc), c = LOAD(n_calloc), r = LOAD(n_realloc), a = LOAD(n_memalign);
  char* at = put_num(line, "allocs=", m + c + r + a);
  at = put_num(at, " frees=", LOAD(n_free));
  at = put_num(at, " malloc=", m);
  at = put_num(at, " calloc=", c);
  at = put_num(at, " realloc=", r);
  at = put_num(at, " memalign=", a);
  *at++ = '\n';
  ssize_t ignored = write(out_fd, line, (size_t)(at - line));
  (void)ignored;
}

static void on_usr2(int sig) {
  (void)sig;
  int saved = errno;
  report();
  errno = saved;
}

__attribute__((constructor)) static void start(void) {
  const char* path = getenv("PERF_MALLOC_COUNT_OUT");
  if (path == NULL || *path == '\0') return;
  out_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr2;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, NULL);
}

__attribute__((destructor)) static void finish(void) {
  report();
}
