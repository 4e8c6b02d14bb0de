// Finds the origin files of recorded volumes in the slow dir at mount, and
// decides whether each is still the same file (DESIGN.md "Durability
// contract": cached blocks never attach to a different file that reused a
// name or an inode number).
#ifndef TIERFS_META_VOLUMES_H_
#define TIERFS_META_VOLUMES_H_

#include <memory>
#include <string>
#include <vector>

#include "meta/format.h"
#include "src/io/file.h"

namespace tierfs::meta {

enum class VolumeState {
  kAttached,  // the same file, unchanged (or not checkable after a crash)
  kChanged,   // the same file, but its size or mtime changed while unmounted
  kMissing,   // no file with this identity in the slow dir
};
const char* VolumeStateName(VolumeState state);

struct ResolvedVolume {
  VolumeRecord record;  // path updated when found under another name
  VolumeState state = VolumeState::kMissing;
  std::string why;                   // for kChanged / kMissing
  std::shared_ptr<io::File> origin;  // open read-write unless kMissing
  io::FileStat stat;
};

// The record describing `stat`, as the journal stores it.
VolumeRecord RecordFor(VolumeId id, const io::FileStat& stat, std::string path);

// Opens each volume's origin beneath `slow_dirfd` (never through a symlink),
// by its recorded path, or else by searching the slow dir for its inode
// number (renamed while unmounted). `check_changes`: compare size and mtime
// too (only meaningful after a clean shutdown, before which tierfs itself
// wrote to the files).
std::vector<ResolvedVolume> ResolveVolumes(
    io::Env* env, int slow_dirfd, const std::vector<VolumeRecord>& records,
    bool check_changes);

}  // namespace tierfs::meta

#endif  // TIERFS_META_VOLUMES_H_
