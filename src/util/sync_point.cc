#include "src/util/sync_point.h"

#include <map>
#include <memory>
#include <mutex>

namespace tierfs::sync_point {

std::atomic<bool> g_any{false};

namespace {

std::mutex& Mutex() {
  static std::mutex mu;
  return mu;
}

// Shared so a callback keeps running after ClearAll.
std::map<std::string, std::shared_ptr<Callback>>& Points() {
  static std::map<std::string, std::shared_ptr<Callback>> points;
  return points;
}

}  // namespace

void Set(const std::string& point, Callback callback) {
  std::lock_guard<std::mutex> lock(Mutex());
  Points()[point] = std::make_shared<Callback>(std::move(callback));
  g_any.store(true);
}

void ClearAll() {
  std::lock_guard<std::mutex> lock(Mutex());
  Points().clear();
  g_any.store(false);
}

void Reached(const char* point, void* arg) {
  std::shared_ptr<Callback> callback;
  {
    std::lock_guard<std::mutex> lock(Mutex());
    auto it = Points().find(point);
    if (it == Points().end()) return;
    callback = it->second;
  }
  (*callback)(arg);
}

}  // namespace tierfs::sync_point
