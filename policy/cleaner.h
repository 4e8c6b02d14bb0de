// The cleaner policy (dm-cache's "cleaner"): smq that never promotes or
// demotes and writes back every dirty block, idle or not. Switch to it
// before taking the cache away; hits are still served meanwhile.
#ifndef TIERFS_POLICY_CLEANER_H_
#define TIERFS_POLICY_CLEANER_H_

#include <memory>

#include "policy/policy.h"

namespace tierfs::policy {

std::unique_ptr<Policy> NewCleanerPolicy(const PolicyParams& params);

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_CLEANER_H_
