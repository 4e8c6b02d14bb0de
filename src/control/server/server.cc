#include "src/control/server/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <exception>

#include "src/util/log.h"

namespace tierfs::control {
namespace {

bool WriteAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

// File and directory names need not be UTF-8, JSON strings must be: bytes
// that are not valid UTF-8 are shown as U+FFFD instead of making dump()
// throw (which would end the daemon).
std::string Dump(const nlohmann::json& reply) {
  return reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";
}

}  // namespace

std::unique_ptr<ControlServer> ControlServer::Start(const std::string& path,
                                                    cache::CacheEngine* engine,
                                                    DaemonInfo info,
                                                    std::string* error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    *error = "control socket path too long: " + path;
    return nullptr;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return nullptr;
  }
  ::unlink(path.c_str());  // a stale socket of a dead daemon
  // Only the owner may connect: the kernel enforces it on connect().
  mode_t old = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old);
  if (rc != 0 || ::listen(fd, 16) != 0) {
    *error = "cannot listen on " + path + ": " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  ::chmod(path.c_str(), 0600);
  return std::unique_ptr<ControlServer>(
      new ControlServer(fd, path, engine, std::move(info)));
}

ControlServer::ControlServer(int fd, std::string path,
                             cache::CacheEngine* engine, DaemonInfo info)
    : listen_fd_(fd),
      path_(std::move(path)),
      engine_(engine),
      info_(std::move(info)) {
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

ControlServer::~ControlServer() {
  stopping_.store(true);
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  ::unlink(path_.c_str());
  std::list<Connection> connections;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Connection& c : connections_) ::shutdown(c.fd, SHUT_RDWR);
    connections.swap(connections_);
  }
  for (Connection& c : connections) c.thread.join();
}

void ControlServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    // Reap finished connections.
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->done) {
        it->thread.join();
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
    if (connections_.size() >= kMaxConnections) {
      WriteAll(
          fd, Dump({{"ok", false}, {"error", "too many control connections"}}));
      ::close(fd);
      continue;
    }
    connections_.push_back(Connection{fd, {}});
    Connection* c = &connections_.back();
    c->thread = std::thread([this, c] {
      Serve(c->fd);
      std::lock_guard<std::mutex> lock(mu_);
      ::close(c->fd);
      c->done = true;
    });
  }
}

void ControlServer::Serve(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return;
  std::string buffer;
  char chunk[4096];
  while (!stopping_.load()) {
    size_t newline;
    while ((newline = buffer.find('\n')) == std::string::npos) {
      if (buffer.size() > kMaxLine) {
        WriteAll(fd, Dump({{"ok", false}, {"error", "request line too long"}}));
        return;
      }
      ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      buffer.append(chunk, static_cast<size_t>(n));
    }
    std::string line = buffer.substr(0, newline);
    buffer.erase(0, newline + 1);
    nlohmann::json reply;
    nlohmann::json request =
        nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (request.is_discarded()) {
      reply = {{"ok", false}, {"error", "malformed JSON request"}};
    } else {
      // A bug in one request must not take the daemon (and the mount) down.
      try {
        reply = HandleRequest(*engine_, info_, request, cred.uid);
      } catch (const std::exception& e) {
        TIERFS_LOG_ERROR("control request failed: %s", e.what());
        reply = {{"ok", false},
                 {"error", std::string("internal error: ") + e.what()}};
      }
    }
    if (!WriteAll(fd, Dump(reply))) return;
  }
}

}  // namespace tierfs::control
