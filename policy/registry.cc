#include "policy/registry.h"

#include "policy/queue_policy.h"

namespace tierfs::policy {

std::vector<std::string> PolicyNames() { return {"smq", "cleaner", "lru"}; }

Result<std::unique_ptr<Policy>> CreatePolicy(std::string_view name,
                                             const PolicyParams& params,
                                             const ConfigValues& config,
                                             std::string* error_message) {
  auto fail = [&](std::string text) -> std::error_code {
    if (error_message != nullptr) *error_message = std::move(text);
    return ErrnoCode(EINVAL);
  };
  QueuePolicy::Kind kind;
  if (name == "smq") {
    kind = QueuePolicy::Kind::kSmq;
  } else if (name == "cleaner") {
    kind = QueuePolicy::Kind::kCleaner;
  } else if (name == "lru") {
    kind = QueuePolicy::Kind::kLru;
  } else {
    return fail("unknown policy '" + std::string(name) +
                "' (smq, cleaner, lru)");
  }
  if (params.cache_blocks == 0 || params.cache_blocks >= UINT32_MAX ||
      params.block_size == 0 ||
      (params.block_size & (params.block_size - 1)) != 0) {
    return fail("bad policy parameters");
  }
  auto policy = std::make_unique<QueuePolicy>(kind, params);
  for (const auto& [key, value] : config) {
    Status st = policy->SetConfigValue(key, value);
    if (!st.ok()) {
      return fail(st.error().value() == ENOENT
                      ? "policy " + std::string(name) + " has no config key '" +
                            key + "'"
                      : "policy " + std::string(name) + ": bad value '" +
                            value + "' for " + key);
    }
  }
  return std::unique_ptr<Policy>(std::move(policy));
}

}  // namespace tierfs::policy
