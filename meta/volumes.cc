#include "meta/volumes.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>

#include "src/util/log.h"

namespace tierfs::meta {
namespace {

// Bounds the search for renamed files in a huge slow dir.
constexpr uint64_t kMaxSearchEntries = 1000000;

Result<std::unique_ptr<io::File>> OpenBeneath(io::Env* env, int dirfd,
                                              const std::string& path) {
  io::OpenOptions options;
  options.write = true;
  options.beneath = true;
  return env->OpenAt(dirfd, path, options);
}

// Collects relative paths of regular files whose inode number is wanted.
void Search(int dirfd, const std::string& prefix,
            const std::map<uint64_t, size_t>& wanted,
            std::map<uint64_t, std::vector<std::string>>* found,
            uint64_t* budget) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return;
  }
  while (dirent* e = ::readdir(dir)) {
    if (*budget == 0) break;
    --*budget;
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = prefix.empty() ? name : prefix + "/" + name;
    if (e->d_type == DT_DIR) {
      int sub = ::openat(::dirfd(dir), name.c_str(),
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) {
        Search(sub, path, wanted, found, budget);
        ::close(sub);
      }
    } else if ((e->d_type == DT_REG || e->d_type == DT_UNKNOWN) &&
               wanted.count(e->d_ino)) {
      (*found)[e->d_ino].push_back(path);
    }
  }
  ::closedir(dir);
}

}  // namespace

const char* VolumeStateName(VolumeState state) {
  switch (state) {
    case VolumeState::kAttached:
      return "attached";
    case VolumeState::kChanged:
      return "changed";
    case VolumeState::kMissing:
      return "missing";
  }
  return "?";
}

VolumeRecord RecordFor(VolumeId id, const io::FileStat& stat,
                       std::string path) {
  VolumeRecord r;
  r.id = id;
  r.ino = stat.ino;
  r.generation = stat.generation;
  r.btime_ns = stat.btime_ns;
  r.size = stat.size;
  r.mtime_ns = stat.mtime_ns;
  r.path = std::move(path);
  return r;
}

std::vector<ResolvedVolume> ResolveVolumes(
    io::Env* env, int slow_dirfd, const std::vector<VolumeRecord>& records,
    bool check_changes) {
  std::vector<ResolvedVolume> out(records.size());
  auto try_path = [&](ResolvedVolume& v, const std::string& path) {
    Result<std::unique_ptr<io::File>> file = OpenBeneath(env, slow_dirfd, path);
    if (!file.ok()) return false;
    Result<io::FileStat> st = (*file)->Stat();
    if (!st.ok() || !v.record.SameFile(RecordFor(v.record.id, *st, path))) {
      return false;
    }
    v.origin = std::move(file).value();
    v.stat = *st;
    v.record.path = path;
    return true;
  };
  std::map<uint64_t, size_t> wanted;  // inode number -> index in out
  for (size_t i = 0; i < records.size(); ++i) {
    out[i].record = records[i];
    if (!try_path(out[i], records[i].path)) wanted[records[i].ino] = i;
  }
  if (!wanted.empty()) {
    std::map<uint64_t, std::vector<std::string>> found;
    uint64_t budget = kMaxSearchEntries;
    Search(slow_dirfd, "", wanted, &found, &budget);
    for (const auto& [ino, index] : wanted) {
      for (const std::string& path : found[ino]) {
        if (try_path(out[index], path)) {
          TIERFS_LOG_INFO("volume %u (%s) found renamed as %s",
                          records[index].id.value(),
                          records[index].path.c_str(), path.c_str());
          break;
        }
      }
    }
  }
  for (ResolvedVolume& v : out) {
    if (!v.origin) {
      v.state = VolumeState::kMissing;
      v.why =
          "no file with its identity in the slow dir (deleted or "
          "replaced while unmounted)";
    } else if (check_changes && (v.stat.size != v.record.size ||
                                 v.stat.mtime_ns != v.record.mtime_ns)) {
      v.state = VolumeState::kChanged;
      v.why = "size or modification time changed while unmounted";
    } else {
      v.state = VolumeState::kAttached;
    }
  }
  return out;
}

}  // namespace tierfs::meta
