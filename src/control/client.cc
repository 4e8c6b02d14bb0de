#include "src/control/client.h"

#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <vector>

#include "src/util/runtime_paths.h"

namespace tierfs::control {

std::optional<std::string> FindSocket(const std::string& mountpoint,
                                      std::string* error) {
  std::string state;
  if (!mountpoint.empty()) {
    char buf[PATH_MAX];
    std::string path = ::realpath(mountpoint.c_str(), buf) ? buf : mountpoint;
    state = MountStatePath(path);
    if (::access(state.c_str(), R_OK) != 0) {
      *error = "no tierfs mount on " + path;
      return std::nullopt;
    }
  } else {
    std::vector<std::string> found;
    const std::string dir = RuntimeDir();
    if (DIR* d = ::opendir(dir.c_str())) {
      while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.size() > 6 && name.substr(name.size() - 6) == ".mount") {
          found.push_back(dir + "/" + name);
        }
      }
      ::closedir(d);
    }
    if (found.empty()) {
      *error = "no tierfs mount found (looked in " + dir + ")";
      return std::nullopt;
    }
    if (found.size() > 1) {
      *error = "several tierfs mounts; pick one with -m:";
      for (const std::string& f : found) {
        *error += " " + ReadKeyValues(f)["mountpoint"];
      }
      return std::nullopt;
    }
    state = found[0];
  }
  auto values = ReadKeyValues(state);
  if (values["socket"].empty()) {
    *error = "the mount on " + values["mountpoint"] + " has no control socket";
    return std::nullopt;
  }
  return values["socket"];
}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

bool Client::Connect(const std::string& path, std::string* error) {
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (fd_ < 0 || path.size() >= sizeof(addr.sun_path)) {
    *error = "cannot use control socket " + path;
    return false;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno == EACCES || errno == EPERM) {
      *error =
          "permission denied: only root or the user who mounted the "
          "tier may use its control socket (" +
          path + ")";
    } else {
      *error =
          "cannot reach the daemon at " + path + ": " + std::strerror(errno);
    }
    return false;
  }
  return true;
}

std::optional<nlohmann::json> Client::Call(const nlohmann::json& request,
                                           std::string* error) {
  std::string line = request.dump() + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    ssize_t n =
        ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = "lost the connection to the daemon";
      return std::nullopt;
    }
    sent += static_cast<size_t>(n);
  }
  size_t newline;
  char chunk[4096];
  while ((newline = pending_.find('\n')) == std::string::npos) {
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = "the daemon closed the connection";
      return std::nullopt;
    }
    pending_.append(chunk, static_cast<size_t>(n));
  }
  std::string reply = pending_.substr(0, newline);
  pending_.erase(0, newline + 1);
  nlohmann::json parsed = nlohmann::json::parse(reply, nullptr, false);
  if (parsed.is_discarded()) {
    *error = "malformed reply from the daemon";
    return std::nullopt;
  }
  return parsed;
}

std::optional<nlohmann::json> Client::CallOk(const nlohmann::json& request,
                                             std::string* error) {
  std::optional<nlohmann::json> reply = Call(request, error);
  if (!reply) return std::nullopt;
  if (!reply->value("ok", false)) {
    *error = reply->value("error", std::string("failed"));
    return std::nullopt;
  }
  return reply;
}

}  // namespace tierfs::control
