// Fixed-size buffer blocks with a free list, so that steady-state request handling reuses
// memory instead of allocating. A connection holds blocks only while it has a request or a
// response in flight and hands them back when it goes idle; the pool keeps at most
// `max_free` spare blocks and frees the rest, so a burst does not pin memory forever.
#pragma once

#include <cstddef>

namespace core {

template <size_t Size>
class block_pool {
 public:
  struct block {
    block* next;
    char data[Size];
  };
  static constexpr size_t block_size = Size;

  explicit block_pool(size_t max_free) : max_free_(max_free) {}
  ~block_pool() {
    while (free_ != nullptr) {
      block* b = free_;
      free_ = b->next;
      delete b;
    }
  }
  block_pool(const block_pool&) = delete;
  block_pool& operator=(const block_pool&) = delete;

  block* acquire() {
    ++in_use_;
    if (free_ == nullptr) return new block;
    block* b = free_;
    free_ = b->next;
    --free_count_;
    return b;
  }

  void release(block* b) {
    --in_use_;
    if (free_count_ >= max_free_) {
      delete b;
      return;
    }
    b->next = free_;
    free_ = b;
    ++free_count_;
  }

  size_t in_use() const { return in_use_; }
  size_t free_count() const { return free_count_; }

 private:
  block* free_ = nullptr;
  size_t free_count_ = 0;
  size_t in_use_ = 0;
  size_t max_free_;
};

}  // namespace core
