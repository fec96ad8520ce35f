// Counts heap allocations made by one thread, for the "no allocation per request / per poll"
// tests. Linking counting_malloc.cpp into a test binary replaces malloc, calloc and realloc
// with wrappers around glibc's own (so: no sanitizers, which own the allocator).
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdint>

namespace alloc_count {

// Counts allocations made by `thread` from now on, until stop(); stop() returns how many.
void start(pthread_t thread);
uint64_t stop();

// glibc's allocator, uncounted (for a library whose allocations are not under test).
void* raw_malloc(size_t n);
void* raw_calloc(size_t n, size_t m);
void* raw_realloc(void* p, size_t n);
void raw_free(void* p);

}  // namespace alloc_count
