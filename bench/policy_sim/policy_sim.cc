// tierfs-policy-sim: replays a synthetic workload (or a fio iolog) through
// registered policies, through simulator-only models of published policies
// (models.h) and through Belady's optimal replacement (OPT), and prints
// hit ratios and migration counts as JSON.
//
// The simulated engine does what src/cache does, minus the IO: one Lookup
// per block access (LookupWithWork for whole-block writes), SetDirty on
// written cached blocks, and after each access it drains the policy's
// background work and completes every item successfully (a promotion is a
// copy; the block is mapped from then on). Time: 10 accesses per simulated
// millisecond, a Tick every 100 ms. Only Lookup hits count as hits.
//
// OPT fetches every missed block (demand fetch) and, when full, evicts the
// resident block whose next use is farthest away; it is an upper bound for
// any policy that caches on demand.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bench/policy_sim/models.h"
#include "policy/policy.h"
#include "policy/registry.h"

namespace tierfs::policy {
namespace {

constexpr uint64_t kAccessesPerMs = 10;
constexpr uint64_t kTickMs = 100;

struct Access {
  OBlock oblock;
  bool write = false;
  bool whole_block = false;  // a write covering the block
  uint32_t bytes = 0;        // of the block the IO touches; 0: all of it
  bool first = true;         // the first block of its IO
};

struct Trace {
  std::vector<Access> accesses;
  uint64_t ios = 0;  // requests (an iolog line may touch several blocks)
};

// splitmix64: fully specified, so a seed gives the same trace everywhere
// (std:: distributions are implementation-defined).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  uint64_t Below(uint64_t n) { return Next() % n; }

 private:
  uint64_t state_;
};

// Zipf(s) over n items; ranks are scattered over the blocks by a random
// permutation, so hot blocks are not neighbours (as with fio's zipf).
class Zipf {
 public:
  Zipf(uint64_t n, double s, Rng& rng) : cdf_(n), blocks_(n) {
    double sum = 0;
    for (uint64_t i = 0; i < n; ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i + 1), s);
      cdf_[i] = sum;
    }
    for (double& c : cdf_) c /= sum;
    for (uint64_t i = 0; i < n; ++i) blocks_[i] = i;
    for (uint64_t i = n - 1; i > 0; --i) {
      std::swap(blocks_[i], blocks_[rng.Below(i + 1)]);
    }
  }
  uint64_t Sample(Rng& rng) const {
    const double u = rng.Uniform();
    auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
    const auto rank = std::min<uint64_t>(
        static_cast<uint64_t>(it - cdf_.begin()), cdf_.size() - 1);
    return blocks_[rank];
  }

 private:
  std::vector<double> cdf_;
  std::vector<uint64_t> blocks_;
};

OBlock Block(uint32_t volume, uint64_t index) {
  return OBlock{VolumeId(volume), index};
}

std::vector<Access> MakeZipf(uint64_t cache, uint64_t ops, Rng& rng) {
  Zipf zipf(4 * cache, 1.2, rng);
  std::vector<Access> out(ops);
  for (Access& a : out) a.oblock = Block(1, zipf.Sample(rng));
  return out;
}

// A hot zipf(1.2) set of one cache's size, and two sequential scans walking
// a cold region of twice the cache on another volume; half the accesses
// are the scans'.
std::vector<Access> MakeScan(uint64_t cache, uint64_t ops, Rng& rng) {
  Zipf zipf(cache, 1.2, rng);
  const uint64_t cold = 2 * cache;
  uint64_t scan[2] = {0, cold / 2};
  std::vector<Access> out(ops);
  for (uint64_t i = 0; i < ops; ++i) {
    if (rng.Below(2) == 0) {
      out[i].oblock = Block(1, zipf.Sample(rng));
    } else {
      uint64_t& pos = scan[i % 2];
      out[i].oblock = Block(2, pos);
      pos = (pos + 1) % cold;
    }
  }
  return out;
}

// zipf(1.1) over four caches' worth of blocks; every third of the run the
// hot set moves to a new offset.
std::vector<Access> MakeShift(uint64_t cache, uint64_t ops, Rng& rng) {
  const uint64_t n = 4 * cache;
  Zipf zipf(n, 1.1, rng);
  std::vector<Access> out(ops);
  for (uint64_t i = 0; i < ops; ++i) {
    const uint64_t phase = i * 3 / ops;
    out[i].oblock = Block(1, (zipf.Sample(rng) + phase * (n / 3 + 1)) % n);
  }
  return out;
}

// zipf(1.2) over four caches' worth; 30% writes, half of them covering
// whole blocks.
std::vector<Access> MakeMixed(uint64_t cache, uint64_t ops, Rng& rng) {
  Zipf zipf(4 * cache, 1.2, rng);
  std::vector<Access> out(ops);
  for (Access& a : out) {
    a.oblock = Block(1, zipf.Sample(rng));
    a.write = rng.Below(10) < 3;
    a.whole_block = a.write && rng.Below(2) == 0;
  }
  return out;
}

// fio iolog (version 2 or 3): "[time] file action offset length" lines;
// each file is a volume, each block an IO touches is an access. `ops`
// bounds the accesses (0: all); "-" reads standard input.
bool ReadIolog(const std::string& path, uint64_t block_size, uint64_t ops,
               Trace* trace, std::string* error) {
  std::vector<Access>* out = &trace->accesses;
  std::ifstream file;
  if (path != "-") file.open(path);
  std::istream& in = path == "-" ? std::cin : file;
  if (!in) {
    *error = "cannot open iolog " + path;
    return false;
  }
  std::string line;
  std::getline(in, line);
  int version = 0;
  if (line.find("fio version 2 iolog") != std::string::npos) version = 2;
  if (line.find("fio version 3 iolog") != std::string::npos) version = 3;
  if (version == 0) {
    *error = path + ": not a fio version 2/3 iolog";
    return false;
  }
  std::map<std::string, uint32_t> volumes;
  while (std::getline(in, line) && (ops == 0 || out->size() < ops)) {
    std::istringstream fields(line);
    std::string time, file, action;
    uint64_t offset = 0, length = 0;
    if (version == 3) fields >> time;
    if (!(fields >> file >> action)) continue;
    if (action != "read" && action != "write") continue;
    if (!(fields >> offset >> length) || length == 0) continue;
    auto [it, added] =
        volumes.emplace(file, static_cast<uint32_t>(volumes.size() + 1));
    const bool write = action == "write";
    ++trace->ios;
    for (uint64_t b = offset / block_size;
         b <= (offset + length - 1) / block_size; ++b) {
      const uint64_t begin = std::max(offset, b * block_size);
      const uint64_t end = std::min(offset + length, (b + 1) * block_size);
      const bool whole = end - begin == block_size;
      out->push_back(Access{Block(it->second, b), write, write && whole,
                            static_cast<uint32_t>(end - begin),
                            b == offset / block_size});
    }
  }
  if (out->empty()) {
    *error = path + ": no read or write entries";
    return false;
  }
  return true;
}

struct Result {
  std::string policy;
  uint64_t hits = 0, accesses = 0;
  uint64_t hit_bytes = 0, bytes = 0;  // of the IOs, not of the blocks
  uint64_t promotions = 0, demotions = 0, writebacks = 0;
  double bytes_per_block = -1;  // policy memory; < 0: not measured (models)
  // Hits of each run of `interval` accesses (--intervals); empty if 0.
  uint64_t interval = 0, interval_hits = 0, interval_seen = 0;
  std::vector<double> interval_hit_ratios;
};

// Set by --intervals: every run reports its hit ratio per this many
// accesses too (how fast a policy adapts).
uint64_t g_interval = 0;

// When queued background work completes (--complete). kPerAccess: after
// every block access, so the policy's free reserve is full again for the
// next block. kPerIo: before the next IO, as on a mount - there the blocks
// of one request are looked up in one go (a 1 MiB read: 16 lookups at
// 64 KiB) while demotions run behind it on the migration threads, so
// misses past the free reserve find no slot and stay on the origin.
enum class Complete { kPerAccess, kPerIo };
Complete g_complete = Complete::kPerIo;

// Counts one access's outcome in *r.
void Count(const Access& a, bool hit, uint64_t block_size, Result* r) {
  const uint64_t bytes = a.bytes ? a.bytes : block_size;
  r->bytes += bytes;
  if (g_interval != 0) {
    r->interval_hits += hit;
    if (++r->interval_seen == g_interval) {
      r->interval_hit_ratios.push_back(static_cast<double>(r->interval_hits) /
                                       static_cast<double>(g_interval));
      r->interval_hits = r->interval_seen = 0;
    }
  }
  if (hit) {
    ++r->hits;
    r->hit_bytes += bytes;
  }
}

Result RunModel(const std::string& name, const PolicyParams& params,
                const std::vector<Access>& trace) {
  Result r;
  r.policy = name;
  std::unique_ptr<sim::Model> m = sim::NewModel(name, params.cache_blocks);
  for (const Access& a : trace) {
    Count(a, m->Access(a.oblock, a.write), params.block_size, &r);
  }
  r.accesses = trace.size();
  r.promotions = m->counts().promotions;
  r.demotions = m->counts().demotions;
  r.writebacks = m->counts().writebacks;
  return r;
}

Result RunPolicy(const std::string& name, const PolicyParams& params,
                 const ConfigValues& config, const std::vector<Access>& trace,
                 std::string* error) {
  Result r;
  r.policy = name;
  auto created = CreatePolicy(name, params, config, error);
  if (!created.ok()) return r;
  std::unique_ptr<Policy> p = std::move(created).value();
  uint64_t now = 0;
  p->Tick(now, true);
  auto complete = [&](const Work& w) {
    switch (w.op) {
      case WorkOp::kPromote:
        ++r.promotions;
        break;
      case WorkOp::kDemote:
        ++r.demotions;
        break;
      case WorkOp::kWriteback:
        ++r.writebacks;
        break;
    }
    p->CompleteBackgroundWork(w, true);
  };
  auto drain = [&] {
    Work w;
    while (p->GetBackgroundWork(false, &w)) complete(w);
  };
  for (uint64_t t = 0; t < trace.size(); ++t) {
    const Access& a = trace[t];
    if (g_complete == Complete::kPerIo && a.first) drain();
    const IoDir dir = a.write ? IoDir::kWrite : IoDir::kRead;
    CBlock cblock;
    bool hit;
    if (a.whole_block) {
      std::optional<Work> work;
      bool queued;
      hit = p->LookupWithWork(a.oblock, &cblock, dir, true, &work, &queued);
      if (work) {
        complete(*work);  // the write went straight into the new cblock
        p->SetDirty(work->cblock);
      }
    } else {
      bool queued;
      hit = p->Lookup(a.oblock, &cblock, dir, true, &queued);
    }
    Count(a, hit, params.block_size, &r);
    if (hit && a.write) p->SetDirty(cblock);
    if (g_complete == Complete::kPerAccess) drain();
    if ((t + 1) % (kAccessesPerMs * kTickMs) == 0) {
      now += kTickMs;
      p->Tick(now, true);
    }
  }
  r.accesses = trace.size();
  r.bytes_per_block = static_cast<double>(p->MemoryBytes()) /
                      static_cast<double>(params.cache_blocks);
  return r;
}

// Belady's MIN with demand fetch.
Result RunOpt(uint64_t cache_blocks, uint64_t block_size,
              const std::vector<Access>& trace) {
  Result r;
  r.policy = "opt";
  auto key = [](OBlock o) {
    return (static_cast<uint64_t>(o.volume.value()) << 48) ^ o.index;
  };
  const uint64_t n = trace.size();
  std::vector<uint64_t> next_use(n);
  {
    std::unordered_map<uint64_t, uint64_t> seen;
    for (uint64_t t = n; t-- > 0;) {
      const uint64_t k = key(trace[t].oblock);
      auto it = seen.find(k);
      // Never used again: farther than anything, ties broken by time.
      next_use[t] = it == seen.end() ? UINT64_MAX - t : it->second;
      seen[k] = t;
    }
  }
  std::set<std::pair<uint64_t, uint64_t>> by_next;  // (next use, key)
  struct Slot {
    uint64_t next;
    bool dirty;
  };
  std::unordered_map<uint64_t, Slot> resident;
  resident.reserve(cache_blocks * 2);
  for (uint64_t t = 0; t < n; ++t) {
    const uint64_t k = key(trace[t].oblock);
    auto it = resident.find(k);
    Count(trace[t], it != resident.end(), block_size, &r);
    if (it != resident.end()) {
      by_next.erase({it->second.next, k});
    } else {
      ++r.promotions;
      if (resident.size() >= cache_blocks) {
        auto victim = std::prev(by_next.end());
        auto v = resident.find(victim->second);
        ++r.demotions;
        if (v->second.dirty) ++r.writebacks;
        resident.erase(v);
        by_next.erase(victim);
      }
      it = resident.emplace(k, Slot{0, false}).first;
    }
    it->second.next = next_use[t];
    it->second.dirty = it->second.dirty || trace[t].write;
    by_next.insert({next_use[t], k});
  }
  r.accesses = n;
  return r;
}

void PrintJson(const std::string& workload, const PolicyParams& params,
               const Trace& trace, uint64_t seed,
               const std::vector<Result>& rs) {
  std::printf(
      "{\"workload\":\"%s\",\"cache_blocks\":%llu,\"block_size\":%llu,"
      "\"ops\":%llu,\"ios\":%llu,\"seed\":%llu,\"results\":[",
      workload.c_str(), static_cast<unsigned long long>(params.cache_blocks),
      static_cast<unsigned long long>(params.block_size),
      static_cast<unsigned long long>(trace.accesses.size()),
      static_cast<unsigned long long>(trace.ios),
      static_cast<unsigned long long>(seed));
  for (size_t i = 0; i < rs.size(); ++i) {
    const Result& r = rs[i];
    std::printf(
        "%s{\"policy\":\"%s\",\"hit_ratio\":%.6f,"
        "\"byte_hit_ratio\":%.6f,\"promotions\":%llu,"
        "\"demotions\":%llu,\"writebacks\":%llu,"
        "\"migrations_per_kio\":%.2f",
        i ? "," : "", r.policy.c_str(),
        r.accesses ? static_cast<double>(r.hits) / r.accesses : 0.0,
        r.bytes ? static_cast<double>(r.hit_bytes) / r.bytes : 0.0,
        static_cast<unsigned long long>(r.promotions),
        static_cast<unsigned long long>(r.demotions),
        static_cast<unsigned long long>(r.writebacks),
        1000.0 *
            static_cast<double>(r.promotions + r.demotions + r.writebacks) /
            static_cast<double>(trace.ios ? trace.ios : r.accesses));
    if (!r.interval_hit_ratios.empty()) {
      std::printf(",\"interval_hit_ratios\":[");
      for (size_t k = 0; k < r.interval_hit_ratios.size(); ++k) {
        std::printf("%s%.4f", k ? "," : "", r.interval_hit_ratios[k]);
      }
      std::printf("]");
    }
    if (r.bytes_per_block >= 0) {
      std::printf(",\"policy_bytes_per_block\":%.1f", r.bytes_per_block);
    }
    std::printf("}");
  }
  std::printf("]}\n");
}

void PrintText(const std::string& workload, const std::vector<Result>& rs) {
  std::printf("workload %s\n%-12s %9s %11s %11s %11s\n", workload.c_str(),
              "policy", "hit_ratio", "promotions", "demotions", "writebacks");
  for (const Result& r : rs) {
    std::printf("%-12s %9.4f %11llu %11llu %11llu\n", r.policy.c_str(),
                r.accesses ? static_cast<double>(r.hits) / r.accesses : 0.0,
                static_cast<unsigned long long>(r.promotions),
                static_cast<unsigned long long>(r.demotions),
                static_cast<unsigned long long>(r.writebacks));
  }
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
}

bool IsModel(const std::string& name) {
  return sim::NewModel(name, 16) != nullptr;
}

int Usage(const char* error) {
  if (error != nullptr) std::fprintf(stderr, "tierfs-policy-sim: %s\n", error);
  std::fprintf(
      error ? stderr : stdout,
      "usage: tierfs-policy-sim --workload zipf|scan|shift|mixed|iolog\n"
      "         --cache-blocks N [--ops N] [--seed N] [--policy smq,lru,...]\n"
      "         [--iolog FILE] [--block-size BYTES] [--json]\n"
      "         [--intervals N] (JSON: hit ratio per N accesses too)\n"
      "         [--complete per-io|per-access] (when background work\n"
      "         completes; default per-io, as on a mount)\n"
      "         [--config POLICY:KEY=VALUE]...\n"
      "Replays the workload through each policy and Belady's OPT.\n"
      "Default ops: 1000000 (iolog: the whole log, \"-\": standard input);\n"
      "default policies: smq,lru. Live policies (policy/registry): %s;\n"
      "simulator-only models (models.h): %s.\n"
      "--config sets a policy's config value (as tierfs(5) does), e.g.\n"
      "  --config smq:sequential_cutoff=0; it may be repeated.\n",
      Join(PolicyNames()).c_str(), Join(sim::ModelNames()).c_str());
  return error ? 2 : 0;
}

bool ParseU64(const std::string& text, uint64_t* out) {
  auto [ptr, ec] =
      std::from_chars(text.data(), text.data() + text.size(), *out);
  return !text.empty() && ec == std::errc() && ptr == text.data() + text.size();
}

int Main(int argc, char** argv) {
  std::string workload, iolog, policies = "smq,lru";
  uint64_t cache_blocks = 0, ops = 0, seed = 1, block_size = 64 * 1024;
  bool ops_given = false, json = false;
  std::map<std::string, ConfigValues> configs;  // policy -> its values
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (arg == "--help" || arg == "-h") return Usage(nullptr);
    if (arg == "--json") {
      json = true;
    } else if (arg == "--workload") {
      if (!value(&workload)) return Usage("--workload needs a value");
    } else if (arg == "--policy") {
      if (!value(&policies)) return Usage("--policy needs a value");
    } else if (arg == "--config") {
      if (!value(&v)) return Usage("--config needs POLICY:KEY=VALUE");
      const size_t colon = v.find(':'), eq = v.find('=');
      if (colon == std::string::npos || eq == std::string::npos || eq < colon) {
        return Usage("--config needs POLICY:KEY=VALUE");
      }
      configs[v.substr(0, colon)].emplace_back(
          v.substr(colon + 1, eq - colon - 1), v.substr(eq + 1));
    } else if (arg == "--complete") {
      if (!value(&v) || (v != "per-io" && v != "per-access")) {
        return Usage("--complete needs per-io or per-access");
      }
      g_complete = v == "per-io" ? Complete::kPerIo : Complete::kPerAccess;
    } else if (arg == "--iolog") {
      if (!value(&iolog)) return Usage("--iolog needs a value");
    } else if (arg == "--cache-blocks" || arg == "--ops" || arg == "--seed" ||
               arg == "--block-size" || arg == "--intervals") {
      uint64_t n;
      if (!value(&v) || !ParseU64(v, &n)) {
        return Usage((arg + " needs a number").c_str());
      }
      if (arg == "--cache-blocks") cache_blocks = n;
      if (arg == "--ops") ops = n, ops_given = true;
      if (arg == "--seed") seed = n;
      if (arg == "--block-size") block_size = n;
      if (arg == "--intervals") g_interval = n;
    } else {
      return Usage(("unknown argument " + arg).c_str());
    }
  }
  if (cache_blocks == 0) return Usage("--cache-blocks N (N > 0) is required");
  if (!ops_given && workload != "iolog") ops = 1000000;
  Rng rng(seed);
  Trace loaded;
  std::vector<Access>& trace = loaded.accesses;
  if (workload == "zipf") {
    trace = MakeZipf(cache_blocks, ops, rng);
  } else if (workload == "scan") {
    trace = MakeScan(cache_blocks, ops, rng);
  } else if (workload == "shift") {
    trace = MakeShift(cache_blocks, ops, rng);
  } else if (workload == "mixed") {
    trace = MakeMixed(cache_blocks, ops, rng);
  } else if (workload == "iolog") {
    std::string error;
    if (iolog.empty()) return Usage("--workload iolog needs --iolog FILE");
    if (!ReadIolog(iolog, block_size, ops, &loaded, &error)) {
      return Usage(error.c_str());
    }
  } else {
    return Usage("--workload must be zipf, scan, shift, mixed or iolog");
  }

  const PolicyParams params{cache_blocks, block_size};
  std::vector<Result> results;
  std::stringstream names(policies);
  for (std::string name; std::getline(names, name, ',');) {
    if (name == "opt") continue;  // always reported
    if (IsModel(name)) {
      results.push_back(RunModel(name, params, trace));
      continue;
    }
    std::string error;
    results.push_back(RunPolicy(name, params, configs[name], trace, &error));
    if (!error.empty()) return Usage(error.c_str());
  }
  results.push_back(RunOpt(cache_blocks, block_size, trace));
  if (json) {
    PrintJson(workload, params, loaded, seed, results);
  } else {
    PrintText(workload, results);
  }
  return 0;
}

}  // namespace
}  // namespace tierfs::policy

int main(int argc, char** argv) { return tierfs::policy::Main(argc, argv); }
