// tierfs-bench-range-ops: what one small file's range operations cost when
// the cache is big (structure issue target: at 1M cached blocks, truncating
// or punching a 1-block file and SEEK_DATA on it take < 1 ms).
//
// Builds an engine over a sparse cache store of --blocks blocks (64 KiB) in
// a temp dir, loads a mapping for every block (all but three of one big
// sparse file, one each of three 1-block files), then times SEEK_DATA,
// SEEK_HOLE, punch and truncate on the small files, --rounds times each
// (a punch or truncate drops the file's mapping, so every round uses fresh
// files), and 200 x --rounds 4 KiB read hits on random blocks of the big
// file (the hit's lookup among all the mappings).
//
// Usage: tierfs-bench-range-ops [--blocks N] [--rounds N] [--dir DIR]
//                               [--json FILE]
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "meta/volumes.h"
#include "src/cache/engine.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace cache = tierfs::cache;
namespace io = tierfs::io;
namespace meta = tierfs::meta;
using tierfs::CBlock;
using tierfs::OBlock;
using tierfs::VolumeId;

constexpr uint64_t kBlock = 64 * 1024;

double MicrosSince(Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
}

std::shared_ptr<io::File> MakeFile(const std::string& path, uint64_t size) {
  io::OpenOptions o;
  o.create = true;
  auto f = io::Env::Default()->OpenAt(AT_FDCWD, path, o);
  if (!f.ok() || !(*f)->Truncate(size).ok()) {
    std::fprintf(stderr, "cannot make %s\n", path.c_str());
    std::exit(1);
  }
  return std::shared_ptr<io::File>(std::move(f).value());
}

meta::ResolvedVolume Resolved(VolumeId id, const std::string& path,
                              std::shared_ptr<io::File> file) {
  meta::ResolvedVolume v;
  v.record.id = id;
  v.record.path = path;
  v.state = meta::VolumeState::kAttached;
  v.stat = *file->Stat();
  v.origin = std::move(file);
  return v;
}

// Builds on both sides of the engine's OpenVolume change (it gained
// `writable`), so the figure can be taken before and after.
template <typename Engine>
std::shared_ptr<cache::Volume> OpenVolume(Engine& engine, const struct stat& st,
                                          std::shared_ptr<io::File> origin) {
  if constexpr (requires { engine.OpenVolume(0, 0, origin, true, ""); }) {
    return engine.OpenVolume(st.st_dev, st.st_ino, std::move(origin), true);
  } else {
    return engine.OpenVolume(st.st_dev, st.st_ino, std::move(origin));
  }
}

struct Figure {
  std::string name;
  std::vector<double> micros;
  double Median() {
    std::sort(micros.begin(), micros.end());
    return micros.empty() ? 0 : micros[micros.size() / 2];
  }
  double Max() {
    return micros.empty() ? 0 : *std::max_element(micros.begin(), micros.end());
  }
};

}  // namespace

int main(int argc, char** argv) {
  uint64_t blocks = 1 << 20;
  int rounds = 20;
  std::string dir = "/tmp", json_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--blocks") {
      blocks = std::strtoull(next().c_str(), nullptr, 10);
    } else if (a == "--rounds") {
      rounds = std::atoi(next().c_str());
    } else if (a == "--dir") {
      dir = next();
    } else if (a == "--json") {
      json_path = next();
    } else {
      std::fprintf(stderr,
                   "Usage: tierfs-bench-range-ops [--blocks N] [--rounds N] "
                   "[--dir DIR] [--json FILE]\n");
      return 2;
    }
  }
  if (blocks < 16 || rounds < 1) return 2;
  std::string tmpl = dir + "/tierfs-bench-range-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return 1;
  const std::string root = tmpl;

  // Per round: one file for seeks, one to punch, one to truncate.
  const uint64_t small_files = 3 * static_cast<uint64_t>(rounds);
  const uint64_t big_blocks = blocks - small_files;
  cache::EngineOptions options;
  options.block_size = kBlock;
  options.cache_blocks = blocks;
  options.policy = "smq";
  std::string error;
  io::OpenOptions o;
  o.create = true;
  auto store = io::Env::Default()->OpenAt(AT_FDCWD, root + "/cache", o);
  if (!store.ok() || !(*store)->Truncate(blocks * kBlock).ok()) return 1;
  auto engine = cache::CacheEngine::Create(options, std::move(*store), &error);
  if (!engine.ok()) {
    std::fprintf(stderr, "engine: %s\n", error.c_str());
    return 1;
  }
  std::vector<meta::ResolvedVolume> volumes;
  std::vector<meta::MappingRecord> mappings;
  mappings.reserve(blocks);
  volumes.push_back(Resolved(VolumeId(1), "big",
                             MakeFile(root + "/big", big_blocks * kBlock)));
  for (uint64_t b = 0; b < big_blocks; ++b) {
    mappings.push_back(
        {CBlock(static_cast<uint32_t>(b)), OBlock{VolumeId(1), b}, false, 0});
  }
  std::vector<std::shared_ptr<io::File>> small;
  for (uint64_t s = 0; s < small_files; ++s) {
    const std::string name = "small" + std::to_string(s);
    auto f = MakeFile(root + "/" + name, kBlock);
    std::vector<std::byte> data(kBlock, std::byte{1});
    if (!f->WriteAt(0, data).ok()) return 1;
    small.push_back(f);
    const VolumeId id(static_cast<uint32_t>(2 + s));
    volumes.push_back(Resolved(id, name, f));
    mappings.push_back({CBlock(static_cast<uint32_t>(big_blocks + s)),
                        OBlock{id, 0}, false, 0});
  }
  auto load = Clock::now();
  if (!(*engine)->Restore(std::move(volumes), mappings, false, "").ok()) {
    std::fprintf(stderr, "restore failed\n");
    return 1;
  }
  const double load_ms = MicrosSince(load) / 1000;
  (*engine)->AllowMigrations(false);

  Figure seek_data{"seek_data"}, seek_hole{"seek_hole"}, punch{"punch"},
      truncate{"truncate"};
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < 3; ++k) {
      const uint64_t s = 3 * static_cast<uint64_t>(r) + k;
      struct stat st;
      if (::stat((root + "/small" + std::to_string(s)).c_str(), &st) != 0) {
        return 1;
      }
      auto volume = OpenVolume(**engine, st, small[s]);
      auto t = Clock::now();
      if (k == 0) {
        if (!(*engine)->Seek(*volume, 0, true).ok()) return 1;
        seek_data.micros.push_back(MicrosSince(t));
        t = Clock::now();
        if (!(*engine)->Seek(*volume, 0, false).ok()) return 1;
        seek_hole.micros.push_back(MicrosSince(t));
      } else if (k == 1) {
        if (!(*engine)->Discard(volume, 0, kBlock).ok()) return 1;
        punch.micros.push_back(MicrosSince(t));
      } else {
        if (!(*engine)->Truncate(*volume, kBlock / 2).ok()) return 1;
        truncate.micros.push_back(MicrosSince(t));
      }
      (*engine)->CloseVolume(volume, false);
    }
  }
  // 4 KiB read hits on random blocks of the big file: the hit path's
  // lookup among all the cache's mappings.
  Figure read_hit{"read_hit"};
  {
    struct stat st;
    if (::stat((root + "/big").c_str(), &st) != 0) return 1;
    auto big =
        OpenVolume(**engine, st, MakeFile(root + "/big", big_blocks * kBlock));
    std::mt19937_64 rng(1);
    for (int i = 0; i < 200 * rounds; ++i) {
      const uint64_t b = rng() % big_blocks;
      bool ok = false;
      auto t = Clock::now();
      (*engine)->Read(big, b * kBlock, 4096,
                      [&](tierfs::Result<std::span<const std::byte>> r) {
                        ok = r.ok() && r->size() == 4096;
                      });
      read_hit.micros.push_back(MicrosSince(t));
      if (!ok) return 1;
    }
    (*engine)->CloseVolume(big, false);
  }
  const uint64_t read_hits = (*engine)->Snapshot().read_hits;
  const uint64_t used = (*engine)->Snapshot().used_blocks;
  std::printf(
      "tierfs-bench-range-ops: %llu cached blocks (loaded in %.0f ms), "
      "%d rounds on 1-block files\n",
      static_cast<unsigned long long>(used), load_ms, rounds);
  nlohmann::json j;
  j["cached_blocks"] = used;
  j["rounds"] = rounds;
  j["read_hits"] = read_hits;
  for (Figure* f : {&seek_data, &seek_hole, &punch, &truncate, &read_hit}) {
    const double median = f->Median(), max = f->Max();
    std::printf("  %-10s median %9.1f us   max %9.1f us\n", f->name.c_str(),
                median, max);
    j[f->name] = {{"median_us", median}, {"max_us", max}};
  }
  engine->reset();
  std::filesystem::remove_all(root);
  if (!json_path.empty()) std::ofstream(json_path) << j.dump(2) << "\n";
  return 0;
}
