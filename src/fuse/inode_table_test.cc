// Tests of the inode table's bounded fd cache: inodes stay usable when their
// fds are closed, pinned fds are never closed, and the daemon's fd count does
// not grow with the number of inodes the kernel remembers.
#include "src/fuse/inode_table.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace tierfs::fusefs {
namespace {

constexpr size_t kMaxOpen = 8;

size_t OpenFds() {
  size_t n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  while (::readdir(dir) != nullptr) ++n;
  ::closedir(dir);
  return n;
}

ino_t InoOf(int fd) {
  struct stat st;
  if (::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    return 0;
  }
  return st.st_ino;
}

class InodeTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tierfs-inodes-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    for (int i = 0; i < kFiles; ++i) {
      ::close(::creat(Path("f" + std::to_string(i)).c_str(), 0644));
    }
    const int root = ::open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    // Closing fds needs open_by_handle_at (CAP_DAC_READ_SEARCH).
    alignas(file_handle) unsigned char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
    auto* handle = reinterpret_cast<file_handle*>(buf);
    handle->handle_bytes = MAX_HANDLE_SZ;
    int mount_id;
    const int dir = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const int probe =
        ::name_to_handle_at(root, "", handle, &mount_id, AT_EMPTY_PATH) == 0
            ? ::open_by_handle_at(dir, handle, O_PATH | O_CLOEXEC)
            : -1;
    handles_ = probe >= 0;
    if (probe >= 0) ::close(probe);
    ::close(dir);
    fds_before_ = OpenFds();
    table_ = std::make_unique<InodeTable>(root, kMaxOpen);
  }
  void TearDown() override {
    table_.reset();
    std::system(("rm -rf " + dir_).c_str());  // NOLINT
  }
  std::string Path(const std::string& name) { return dir_ + "/" + name; }
  Inode* Lookup(const std::string& name) {
    fuse_entry_param entry;
    EXPECT_EQ(table_->Lookup(table_->Root(), name.c_str(), &entry, 1.0), 0)
        << name;
    return table_->Get(entry.ino);
  }

  static constexpr int kFiles = 200;
  std::string dir_;
  bool handles_ = false;
  size_t fds_before_ = 0;
  std::unique_ptr<InodeTable> table_;
};

TEST_F(InodeTableTest, FdsStayBoundedAndInodesUsable) {
  if (!handles_) GTEST_SKIP() << "open_by_handle_at refused (no privilege)";
  std::vector<Inode*> inodes;
  for (int i = 0; i < kFiles; ++i) {
    inodes.push_back(Lookup("f" + std::to_string(i)));
  }
  // The root's fd was counted before; one more fd decodes handles.
  EXPECT_LE(OpenFds(), fds_before_ + kMaxOpen + 1);
  for (int i = 0; i < kFiles; ++i) {
    struct stat st;
    ASSERT_EQ(::stat(Path("f" + std::to_string(i)).c_str(), &st), 0);
    Result<InodeFd> fd = table_->Fd(inodes[i]);
    ASSERT_TRUE(fd.ok()) << fd.error().message();
    EXPECT_EQ(InoOf(fd->get()), st.st_ino);
  }
  EXPECT_LE(OpenFds(), fds_before_ + kMaxOpen + 1);
}

TEST_F(InodeTableTest, PinnedFdsAreNeverClosed) {
  std::vector<Inode*> inodes;
  for (int i = 0; i < kFiles; ++i) {
    inodes.push_back(Lookup("f" + std::to_string(i)));
  }
  // More pins than the bound: every one stays open and right.
  std::vector<InodeFd> pinned;
  std::vector<ino_t> inos;
  for (int i = 0; i < 3 * static_cast<int>(kMaxOpen); ++i) {
    Result<InodeFd> fd = table_->Fd(inodes[i]);
    ASSERT_TRUE(fd.ok());
    inos.push_back(InoOf(fd->get()));
    pinned.push_back(std::move(fd).value());
  }
  for (int i = 0; i < kFiles; ++i) ASSERT_TRUE(table_->Fd(inodes[i]).ok());
  for (size_t i = 0; i < pinned.size(); ++i) {
    EXPECT_EQ(InoOf(pinned[i].get()), inos[i]);
  }
  pinned.clear();
  if (handles_) {
    EXPECT_LE(OpenFds(), fds_before_ + kMaxOpen + 1);
  }
}

TEST_F(InodeTableTest, SymlinkIsReopenedNotFollowed) {
  ASSERT_EQ(::symlink("f0", Path("link").c_str()), 0);
  Inode* link = Lookup("link");
  for (int i = 0; i < kFiles; ++i) Lookup("f" + std::to_string(i));
  Result<InodeFd> fd = table_->Fd(link);
  ASSERT_TRUE(fd.ok());
  struct stat st;
  ASSERT_EQ(::fstatat(fd->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW),
            0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
}

TEST_F(InodeTableTest, RemovedFileGivesAnErrorNotACrash) {
  if (!handles_) GTEST_SKIP() << "open_by_handle_at refused (no privilege)";
  Inode* gone = Lookup("f0");
  for (int i = 1; i < kFiles; ++i) Lookup("f" + std::to_string(i));
  ASSERT_EQ(::unlink(Path("f0").c_str()), 0);
  Result<InodeFd> fd = table_->Fd(gone);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.error().value(), ESTALE);
}

TEST_F(InodeTableTest, ConcurrentPinsAlwaysGetTheirInode) {
  std::vector<Inode*> inodes;
  std::vector<ino_t> inos;
  for (int i = 0; i < kFiles; ++i) {
    inodes.push_back(Lookup("f" + std::to_string(i)));
    Result<InodeFd> fd = table_->Fd(inodes.back());
    ASSERT_TRUE(fd.ok());
    inos.push_back(InoOf(fd->get()));
  }
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int n = 0; n < 2000; ++n) {
        const size_t a = rng() % inodes.size(), b = rng() % inodes.size();
        Result<InodeFd> fa = table_->Fd(inodes[a]);
        Result<InodeFd> fb = table_->Fd(inodes[b]);
        if (!fa.ok() || !fb.ok() || InoOf(fa->get()) != inos[a] ||
            InoOf(fb->get()) != inos[b]) {
          ++wrong;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  if (handles_) {
    EXPECT_LE(OpenFds(), fds_before_ + kMaxOpen + 1);
  }
}

// A request answers the kernel before its pin goes, and the kernel may
// forget the inode in between (rm -r: a directory is removed, and
// forgotten, as soon as the unlink of its last entry is answered).
TEST_F(InodeTableTest, AnInodeForgottenWhilePinnedLivesUntilItsLastPin) {
  Inode* inode = Lookup("f0");
  const size_t before = table_->size();
  {
    Result<InodeFd> fd = table_->Fd(inode);
    ASSERT_TRUE(fd.ok());
    table_->Forget(inode, 1);
    EXPECT_EQ(table_->size(), before);
    EXPECT_EQ(InoOf(fd->get()), inode->ino);
  }
  EXPECT_EQ(table_->size(), before - 1);
}

TEST_F(InodeTableTest, ALookupRevivesAForgottenPinnedInode) {
  Inode* inode = Lookup("f1");
  const size_t before = table_->size();
  {
    Result<InodeFd> fd = table_->Fd(inode);
    ASSERT_TRUE(fd.ok());
    table_->Forget(inode, 1);
    EXPECT_EQ(Lookup("f1"), inode);
  }
  EXPECT_EQ(table_->size(), before);
  table_->Forget(inode, 1);
  EXPECT_EQ(table_->size(), before - 1);
}

}  // namespace
}  // namespace tierfs::fusefs
