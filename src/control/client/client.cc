#include "src/control/client/client.h"

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
namespace {

// /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(const std::string& field) {
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(field[i + 1]) &&
        octal(field[i + 2]) && octal(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 +
                                      (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

struct TierfsMount {
  std::string mountpoint;
  uid_t owner;  // the mounting user (FUSE's user_id= option)
};

// Every tierfs mount the kernel knows, whoever mounted it: a user whose
// runtime dir has no state file for a mount learns it is someone else's.
std::vector<TierfsMount> TierfsMounts() {
  std::vector<TierfsMount> out;
  std::ifstream in("/proc/self/mounts");
  std::string device, mountpoint, type, options, rest;
  while (in >> device >> mountpoint >> type >> options) {
    std::getline(in, rest);
    if (type != "fuse.tierfs") continue;
    TierfsMount m{UnescapeMountField(mountpoint), 0};
    const size_t at = ("," + options + ",").find(",user_id=");
    if (at != std::string::npos) {
      m.owner = static_cast<uid_t>(
          std::strtoul(options.c_str() + at + 8, nullptr, 10));
    }
    out.push_back(std::move(m));
  }
  return out;
}

bool IsTierfsMount(const std::string& path) {
  for (const TierfsMount& m : TierfsMounts()) {
    if (m.mountpoint == path) return true;
  }
  return false;
}

std::string NotYoursMessage(const TierfsMount& m) {
  return "permission denied: the tier on " + m.mountpoint +
         " was mounted by uid " + std::to_string(m.owner) +
         "; only root or that user may control it";
}

}  // namespace

std::optional<std::string> FindSocket(const std::string& mountpoint,
                                      std::string* error) {
  std::string state;
  if (!mountpoint.empty()) {
    char buf[PATH_MAX];
    std::string path = ::realpath(mountpoint.c_str(), buf) ? buf : mountpoint;
    state = MountStatePath(path);
    if (::access(state.c_str(), R_OK) != 0) {
      *error = "no tierfs mount on " + path;
      for (const TierfsMount& m : TierfsMounts()) {
        if (m.mountpoint == path && m.owner != ::geteuid()) {
          *error = NotYoursMessage(m);
        }
      }
      return std::nullopt;
    }
    if (!IsTierfsMount(path)) {
      *error = "no tierfs mount on " + path + " (" + state +
               " is left from a daemon that ended without unmounting)";
      return std::nullopt;
    }
  } else {
    std::vector<std::string> found;
    const std::string dir = RuntimeDir();
    if (DIR* d = ::opendir(dir.c_str())) {
      while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.size() > 6 && name.substr(name.size() - 6) == ".mount") {
          // A daemon killed with -9 leaves its state file behind; it is
          // not a mount to choose from.
          const std::string path = dir + "/" + name;
          if (IsTierfsMount(ReadKeyValues(path)["mountpoint"])) {
            found.push_back(path);
          }
        }
      }
      ::closedir(d);
    }
    if (found.empty()) {
      *error = "no tierfs mount found (looked in " + dir + ")";
      for (const TierfsMount& m : TierfsMounts()) {
        if (m.owner != ::geteuid()) {
          *error = NotYoursMessage(m);
          break;
        }
      }
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
