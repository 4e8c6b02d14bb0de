// The cleaner policy (dm-cache's "cleaner"): smq that never promotes and
// writes back every dirty block, idle or not. Switch to it before taking
// the cache away; hits are still served meanwhile. It demotes only what a
// lowered capacity (Policy::SetCapacity) no longer holds: a thin cache's
// byte budget binds the cleaner too.
#ifndef TIERFS_POLICY_CLEANER_H_
#define TIERFS_POLICY_CLEANER_H_

#include <memory>

#include "policy/policy.h"

namespace tierfs::policy {

std::unique_ptr<Policy> NewCleanerPolicy(const PolicyParams& params);

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_CLEANER_H_
