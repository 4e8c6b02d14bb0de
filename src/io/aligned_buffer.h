// Heap buffer aligned for O_DIRECT.
#ifndef TIERFS_SRC_IO_ALIGNED_BUFFER_H_
#define TIERFS_SRC_IO_ALIGNED_BUFFER_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>

namespace tierfs::io {

// Alignment (offset, length and memory) that O_DIRECT needs on every
// filesystem we support; 4096 covers 512e and 4Kn devices.
inline constexpr size_t kDirectIoAlignment = 4096;

constexpr uint64_t AlignDown(uint64_t x, uint64_t a) { return x & ~(a - 1); }
constexpr uint64_t AlignUp(uint64_t x, uint64_t a) {
  return (x + a - 1) & ~(a - 1);
}
inline bool IsAligned(const void* p, size_t a) {
  return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0;
}

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // Size is rounded up to the alignment. Contents are zeroed unless `zero`
  // is false (for buffers that are about to be overwritten anyway).
  explicit AlignedBuffer(size_t size, bool zero = true)
      : size_(AlignUp(size, kDirectIoAlignment)) {
    if (size_ == 0) return;
    void* p = std::aligned_alloc(kDirectIoAlignment, size_);
    if (p == nullptr) throw std::bad_alloc();
    data_.reset(static_cast<std::byte*>(p));
    if (zero) std::fill(data_.get(), data_.get() + size_, std::byte{0});
  }

  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }
  std::span<std::byte> span() { return {data_.get(), size_}; }
  std::span<std::byte> span(size_t off, size_t len) {
    return {data_.get() + off, len};
  }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> data_;
  size_t size_ = 0;
};

}  // namespace tierfs::io

#endif  // TIERFS_SRC_IO_ALIGNED_BUFFER_H_
