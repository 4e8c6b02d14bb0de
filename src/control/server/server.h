// The daemon's control socket: a unix stream socket (mode 0600, owned by the
// mounting user) speaking the JSON-lines protocol of protocol.h. Each
// connection is served by its own thread, so a long `flush` does not block
// `stats` from another client.
#ifndef TIERFS_SRC_CONTROL_SERVER_SERVER_H_
#define TIERFS_SRC_CONTROL_SERVER_SERVER_H_

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "src/control/server/protocol.h"

namespace tierfs::control {

class ControlServer {
 public:
  // Longest request line accepted; longer ones get an error and are closed.
  static constexpr size_t kMaxLine = 64 * 1024;
  static constexpr int kMaxConnections = 16;

  // Binds `path` (replacing a stale socket file) and starts serving.
  static std::unique_ptr<ControlServer> Start(const std::string& path,
                                              cache::CacheEngine* engine,
                                              DaemonInfo info,
                                              std::string* error);
  ~ControlServer();  // stops accepting, closes connections, joins threads

 private:
  ControlServer(int fd, std::string path, cache::CacheEngine* engine,
                DaemonInfo info);
  void AcceptLoop();
  void Serve(int fd);

  const int listen_fd_;
  const std::string path_;
  cache::CacheEngine* const engine_;
  const DaemonInfo info_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  struct Connection {
    int fd;
    std::thread thread;
    bool done = false;
  };
  std::list<Connection> connections_;  // guarded by mu_
};

}  // namespace tierfs::control

#endif  // TIERFS_SRC_CONTROL_SERVER_SERVER_H_
