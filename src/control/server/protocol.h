// The control protocol, daemon side (the client side is client/client.h):
// one JSON object per line each way over a unix socket. Requests are
// {"cmd": NAME, ...}; replies are {"ok": true, ...} or
// {"ok": false, "error": MESSAGE}. Commands:
//   stats                          -> "stats": {...}     (read-only)
//   volumes                        -> "volumes": [...]   (read-only)
//   get [key]                      -> "tunables": [{key, value, help}]
//   set key value                  -> changes one tunable
//   policy name                    -> switches policy, keeping mappings
//   flush [timeout_ms]             -> writes back every dirty block
//   invalidate [volume]            -> drops clean mappings ("dropped": N)
// Stable stats keys are documented in tierfs-ctl(8).
#ifndef TIERFS_SRC_CONTROL_SERVER_PROTOCOL_H_
#define TIERFS_SRC_CONTROL_SERVER_PROTOCOL_H_

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>

#include "src/cache/engine.h"

namespace tierfs::control {

struct DaemonInfo {
  std::string mountpoint, fast_dir, slow_dir;
  uid_t owner = 0;  // the mounting user: may change settings (and root)
};

// Answers one request. `peer_uid` is the caller's uid (SO_PEERCRED).
nlohmann::json HandleRequest(cache::CacheEngine& engine, const DaemonInfo& info,
                             const nlohmann::json& request, uid_t peer_uid);

// The "stats" object (client/prometheus.h renders it for Prometheus).
nlohmann::json StatsJson(cache::CacheEngine& engine, const DaemonInfo& info);

}  // namespace tierfs::control

#endif  // TIERFS_SRC_CONTROL_SERVER_PROTOCOL_H_
