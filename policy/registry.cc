#include "policy/registry.h"

#include "policy/cleaner.h"
#include "policy/smq.h"
#include "policy/tinylfu.h"

namespace tierfs::policy {
namespace {

// Entry indices are 32-bit: leave room for hotspots and sentinels.
constexpr uint64_t kMaxCacheBlocks = (uint64_t{1} << 31);

}  // namespace

std::vector<std::string> PolicyNames() {
  return {"smq", "cleaner", "lru", "tinylfu"};
}

Result<std::unique_ptr<Policy>> CreatePolicy(std::string_view name,
                                             const PolicyParams& params,
                                             const ConfigValues& config,
                                             std::string* error_message) {
  auto fail = [&](std::string text) -> std::error_code {
    if (error_message != nullptr) *error_message = std::move(text);
    return ErrnoCode(EINVAL);
  };
  if (name != "smq" && name != "cleaner" && name != "lru" &&
      name != "tinylfu") {
    return fail("unknown policy '" + std::string(name) +
                "' (smq, cleaner, lru, tinylfu)");
  }
  if (params.cache_blocks == 0 || params.cache_blocks > kMaxCacheBlocks ||
      params.block_size == 0 ||
      (params.block_size & (params.block_size - 1)) != 0) {
    return fail("bad policy parameters");
  }
  std::unique_ptr<Policy> policy;
  if (name == "cleaner") {
    policy = NewCleanerPolicy(params);
  } else if (name == "tinylfu") {
    policy = std::make_unique<TinyLfuPolicy>(params);
  } else {
    policy = std::make_unique<SmqPolicy>(
        name == "smq" ? SmqPolicy::Variant::kSmq : SmqPolicy::Variant::kLru,
        params);
  }
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
  return policy;
}

}  // namespace tierfs::policy
