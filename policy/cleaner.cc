#include "policy/cleaner.h"

#include "policy/smq.h"

namespace tierfs::policy {

std::unique_ptr<Policy> NewCleanerPolicy(const PolicyParams& params) {
  return std::make_unique<SmqPolicy>(SmqPolicy::Variant::kCleaner, params);
}

}  // namespace tierfs::policy
