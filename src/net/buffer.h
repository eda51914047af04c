// A contiguous byte buffer with a read cursor, for socket input and output.
// Storage of the standard size comes from a per-thread free list, so a worker
// that opens and closes connections does not go back to malloc for each one,
// and an idle connection can hand its memory back (release()).
#pragma once

#include <cstddef>
#include <cstring>
#include <string_view>

namespace trellis::net {

class Buffer {
 public:
  static constexpr size_t kBlockSize = 16 * 1024;

  Buffer() = default;
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      swap(o);
    }
    return *this;
  }

  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  const char* data() const { return data_ + begin_; }
  std::string_view view() const { return {data_ + begin_, end_ - begin_}; }

  void consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() { begin_ = end_ = 0; }

  // Space to write at least `n` bytes at the end; moves data to the front or grows.
  char* prepare(size_t n);
  // Writable bytes available at the end without growing (after prepare()).
  size_t tail_room() const { return capacity_ - end_; }
  char* tail() { return data_ + end_; }
  void commit(size_t n) { end_ += n; }

  void append(std::string_view s) {
    if (s.empty()) return;  // (its data() may be null, which memcpy may not take)
    char* p = prepare(s.size());
    std::memcpy(p, s.data(), s.size());
    end_ += s.size();
  }
  void append(char c) {
    *prepare(1) = c;
    ++end_;
  }
  void append_decimal(unsigned long long v);
  void append_hex(unsigned long long v);

  // Returns the storage (to the per-thread pool when it is a standard block).
  void release();
  // Frees the calling thread's pooled blocks (memory runs short).
  static void free_pool();
  size_t capacity() const { return capacity_; }

 private:
  void swap(Buffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(begin_, o.begin_);
    std::swap(end_, o.end_);
    std::swap(capacity_, o.capacity_);
  }
  char* data_ = nullptr;
  size_t begin_ = 0;
  size_t end_ = 0;
  size_t capacity_ = 0;
};

}  // namespace trellis::net
