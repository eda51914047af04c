#include "net/buffer.h"

#include <cstdlib>
#include <new>
#include <vector>

namespace trellis::net {
namespace {

// Per-thread LIFO of standard blocks: a recently freed block is still in cache.
struct BlockPool {
  std::vector<char*> free;
  ~BlockPool() {
    for (char* p : free) std::free(p);
  }
};
thread_local BlockPool t_pool;
constexpr size_t kMaxPooledBlocks = 256;

char* allocate(size_t size) {
  if (size == Buffer::kBlockSize && !t_pool.free.empty()) {
    char* p = t_pool.free.back();
    t_pool.free.pop_back();
    return p;
  }
  char* p = static_cast<char*>(std::malloc(size));
  if (p == nullptr) std::abort();  // out of memory: nothing sensible to do on the data path
  return p;
}

void deallocate(char* p, size_t size) {
  if (size == Buffer::kBlockSize && t_pool.free.size() < kMaxPooledBlocks) {
    t_pool.free.push_back(p);
    return;
  }
  std::free(p);
}

}  // namespace

char* Buffer::prepare(size_t n) {
  if (capacity_ - end_ >= n) return data_ + end_;
  size_t used = end_ - begin_;
  if (data_ != nullptr && capacity_ - used >= n && begin_ > 0) {
    std::memmove(data_, data_ + begin_, used);
    begin_ = 0;
    end_ = used;
    return data_ + end_;
  }
  size_t cap = capacity_ == 0 ? kBlockSize : capacity_ * 2;
  while (cap - used < n) cap *= 2;
  char* fresh = allocate(cap);
  if (used > 0 && data_ != nullptr) std::memcpy(fresh, data_ + begin_, used);
  if (data_) deallocate(data_, capacity_);
  data_ = fresh;
  capacity_ = cap;
  begin_ = 0;
  end_ = used;
  return data_ + end_;
}

void Buffer::free_pool() {
  for (char* p : t_pool.free) std::free(p);
  t_pool.free.clear();
  t_pool.free.shrink_to_fit();
}

void Buffer::release() {
  if (data_) deallocate(data_, capacity_);
  data_ = nullptr;
  begin_ = end_ = capacity_ = 0;
}

void Buffer::append_decimal(unsigned long long v) {
  char tmp[24];
  int i = sizeof(tmp);
  do {
    tmp[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  append(std::string_view(tmp + i, sizeof(tmp) - i));
}

void Buffer::append_hex(unsigned long long v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char tmp[20];
  int i = sizeof(tmp);
  do {
    tmp[--i] = kDigits[v & 15];
    v >>= 4;
  } while (v);
  append(std::string_view(tmp + i, sizeof(tmp) - i));
}

}  // namespace trellis::net
