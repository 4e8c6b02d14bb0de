// Creates policies by name: "tinylfu" (default), "smq", "cleaner", "lru".
#ifndef TIERFS_POLICY_REGISTRY_H_
#define TIERFS_POLICY_REGISTRY_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.h"

namespace tierfs::policy {

// Unknown names, keys or values fail with EINVAL and a message in
// *error_message (when given).
Result<std::unique_ptr<Policy>> CreatePolicy(std::string_view name,
                                             const PolicyParams& params,
                                             const ConfigValues& config,
                                             std::string* error_message);

std::vector<std::string> PolicyNames();

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_REGISTRY_H_
