// Client side of the control protocol (server/protocol.h), shared by
// tierfs-ctl and `tierfs umount --flush`. Needs nothing of the daemon: no
// engine, no Boost, no libfuse.
#ifndef TIERFS_SRC_CONTROL_CLIENT_CLIENT_H_
#define TIERFS_SRC_CONTROL_CLIENT_CLIENT_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace tierfs::control {

// The control socket of the tier mounted on `mountpoint`, or of the only
// mount when `mountpoint` is empty. On failure says why in *error.
std::optional<std::string> FindSocket(const std::string& mountpoint,
                                      std::string* error);

class Client {
 public:
  Client() = default;
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool Connect(const std::string& socket_path, std::string* error);
  // Sends one request and waits for its reply line.
  std::optional<nlohmann::json> Call(const nlohmann::json& request,
                                     std::string* error);
  // Like Call, but a reply with "ok": false is an error (its message).
  std::optional<nlohmann::json> CallOk(const nlohmann::json& request,
                                       std::string* error);

 private:
  int fd_ = -1;
  std::string pending_;  // bytes received after the last reply line
};

}  // namespace tierfs::control

#endif  // TIERFS_SRC_CONTROL_CLIENT_CLIENT_H_
