// A small named value kept on a directory as an extended attribute, durable
// once set (the directory is fsynced). tierfs marks the slow dir with the
// cache that fronts it, so a lost fast dir is noticed.
#ifndef TIERFS_SRC_IO_DIR_ATTRIBUTE_H_
#define TIERFS_SRC_IO_DIR_ATTRIBUTE_H_

#include <string>

#include "src/util/result.h"

namespace tierfs::io {

// `name` without namespace: stored as trusted.NAME for root (invisible to
// other users) and user.NAME otherwise. `dirfd` may be an O_PATH fd.
// Absent: ENODATA; a filesystem without xattrs: ENOTSUP.
Result<std::string> GetDirAttribute(int dirfd, const std::string& name);
Status SetDirAttribute(int dirfd, const std::string& name,
                       const std::string& value);

}  // namespace tierfs::io

#endif  // TIERFS_SRC_IO_DIR_ATTRIBUTE_H_
