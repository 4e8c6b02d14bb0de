#include "src/fuse/session.h"

#include "src/fuse/filesystem.h"

namespace tierfs::fusefs {

std::unique_ptr<Session> Session::Create(int slow_dir_fd,
                                         const std::string& slow_dir,
                                         cache::CacheEngine* engine,
                                         const SessionOptions& options,
                                         std::string* error) {
  FilesystemOptions fs_options;
  fs_options.engine = engine;
  fs_options.slow_dir = slow_dir;
  auto fs = std::make_unique<Filesystem>(slow_dir_fd, fs_options);

  std::vector<std::string> args = {"tierfs"};
  std::string opts =
      "default_permissions,fsname=tierfs:" + slow_dir + ",subtype=tierfs";
  if (options.allow_other) opts += ",allow_other";
  for (const std::string& o : options.fuse_options) opts += "," + o;
  args.push_back("-o");
  args.push_back(opts);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_session* se = fuse_session_new(&fargs, &Filesystem::Operations(),
                                      sizeof(fuse_lowlevel_ops), fs.get());
  if (se == nullptr) {
    *error = "invalid mount options: -o " + opts;
    return nullptr;
  }
  fs->set_session(se);
  return std::unique_ptr<Session>(
      new Session(std::move(fs), se, options.max_threads));
}

Session::Session(std::unique_ptr<Filesystem> fs, fuse_session* session,
                 unsigned max_threads)
    : fs_(std::move(fs)), session_(session), max_threads_(max_threads) {}

Session::~Session() { fuse_session_destroy(session_); }

bool Session::Mount(const std::string& mountpoint) {
  return fuse_session_mount(session_, mountpoint.c_str()) == 0;
}

bool Session::CatchStopSignals() {
  return fuse_set_signal_handlers(session_) == 0;
}

int Session::Loop() {
  fuse_loop_config* loop = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(loop, max_threads_);
  fuse_loop_cfg_set_idle_threads(loop, max_threads_);
  const int rc = fuse_session_loop_mt(session_, loop);
  fuse_loop_cfg_destroy(loop);
  fuse_remove_signal_handlers(session_);
  return rc;
}

void Session::Unmount() { fuse_session_unmount(session_); }

}  // namespace tierfs::fusefs
