#include "src/cache/io_gate.h"

namespace tierfs::cache {

bool IoGate::Enter(Continuation& retry) {
  // Sequentially consistent on both sides: either Close() sees this request
  // inside, or this request sees the gate closed.
  inside_.fetch_add(1);
  if (!closed_.load()) return true;
  std::lock_guard<std::mutex> lock(mu_);
  if (!closed_.load()) return true;  // opened meanwhile
  waiting_.push_back(std::move(retry));
  if (inside_.fetch_sub(1) == 1) cv_.notify_all();
  return false;
}

bool IoGate::TryEnter() {
  inside_.fetch_add(1);
  if (!closed_.load()) return true;
  Leave();
  return false;
}

void IoGate::Leave() {
  if (inside_.fetch_sub(1) == 1 && closed_.load()) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
}

void IoGate::Close() {
  std::unique_lock<std::mutex> lock(mu_);
  closed_.store(true);
  cv_.wait(lock, [this] { return inside_.load() == 0; });
}

std::vector<IoGate::Continuation> IoGate::Open() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_.store(false);
  std::vector<Continuation> out;
  out.swap(waiting_);
  return out;
}

}  // namespace tierfs::cache
