// `tierfs-ctl stats --prometheus`: the daemon's "stats" reply in the
// Prometheus text exposition format (version 0.0.4). Client side: it reads
// only the JSON, so tierfs-ctl needs no part of the daemon.
#ifndef TIERFS_SRC_CONTROL_CLIENT_PROMETHEUS_H_
#define TIERFS_SRC_CONTROL_CLIENT_PROMETHEUS_H_

#include <nlohmann/json.hpp>
#include <string>

namespace tierfs::control {

// `stats` is the "stats" object of a stats reply (see server/protocol.h).
std::string PrometheusText(const nlohmann::json& stats);

}  // namespace tierfs::control

#endif  // TIERFS_SRC_CONTROL_CLIENT_PROMETHEUS_H_
