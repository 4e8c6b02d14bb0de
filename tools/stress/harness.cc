// The harness's life: temp dirs, the engine and its env, the full checks,
// the reader threads, the watchdog and the summary (crashes: crash.cc).

#include "tools/stress/harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "meta/meta_dir.h"
#include "src/util/log.h"

namespace tierfs::stress {
namespace {

constexpr auto kFlushTimeout = std::chrono::seconds(60);

std::mutex print_mu;  // one failure report at a time, whole

}  // namespace

Harness::Harness(const Options& options)
    : options_(options), rng_(options.seed) {}

Harness::~Harness() {
  done_.store(true);
  if (watchdog_.joinable()) watchdog_.join();
  StopReaders();
  if (admin_.valid()) admin_.wait();
  engine_.reset();
  slots_.clear();
  env_ = EnvStack{};
  if (slow_fd_ >= 0) ::close(slow_fd_);
  if (root_.empty()) return;
  if (options_.keep) {
    std::printf("tierfs-stress: kept %s\n", root_.c_str());
  } else {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
}

bool Harness::Setup() {
  std::string tmpl = options_.dir + "/tierfs-stress-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Fail("cannot create a temp dir in " + options_.dir + ": " +
                std::strerror(errno));
  }
  root_ = tmpl;
  std::error_code ec;
  std::filesystem::create_directories(root_ + "/fast/tierfs", ec);
  if (!ec) std::filesystem::create_directories(root_ + "/slow", ec);
  if (ec) return Fail("cannot create the dirs in " + root_);
  slow_fd_ = ::open((root_ + "/slow").c_str(), O_PATH | O_DIRECTORY);
  if (slow_fd_ < 0) return Fail("cannot open the slow dir");
  if (!OpenEngine()) return false;
  for (int i = 0; i < options_.volumes; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->index = i;
    slots_.back()->name = "vol" + std::to_string(i) + ".img";
    if (!CreateFile(*slots_.back(), /*first=*/true)) return false;
  }
  watchdog_ = std::thread([this] { Watchdog(); });
  return true;
}

bool Harness::OpenEngine() {
  env_.injector = std::make_shared<io::FaultInjector>(options_.seed);
  env_.faults = std::make_unique<io::FaultInjectingEnv>(io::Env::Default(),
                                                        env_.injector);
  // The origins are the slow dir's .img files; metadata is never failed.
  const struct {
    uint32_t ops;
    const char* path;
    double probability;
  } kErrors[] = {
      {io::kFaultWrite, meta::kCacheStoreName, options_.cache_errors},
      {io::kFaultWrite, ".img", options_.origin_errors},
      {io::kFaultRead, meta::kCacheStoreName, options_.read_errors},
      {io::kFaultRead, ".img", options_.read_errors},
      {io::kFaultSync, ".img", options_.sync_errors},
  };
  for (const auto& e : kErrors) {
    if (e.probability == 0) continue;
    env_.injector->AddRule({.ops = e.ops,
                            .path_contains = e.path,
                            .error = EIO,
                            .probability = e.probability});
  }
  // Latency sits above the fault injector: a delayed op is checked against
  // the crash rule only when it is really issued, like a syscall.
  LatencyConfig latency{options_.latency_probability,
                        options_.latency ? options_.latency_max_us : 0};
  env_.top = std::make_unique<LatencyEnv>(env_.faults.get(), latency);

  cache::PersistentOptions o;
  o.env = env_.top.get();
  o.meta_dir = root_ + "/fast/tierfs";
  o.fast_dir = root_ + "/fast";
  o.slow_dirfd = slow_fd_;
  o.cache_size = options_.cache_blocks * options_.block_size;
  o.cache_size_given = o.block_size_given = true;
  o.thin = o.thin_given = options_.thin;
  o.engine.block_size = options_.block_size;
  o.engine.tick = std::chrono::milliseconds(10);
  o.engine.migration_threads = 2;
  // A restarted daemon comes up with its configured mode and policy, which
  // need not be what the last one switched to at run time.
  o.engine.mode =
      rng_() % 2 == 0 ? cache::Mode::kWriteback : cache::Mode::kWritethrough;
  static const char* const kStartPolicies[] = {"tinylfu", "smq", "lru"};
  o.engine.policy = kStartPolicies[rng_() % 3];
  cache::StartReport report;
  std::string error;
  auto engine = cache::OpenPersistentCache(o, &report, &error);
  if (!engine.ok()) {
    return Fail("the cache does not start: " + error + " (" +
                engine.error().message() + ")");
  }
  engine_ = std::move(engine).value();
  return true;
}

bool Harness::CreateFile(Slot& slot, bool first) {
  const uint64_t bs = options_.block_size, max = options_.max_file_size;
  uint64_t size = rng_() % (first ? max / 2 : max) + (first ? max / 2 : 0);
  if (rng_() % 4 != 0) size = size / bs * bs;  // mostly whole blocks
  io::OpenOptions open;
  open.create = open.exclusive = true;
  Result<std::unique_ptr<io::File>> file =
      env_.top->OpenAt(slow_fd_, slot.name, open);
  if (!file.ok()) {
    return Fail("cannot create " + slot.name + ": " + file.error().message());
  }
  std::vector<std::byte> model(size);
  Status st = (*file)->Truncate(size);
  constexpr uint64_t kChunk = 256 * 1024;
  for (uint64_t off = 0; st.ok() && off < size; off += kChunk) {
    const uint64_t seed = rng_();
    if (seed % 5 == 0) continue;  // a hole: images are sparse
    std::span<std::byte> chunk(model.data() + off,
                               std::min(kChunk, size - off));
    for (size_t i = 0; i < chunk.size(); i += 8) {
      uint64_t v = seed * 0x9e3779b97f4a7c15ull + i;
      std::memcpy(chunk.data() + i, &v, std::min<size_t>(8, chunk.size() - i));
    }
    st = (*file)->WriteAt(off, chunk);
    // Injected origin errors hit this write too: tried again.
    for (int tries = 1; !st.ok() && options_.origin_errors > 0 && tries < 100;
         ++tries) {
      st = (*file)->WriteAt(off, chunk);
    }
  }
  if (!st.ok()) {
    return Fail("cannot fill " + slot.name + ": " + st.error().message());
  }
  slot.model = std::move(model);
  return OpenSlot(slot, std::move(file).value());
}

bool Harness::OpenSlot(Slot& slot, std::unique_ptr<io::File> file) {
  if (!file) {
    Result<std::unique_ptr<io::File>> opened =
        env_.top->OpenAt(slow_fd_, slot.name, io::OpenOptions{});
    if (!opened.ok()) {
      return Fail("cannot open " + slot.name + ": " + opened.error().message());
    }
    file = std::move(opened).value();
  }
  Result<io::FileStat> stat = file->Stat();
  if (!stat.ok()) return Fail("cannot stat " + slot.name);
  slot.volume = engine_->OpenVolume(stat->dev, stat->ino,
                                    std::shared_ptr<io::File>(std::move(file)),
                                    /*writable=*/true, slot.name);
  return true;
}

bool Harness::VerifyAll(const std::string& when) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!CheckFile(*slots_[i], "full check " + when)) {
      return false;
    }
  }
  return true;
}

bool Harness::VerifyOrigins(const std::string& when) {
  // With nothing dirty, the slow dir alone must hold every byte.
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& slot = *slots_[i];
    const int fd = ::openat(slow_fd_, slot.name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Fail("cannot open origin " + slot.name);
    std::vector<std::byte> data(slot.model.size() + 1);
    size_t got = 0;
    for (;;) {
      const ssize_t n = ::pread(fd, data.data() + got, data.size() - got,
                                static_cast<off_t>(got));
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    data.resize(got);
    if (FirstDifference(slot.model, data)) {
      return Mismatch(slot, "origin file " + when, 0, slot.model, data,
                      slot.name);
    }
  }
  return true;
}

void Harness::StartReaders() {
  stop_readers_.store(false);
  ++reader_generation_;
  for (int id = 0; id < options_.readers; ++id) {
    readers_.emplace_back([this, id] { ReaderLoop(id); });
  }
}

void Harness::StopReaders() {
  stop_readers_.store(true);
  for (std::thread& t : readers_) t.join();
  readers_.clear();
}

void Harness::ReaderLoop(int id) {
  // Readers' choices need not be reproducible (their timing is not), only
  // different per reader and per engine lifetime.
  Rng rng(options_.seed ^
          (0x9e3779b97f4a7c15ull * (reader_generation_ * 64 + id + 1)));
  while (!stop_readers_.load() && !failed_.load()) {
    const int index = static_cast<int>(rng() % slots_.size());
    Slot& slot = *slots_[index];
    // Never blocks: the writer may hold the slot until the readers stop.
    while (slot.writer_waiting.load() || !slot.mu.try_lock_shared()) {
      if (stop_readers_.load()) return;
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    std::shared_lock<std::shared_mutex> lock(slot.mu, std::adopt_lock);
    const uint64_t size = slot.model.size();
    const uint64_t offset = PickOffset(slot, rng, size + 4096);
    const uint64_t length = 1 + rng() % (rng() % 4 == 0 ? 256 * 1024 : 8192);
    if (!CheckRead(slot, offset, length, "reader")) return;
    reader_reads_.fetch_add(1);
  }
}

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

void Harness::Watchdog() {
  // The stop signals are blocked in every thread and taken here, where the
  // temp dirs can still be removed (a test timeout sends SIGTERM).
  const sigset_t signals = StopSignals();
  uint64_t last = progress_.load();
  auto since = std::chrono::steady_clock::now();
  while (!done_.load()) {
    const timespec tick{0, 100'000'000};
    const int sig = ::sigtimedwait(&signals, nullptr, &tick);
    if (sig > 0) {
      Abandon("interrupted by signal " + std::to_string(sig), 128 + sig);
    }
    const auto now = std::chrono::steady_clock::now();
    if (progress_.load() != last || failed_.load()) {
      last = progress_.load();
      since = now;
      continue;
    }
    if (now - since >= std::chrono::duration<double>(options_.stall_s)) {
      // A hang is a bug too.
      char why[64];
      std::snprintf(why, sizeof(why), "HANG: no IO finished for %.0f s",
                    options_.stall_s);
      Abandon(why, 1);
    }
  }
}

void Harness::Abandon(const std::string& why, int exit_code) {
  std::lock_guard<std::mutex> lock(print_mu);
  std::printf(
      "\n*** %s (seed %llu, during op #%llu %s)\n"
      "last ops (oldest first):\n%s",
      why.c_str(), static_cast<unsigned long long>(options_.seed),
      static_cast<unsigned long long>(op_no_.load()),
      OpName(current_op_.load()), history_.Dump(50).c_str());
  std::fflush(stdout);
  // Nothing can be torn down safely while other threads may be stuck; the
  // temp dirs at least do not outlive the run.
  if (!options_.keep && !root_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  ::_exit(exit_code);
}

bool Harness::Fail(const std::string& what) {
  failures_.fetch_add(1);
  stop_readers_.store(true);
  if (failed_.exchange(true)) return false;  // the first report is the one
  std::lock_guard<std::mutex> lock(print_mu);
  std::printf("\n*** FAILURE (seed %llu, during op #%llu %s)\n%s\n",
              static_cast<unsigned long long>(options_.seed),
              static_cast<unsigned long long>(op_no_.load()),
              OpName(current_op_.load()), what.c_str());
  std::printf("last ops (oldest first):\n%s", history_.Dump(50).c_str());
  std::string again;
  for (size_t i = 0; i < options_.argv.size(); ++i) {
    if (options_.argv[i] == "--seed")
      ++i;  // replaced below
    else
      again += options_.argv[i] + " ";
  }
  std::printf("reproduce: %s--seed %llu\n", again.c_str(),
              static_cast<unsigned long long>(options_.seed));
  std::fflush(stdout);
  return false;
}

bool Harness::Mismatch(const Slot& slot, const std::string& who,
                       uint64_t offset, std::span<const std::byte> expected,
                       std::span<const std::byte> got,
                       const std::string& what) {
  const uint64_t bs = options_.block_size;
  const uint64_t at = offset + FirstDifference(expected, got).value_or(0);
  const uint64_t block = at / bs;
  return Fail(
      "MISMATCH (" + who + "): " + what + "\n" +
      DescribeDifference(expected, got, offset, bs) +
      "ops that could have changed block " + std::to_string(block) + " of " +
      slot.name + " (oldest first):\n" +
      history_.DumpTouching(slot.index, block * bs, (block + 1) * bs, 30));
}

void Harness::AddStats(const cache::EngineSnapshot& s) {
  tally_.engine.promotions += s.promotions;
  tally_.engine.demotions += s.demotions;
  tally_.engine.writebacks += s.writebacks;
  tally_.engine.overwrites += s.overwrites;
  tally_.engine.migration_failures += s.migration_failures;
  tally_.engine.migration_aborts += s.migration_aborts;
  tally_.engine.read_hits += s.read_hits;
  tally_.engine.read_misses += s.read_misses;
  tally_.engine.write_hits += s.write_hits;
  tally_.engine.write_misses += s.write_misses;
  tally_.engine.hole_skips += s.hole_skips;
}

int Harness::Run() {
  // Injected IO errors make the engine warn at each one; its errors still
  // show.
  if (options_.any_errors() && !options_.verbose) {
    SetLogLevel(LogLevel::kError);
  }
  if (!Setup()) return 1;
  std::printf(
      "tierfs-stress: seed %llu, %d volumes up to %llu MiB, %scache %llu x "
      "%llu KiB, %d readers, crash every %llu ops, errors: cache writes %g, "
      "origin writes %g, reads %g, syncs %g, in %s\n",
      static_cast<unsigned long long>(options_.seed), options_.volumes,
      static_cast<unsigned long long>(options_.max_file_size >> 20),
      options_.thin ? "thin " : "",
      static_cast<unsigned long long>(options_.cache_blocks),
      static_cast<unsigned long long>(options_.block_size >> 10),
      options_.readers, static_cast<unsigned long long>(options_.crash_every),
      options_.cache_errors, options_.origin_errors, options_.read_errors,
      options_.sync_errors, root_.c_str());
  std::fflush(stdout);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline =
      start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                  std::chrono::duration<double>(options_.duration_s));
  std::discrete_distribution<int> pick(options_.mix.begin(),
                                       options_.mix.end());
  StartReaders();
  while (!failed_.load() && std::chrono::steady_clock::now() < deadline &&
         (options_.ops == 0 || op_no_.load() < options_.ops)) {
    const uint64_t n = op_no_.fetch_add(1) + 1;
    const int op = options_.crash_every != 0 && n % options_.crash_every == 0
                       ? kCrash
                       : pick(rng_);
    ++tally_.ops[op];
    current_op_.store(op);
    if (!RunOp(op)) break;
    if (engine_) {
      // The engine's count of held sectors against a recount.
      const auto [counted, recounted] = engine_->HeldSectors();
      if (counted != recounted) {
        Fail("the engine counts " + std::to_string(counted) +
             " held sectors, its mappings hold " + std::to_string(recounted) +
             " (after " + OpName(op) + ")");
        break;
      }
    }
    progress_.fetch_add(1);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  // The end of a run is a clean unmount and remount, checked like a crash.
  if (!failed_.load()) {
    current_op_.store(kRestart);
    Reopen(/*crash=*/false);
  }
  WaitAdmin();
  StopReaders();
  if (engine_) AddStats(engine_->Snapshot());
  PrintSummary(seconds);
  return failed_.load() ? 1 : 0;
}

void Harness::PrintSummary(double seconds) {
  const uint64_t ops = op_no_.load();
  nlohmann::json j;
  j["seed"] = options_.seed;
  j["thin"] = options_.thin;
  j["cache_errors"] = options_.cache_errors;
  j["origin_errors"] = options_.origin_errors;
  j["read_errors"] = options_.read_errors;
  j["sync_errors"] = options_.sync_errors;
  j["result"] = failed_.load() ? "FAIL" : "PASS";
  j["ops"] = ops;
  j["seconds"] = seconds;
  j["ops_per_second"] = seconds > 0 ? ops / seconds : 0;
  j["reader_reads"] = reader_reads_.load();
  j["crashes"] = tally_.crashes;
  j["clean_restarts"] = tally_.restarts;
  j["failures"] = failures_.load();
  j["failed_writes"] = tally_.failed_writes;
  j["failed_reads"] = failed_reads_.load();
  j["verified_bytes"] = tally_.verified_bytes;
  std::string mix;
  for (int op = 0; op < kOpCount; ++op) {
    j["mix"][OpName(op)] = tally_.ops[op];
    if (tally_.ops[op] == 0) continue;
    mix += std::string(mix.empty() ? "" : ",") + OpName(op) + "=" +
           std::to_string(tally_.ops[op]);
  }
  const cache::EngineSnapshot& t = tally_.engine;
  j["engine"] = {{"promotions", t.promotions},
                 {"demotions", t.demotions},
                 {"writebacks", t.writebacks},
                 {"overwrites", t.overwrites},
                 {"migration_failures", t.migration_failures},
                 {"migration_aborts", t.migration_aborts},
                 {"hole_skips", t.hole_skips},
                 {"read_hits", t.read_hits},
                 {"read_misses", t.read_misses},
                 {"write_hits", t.write_hits},
                 {"write_misses", t.write_misses}};
  std::printf(
      "tierfs-stress: %s seed=%llu ops=%llu (%.0f ops/s) reader_reads=%llu "
      "crashes=%llu restarts=%llu failures=%llu verified=%llu MiB "
      "failed_writes=%llu failed_reads=%llu\n"
      "  mix: %s\n"
      "  engine: promotions=%llu demotions=%llu writebacks=%llu "
      "overwrites=%llu migration_failures=%llu migration_aborts=%llu "
      "read_hits=%llu "
      "read_misses=%llu write_hits=%llu write_misses=%llu\n",
      failed_.load() ? "FAIL" : "PASS",
      static_cast<unsigned long long>(options_.seed),
      static_cast<unsigned long long>(ops), seconds > 0 ? ops / seconds : 0.0,
      static_cast<unsigned long long>(reader_reads_.load()),
      static_cast<unsigned long long>(tally_.crashes),
      static_cast<unsigned long long>(tally_.restarts),
      static_cast<unsigned long long>(failures_.load()),
      static_cast<unsigned long long>(tally_.verified_bytes >> 20),
      static_cast<unsigned long long>(tally_.failed_writes),
      static_cast<unsigned long long>(failed_reads_.load()), mix.c_str(),
      static_cast<unsigned long long>(t.promotions),
      static_cast<unsigned long long>(t.demotions),
      static_cast<unsigned long long>(t.writebacks),
      static_cast<unsigned long long>(t.overwrites),
      static_cast<unsigned long long>(t.migration_failures),
      static_cast<unsigned long long>(t.migration_aborts),
      static_cast<unsigned long long>(t.read_hits),
      static_cast<unsigned long long>(t.read_misses),
      static_cast<unsigned long long>(t.write_hits),
      static_cast<unsigned long long>(t.write_misses));
  std::fflush(stdout);
  if (!options_.json.empty()) {
    std::ofstream(options_.json) << j.dump(2) << "\n";
  }
}

}  // namespace tierfs::stress
