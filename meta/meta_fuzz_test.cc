// Fuzz-style robustness test of the metadata reader: valid metadata (format,
// records, a checkpoint, more journal batches) with random bytes flipped or
// a file cut short, many times with a fixed seed. Load and Check must never
// crash or hang, and must report damage or return a consistent state.
// Registered in suites 'fuzz' and 'unit' (so that the ASan pass runs it, with
// 500 iterations instead of 2000).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "meta/format.h"
#include "meta/store.h"
#include "meta/tools.h"

namespace tierfs::meta {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kCacheBlocks = 256;
// Fewer under the sanitizers (the ASan pass runs suite 'unit' on a shared
// machine), the full count otherwise.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kIterations = 500;
#else
constexpr int kIterations = 2000;
#endif

std::vector<char> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::vector<char>& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 0),
            static_cast<ssize_t>(data.size()));
  ::close(fd);
}

// A state Load returns without damage must be one a mount can use.
void ExpectConsistent(const LoadedState& s) {
  std::set<uint32_t> volumes;
  for (const VolumeRecord& v : s.volumes) {
    EXPECT_TRUE(volumes.insert(v.id.value()).second);
    EXPECT_LT(v.id.value(), s.next_volume_id);
    EXPECT_FALSE(v.path.empty());
    EXPECT_NE(v.path[0], '/');
  }
  std::set<OBlock> oblocks;
  uint32_t last = 0;
  bool first = true;
  for (const MappingRecord& m : s.mappings) {
    EXPECT_LT(m.cblock.value(), s.super.cache_blocks);
    EXPECT_TRUE(first || m.cblock.value() > last) << "not sorted or twice";
    first = false;
    last = m.cblock.value();
    EXPECT_TRUE(volumes.count(m.oblock.volume.value()));
    EXPECT_TRUE(oblocks.insert(m.oblock).second);
  }
}

class MetaFuzzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // tmpfs when there is one: no disk IO for thousands of rewrites.
    const std::string base = fs::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/tierfs-fuzz-XXXXXX";
    dir_ = ::mkdtemp(tmpl.data());
    Build();
    for (const char* name :
         {kMetaFileName, kCheckpointNames[0], kCheckpointNames[1]}) {
      pristine_[name] = ReadFile(dir_ + "/" + name);
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Build() {
    FormatOptions o;
    o.cache_blocks = kCacheBlocks;
    o.journal_size = 4 * kMaxBatchBytes;
    std::unique_ptr<io::File> cache;
    std::string error;
    auto store = FormatCache(io::Env::Default(), dir_, dir_, o, &cache, &error);
    ASSERT_TRUE(store.ok()) << error;
    MetaStore& s = **store;
    std::map<uint32_t, MappingRecord> table;
    s.SetSnapshot([&](Checkpoint* cp, const std::function<void()>& capture) {
      for (const auto& [c, m] : table) cp->mappings.push_back(m);
      capture();
    });
    std::mt19937 rng(11);
    for (uint32_t v = 1; v <= 3; ++v) {
      VolumeRecord r;
      r.id = s.NewVolumeId();
      r.ino = 100 + v;
      r.path = "dir/vol" + std::to_string(v) + ".img";
      s.AppendVolume(r);
    }
    uint64_t index = 0;
    auto churn = [&](int n) {
      for (int i = 0; i < n; ++i) {
        const uint32_t c = rng() % kCacheBlocks;
        auto it = table.find(c);
        if (it == table.end()) {
          const OBlock o{VolumeId(1 + rng() % 3), index++};
          const bool dirty = rng() % 2;
          table[c] = MappingRecord{CBlock(c), o, dirty, 0};
          s.AppendMap(CBlock(c), o, dirty);
        } else if (rng() % 3 == 0) {
          table.erase(it);
          s.AppendUnmap(CBlock(c));
        } else {
          it->second.dirty = !it->second.dirty;
          it->second.dirty ? s.AppendDirty(CBlock(c))
                           : s.AppendClean(CBlock(c));
        }
      }
    };
    churn(200);
    ASSERT_TRUE(s.Commit().ok());
    ASSERT_TRUE(s.Checkpoint(false).ok());
    for (int batch = 0; batch < 6; ++batch) {
      churn(30);
      ASSERT_TRUE(s.Commit().ok());
    }
    journal_bytes_ = s.GetStats().journal_used;
    s.SetSnapshot(nullptr);
  }

  std::string dir_;
  std::map<std::string, std::vector<char>> pristine_;
  uint64_t journal_bytes_ = 0;
};

TEST_F(MetaFuzzTest, DamagedFilesAreReportedNeverCrash) {
  std::string error;
  auto clean = Load(io::Env::Default(), dir_, &error);
  ASSERT_TRUE(clean.ok()) << error;
  ASSERT_EQ(clean->damage, "");
  ASSERT_GT(clean->replayed_batches, 3u);
  ASSERT_GT(clean->mappings.size(), 50u);
  const LoadedState reference = *clean;

  std::mt19937_64 rng(20260611);
  const std::vector<std::string> names = {kMetaFileName, kCheckpointNames[0],
                                          kCheckpointNames[1]};
  const auto started = std::chrono::steady_clock::now();
  uint64_t damaged = 0, failed = 0, unchanged = 0, repaired = 0;
  for (int i = 0; i < kIterations; ++i) {
    const std::string& name = names[rng() % names.size()];
    const std::vector<char>& pristine = pristine_[name];
    if (pristine.empty()) continue;
    const std::string path = dir_ + "/" + name;
    // Where the bytes that matter are: superblocks and the used journal,
    // or a whole checkpoint.
    const uint64_t hot =
        name == kMetaFileName
            ? std::min<uint64_t>(pristine.size(),
                                 kJournalOffset + journal_bytes_)
            : pristine.size();
    // Changed in place (only the bytes touched), put back afterwards.
    const int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    std::vector<std::pair<uint64_t, uint64_t>> touched;  // offset, length
    uint64_t cut = pristine.size();
    auto put = [&](uint64_t at, const std::vector<char>& bytes) {
      ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), at),
                static_cast<ssize_t>(bytes.size()));
      touched.emplace_back(at, bytes.size());
    };
    const int kind = rng() % 10;
    if (kind < 7) {
      const int flips = 1 + rng() % 8;
      for (int f = 0; f < flips; ++f) {
        const uint64_t at = rng() % hot;
        put(at, {static_cast<char>(pristine[at] ^ (1 + rng() % 255))});
      }
    } else if (kind < 9) {
      cut = rng() % (hot + 1);
      ASSERT_EQ(::ftruncate(fd, cut), 0);
    } else {
      // A run of garbage, as a misdirected write would leave.
      const uint64_t at = rng() % hot;
      std::vector<char> junk(std::min<uint64_t>(hot - at, 1 + rng() % 8192));
      for (char& c : junk) c = static_cast<char>(rng());
      put(at, junk);
    }
    ::close(fd);

    const bool repair = i % 40 == 0;
    CheckOptions options;
    options.repair = repair;
    CheckReport report = Check(io::Env::Default(), dir_, options);
    EXPECT_FALSE(CheckText(report).empty());
    if (!report.loaded) {
      EXPECT_FALSE(report.problems.empty());
      ++failed;
    } else if (!report.state.damage.empty()) {
      EXPECT_FALSE(report.problems.empty());
      ++damaged;
    } else {
      ExpectConsistent(report.state);
      unchanged += report.state.mappings.size() == reference.mappings.size();
    }
    if (repair && report.loaded && !report.repair_refused) {
      ++repaired;
      auto after = Load(io::Env::Default(), dir_, &error);
      ASSERT_TRUE(after.ok()) << error;
      EXPECT_EQ(after->damage, "");
      ExpectConsistent(*after);
    }
    if (repair) {
      for (const std::string& n : names)
        WriteFile(dir_ + "/" + n, pristine_[n]);
    } else {
      const int back = ::open(path.c_str(), O_WRONLY);
      ASSERT_GE(back, 0);
      for (const auto& [at, n] : touched) {
        ASSERT_EQ(::pwrite(back, pristine.data() + at, n, at),
                  static_cast<ssize_t>(n));
      }
      if (cut < pristine.size()) {
        ASSERT_EQ(
            ::pwrite(back, pristine.data() + cut, pristine.size() - cut, cut),
            static_cast<ssize_t>(pristine.size() - cut));
      }
      ::close(back);
    }
    if (HasFatalFailure()) return;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
          .count();
  std::printf(
      "%d iterations in %.1f s: %llu load errors, %llu damaged, %llu "
      "usable (%llu with every mapping), %llu repaired\n",
      kIterations, seconds, static_cast<unsigned long long>(failed),
      static_cast<unsigned long long>(damaged),
      static_cast<unsigned long long>(kIterations - failed - damaged),
      static_cast<unsigned long long>(unchanged),
      static_cast<unsigned long long>(repaired));
  EXPECT_GT(failed + damaged, 0u);
}

}  // namespace
}  // namespace tierfs::meta
