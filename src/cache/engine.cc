// The cache engine's life cycle, metadata glue, run-time configuration
// (mode and policy switches) and stats. The IO path is in io_path.cc, the
// volume table in volume_table.cc, range operations in range_ops.cc and
// migrations in migration.cc.

#include "src/cache/engine.h"

#include <algorithm>

#include "policy/registry.h"
#include "src/cache/worker_pool.h"
#include "src/prison/prison.h"
#include "src/util/geometry.h"
#include "src/util/log.h"

namespace tierfs::cache {
std::optional<Mode> ParseMode(std::string_view name) {
  if (name == "writeback") return Mode::kWriteback;
  if (name == "writethrough") return Mode::kWritethrough;
  if (name == "passthrough") return Mode::kPassthrough;
  return std::nullopt;
}

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kWriteback:
      return "writeback";
    case Mode::kWritethrough:
      return "writethrough";
    case Mode::kPassthrough:
      return "passthrough";
  }
  return "?";
}

Result<std::unique_ptr<CacheEngine>> CacheEngine::Create(
    const EngineOptions& options, std::unique_ptr<io::File> cache_store,
    std::string* error_message) {
  auto fail = [&](int err, std::string text) -> std::error_code {
    if (error_message != nullptr) *error_message = std::move(text);
    return ErrnoCode(err);
  };
  const uint64_t bs = options.block_size;
  if (std::string why = GeometryProblem(bs, options.cache_blocks);
      !why.empty()) {
    return fail(EINVAL, std::move(why));
  }
  Result<uint64_t> size = cache_store->Size();
  if (!size.ok()) return fail(size.error().value(), "cannot stat cache store");
  if (*size < options.cache_blocks * bs) {
    return fail(EINVAL,
                "cache store is smaller than cache_blocks * block_size");
  }
  std::string policy_error;
  Result<std::unique_ptr<policy::Policy>> policy = policy::CreatePolicy(
      options.policy,
      policy::PolicyParams{options.cache_blocks, options.block_size},
      options.policy_config, &policy_error);
  if (!policy.ok()) return fail(EINVAL, policy_error);
  return std::unique_ptr<CacheEngine>(new CacheEngine(
      options, std::move(cache_store), std::move(policy).value()));
}

std::unique_ptr<CacheEngine> CacheEngine::CreateUncached() {
  EngineOptions options;
  options.mode = Mode::kPassthrough;
  options.cache_blocks = 1;  // the policy's minimum; never used
  options.policy = "lru";
  options.migration_threads = 1;
  std::unique_ptr<policy::Policy> policy =
      std::move(policy::CreatePolicy(options.policy,
                                     policy::PolicyParams{options.cache_blocks,
                                                          options.block_size},
                                     options.policy_config, nullptr)
                    .value());
  return std::unique_ptr<CacheEngine>(
      new CacheEngine(options, nullptr, std::move(policy), true));
}

CacheEngine::CacheEngine(const EngineOptions& options,
                         std::unique_ptr<io::File> cache,
                         std::unique_ptr<policy::Policy> policy, bool uncached)
    : options_(options),
      uncached_(uncached),
      cache_(std::move(cache)),
      prison_(std::make_unique<prison::Prison>()),
      mode_(options.mode),
      policy_(std::move(policy)),
      sectors_(options.block_size),
      meta_(options.metadata.get()),
      read_only_(options.read_only),
      migration_threshold_(
          std::max(options.migration_threshold, options.block_size)) {
  write_hits_.assign(options.cache_blocks, 0);
  invalid_.assign(options.cache_blocks, 0);
  if (thin()) freed_seq_.assign(options.cache_blocks, kNotFreed);
  index_.Reserve(options.cache_blocks);
  if (options.read_only) {
    read_only_reason_ = "started read-only";
    migrations_allowed_.store(false);
    policy_->AllowMigrations(false);
  }
  if (meta_ != nullptr) {
    meta_->SetCacheStore(cache_.get());
    meta_->SetSnapshot(
        [this](meta::Checkpoint* cp, const std::function<void()>& capture) {
          TakeCheckpoint(cp, capture);
        });
  }
  pool_ = std::make_unique<WorkerPool>(options.migration_threads, options.tick,
                                       [this] { OnTick(); });
  pool_->StartTicking();
  resume_pool_ = std::make_unique<WorkerPool>(kResumeThreads, options.tick,
                                              std::function<void()>());
}

CacheEngine::~CacheEngine() {
  Shutdown();
  resume_pool_.reset();
  pool_.reset();
  if (meta_ != nullptr) meta_->SetSnapshot({});
}

void CacheEngine::TakeCheckpoint(meta::Checkpoint* cp,
                                 const std::function<void()>& capture) {
  std::lock_guard<std::mutex> lock(policy_mu_);
  cp->policy = std::string(policy_->Name());
  cp->mappings.reserve(policy_->Residency());
  policy_->ForEachMapping([&](OBlock oblock, CBlock cblock, bool dirty) {
    cp->mappings.push_back(meta::MappingRecord{cblock, oblock, dirty,
                                               policy_->GetHint(cblock),
                                               invalid_[cblock.value()]});
  });
  capture();
}

void CacheEngine::Reindex(OBlock oblock) {
  std::optional<CBlock> cblock = policy_->Peek(oblock);
  index_.Set(oblock, cblock, cblock && policy_->IsDirty(*cblock),
             cblock ? invalid_[cblock->value()] : 0);
}

uint64_t CacheEngine::Unmap(CBlock cblock) {
  std::optional<OBlock> oblock = policy_->MappedOBlock(cblock);
  if (!oblock) return 0;
  policy_->InvalidateMapping(cblock);
  ReleaseSectors(cblock);
  writethrough_writers_.erase(cblock.value());
  Reindex(*oblock);
  const uint64_t seq = meta_ != nullptr ? meta_->AppendUnmap(cblock) : 0;
  SlotFreed(cblock, seq);
  return seq;
}

uint64_t CacheEngine::MarkDirty(CBlock cblock) {
  policy_->SetDirty(cblock);
  if (std::optional<OBlock> oblock = policy_->MappedOBlock(cblock)) {
    Reindex(*oblock);
  }
  return meta_ != nullptr ? meta_->AppendDirty(cblock) : 0;
}

std::error_code CacheEngine::Durable(uint64_t seq) {
  return WaitForRecord(seq, true);
}

std::error_code CacheEngine::Written(uint64_t seq) {
  return WaitForRecord(seq, false);
}

std::error_code CacheEngine::WaitForRecord(uint64_t seq, bool durable) {
  if (meta_ == nullptr || seq == 0) return {};
  Status st = durable ? meta_->WaitDurable(seq) : meta_->WaitWritten(seq);
  if (st.ok()) return {};
  EnterReadOnly("metadata write failed: " + st.error().message());
  return st.error();
}

std::error_code CacheEngine::AllDurable() {
  return meta_ != nullptr ? Durable(meta_->last_seq()) : std::error_code();
}

std::error_code CacheEngine::FreedSlotDurable(CBlock cblock) {
  if (meta_ != nullptr) {
    if (std::error_code ec = Durable(meta_->PendingUnmap(cblock).value_or(0))) {
      return ec;
    }
  }
  if (thin()) {
    // Its old sectors would otherwise stay allocated beside the new ones.
    std::lock_guard<std::mutex> lock(punch_mu_);
    PunchSlotLocked(cblock.value());
  }
  return {};
}

void CacheEngine::EnterReadOnly(const std::string& reason) {
  if (read_only_.exchange(true)) return;
  TIERFS_LOG_ERROR("cache is read-only from now on: %s", reason.c_str());
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    read_only_reason_ = reason;
  }
  migrations_allowed_.store(false);
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    policy_->AllowMigrations(false);
  }
  if (meta_ != nullptr) meta_->MarkNeedsCheck(reason);
}

bool CacheEngine::DrainMigrations() {
  const bool was = migrations_allowed_.exchange(false);
  {
    // PullWork hands out work and counts it in flight under this lock, after
    // checking migrations_allowed_: past here nothing new starts.
    std::lock_guard<std::mutex> lock(policy_mu_);
    policy_->AllowMigrations(false);
  }
  std::unique_lock<std::mutex> lock(drain_mu_);
  drain_cv_.wait(lock, [this] { return in_flight_.load() == 0; });
  return was;
}

Status CacheEngine::SwitchPolicy(std::string_view name,
                                 std::string* error_message) {
  Result<std::unique_ptr<policy::Policy>> fresh = policy::CreatePolicy(
      name, policy::PolicyParams{options_.cache_blocks, options_.block_size},
      {}, error_message);
  if (!fresh.ok()) return fresh.error();
  std::unique_lock<std::shared_mutex> admin(admin_mu_);
  // Quiet the old policy: no new background work, none in flight.
  const bool allowed = DrainMigrations();
  Status st;
  {
    std::unique_lock<std::mutex> lock(policy_mu_);
    policy_cv_.wait(lock, [this] { return overwrites_pending_ == 0; });
    const bool same_kind = policy_->Name() == (*fresh)->Name();
    policy_->ForEachMapping([&](OBlock oblock, CBlock cblock, bool dirty) {
      Status one = (*fresh)->LoadMapping(oblock, cblock, dirty,
                                         policy_->GetHint(cblock), same_kind);
      if (st.ok() && !one.ok()) st = one;
    });
    if (st.ok()) {
      dropped_before_switch_ += policy_->DroppedPromotions();
      policy_ = std::move(fresh).value();
      UpdateCapacity();
    } else if (error_message != nullptr) {
      *error_message = "cannot move mappings to the new policy";
    }
  }
  if (allowed) AllowMigrations(true);
  return st;
}

Status CacheEngine::SetMode(Mode mode) {
  if (uncached_ && mode != Mode::kPassthrough) return ErrnoCode(EINVAL);
  std::unique_lock<std::shared_mutex> admin(admin_mu_);
  // No request and no migration may run across the switch (discipline
  // point 1): a write that looked the mode up before it changed must not
  // finish after it, and the mode flips only together with the unmaps
  // that passthrough needs, once they are durable.
  gate_.Close();
  const bool allowed = DrainMigrations();
  Status result;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    if (mode == Mode::kPassthrough && policy_->DirtyCount() != 0) {
      result = ErrnoCode(EBUSY);
    } else if (mode_.exchange(mode) != Mode::kPassthrough &&
               mode == Mode::kPassthrough) {
      // No new mappings appear in passthrough; drop the clean ones so a
      // later switch back never serves a copy that passthrough writes made
      // stale.
      std::vector<CBlock> all;
      policy_->ForEachMapping(
          [&](OBlock, CBlock cblock, bool) { all.push_back(cblock); });
      for (CBlock cblock : all) Unmap(cblock);
    }
  }
  if (result.ok()) result = AllDurable();
  if (allowed) AllowMigrations(true);
  Dispatch(gate_.Open());
  return result;
}

void CacheEngine::Dispatch(std::vector<UniqueFunction<void()>> continuations) {
  // Only requests park in the prison (migrations never wait for a cell).
  for (auto& k : continuations) resume_pool_->Post(std::move(k));
}

void CacheEngine::SetMigrationThreshold(uint64_t bytes) {
  migration_threshold_.store(std::max(bytes, options_.block_size));
  KickMigrations();
}

Status CacheEngine::SetPolicyConfig(std::string_view key,
                                    std::string_view value) {
  std::lock_guard<std::mutex> lock(policy_mu_);
  return policy_->SetConfigValue(key, value);
}

void CacheEngine::AllowMigrations(bool allow) {
  if (allow && read_only_.load()) return;  // nothing may be recorded now
  migrations_allowed_.store(allow);
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    policy_->AllowMigrations(allow);
  }
  if (allow) KickMigrations();
}

EngineSnapshot CacheEngine::Snapshot() const {
  EngineSnapshot s;
  s.block_size = options_.block_size;
  s.cache_blocks = uncached_ ? 0 : options_.cache_blocks;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    s.used_blocks = policy_->Residency();
    s.dirty_blocks = policy_->DirtyCount();
    s.partial_blocks = index_.Partial();
    s.held_bytes = held_sectors_ * sectors_.size();
    if (thin()) {
      s.budget_bytes = options_.budget_blocks * options_.block_size;
      s.capacity_blocks = policy_->Capacity();
    }
    s.promotions_dropped =
        dropped_before_switch_ + policy_->DroppedPromotions();
    s.policy = std::string(policy_->Name());
    s.policy_config = policy_->EmitConfigValues();
    s.read_only_reason = read_only_reason_;
  }
  s.read_only = read_only_.load();
  s.persistent = meta_ != nullptr;
  if (meta_ != nullptr) s.metadata = meta_->GetStats();
  auto get = [](const Counter& c) { return c.load(std::memory_order_relaxed); };
  s.read_hits = get(counters_.io.read_hits);
  s.read_misses = get(counters_.io.read_misses);
  s.write_hits = get(counters_.io.write_hits);
  s.write_misses = get(counters_.io.write_misses);
  s.bypassed = get(counters_.io.bypassed);
  s.promotions = get(counters_.promotions);
  s.demotions = get(counters_.demotions);
  s.writebacks = get(counters_.writebacks);
  s.overwrites = get(counters_.overwrites);
  s.promotions_on_read = get(counters_.promotions_on_read);
  s.sector_fills = get(counters_.sector_fills);
  s.migration_failures = get(counters_.migration_failures);
  s.migration_aborts = get(counters_.migration_aborts);
  s.cache_errors = get(counters_.cache_errors);
  s.origin_errors = get(counters_.origin_errors);
  s.hole_skips = get(counters_.hole_skips);
  s.policy_lock_waits = get(counters_.policy_lock_waits);
  s.migrations_in_flight = in_flight_.load();
  s.migration_bytes_in_flight = in_flight_bytes_.load();
  s.read_p50_us = counters_.read_latency.PercentileMicros(0.5);
  s.read_p99_us = counters_.read_latency.PercentileMicros(0.99);
  s.read_p999_us = counters_.read_latency.PercentileMicros(0.999);
  s.write_p50_us = counters_.write_latency.PercentileMicros(0.5);
  s.write_p99_us = counters_.write_latency.PercentileMicros(0.99);
  s.write_p999_us = counters_.write_latency.PercentileMicros(0.999);
  s.mode = mode();
  s.migration_threshold = migration_threshold_.load();
  s.cache_direct_io = cache_ != nullptr && cache_->direct();
  s.writeback_rate = writeback_rate_.load();
  s.migrations_allowed = migrations_allowed_.load();
  s.cache_last_error = cache_health_.last_error();
  s.origin_last_error = origin_health_.last_error();
  s.cache_failing = cache_health_.failing();
  s.origin_failing = origin_health_.failing();
  s.migration_backoff_ms = backoff_.delay_ms();
  return s;
}

Status CacheEngine::Restore(std::vector<meta::ResolvedVolume> volumes,
                            const std::vector<meta::MappingRecord>& mappings,
                            bool hints_valid, std::string_view hints_policy) {
  std::vector<std::shared_ptr<Volume>> restored;
  {
    std::lock_guard<std::mutex> vlock(volumes_mu_);
    for (meta::ResolvedVolume& rv : volumes) {
      if (!rv.origin) continue;
      const VolumeId id = rv.record.id;
      auto volume =
          std::make_shared<Volume>(id, rv.stat.dev, rv.stat.ino, rv.stat.size);
      volume->origin_ = std::move(rv.origin);
      volume->origin_writable_ = true;  // ResolveVolumes opens read-write
      volume->name_ = rv.record.path;
      volumes_[{rv.stat.dev, rv.stat.ino}] = volume;
      by_id_[id.value()] = volume;
      next_volume_id_ = std::max(next_volume_id_, id.value() + 1);
      restored.push_back(volume);
    }
    std::lock_guard<std::mutex> plock(policy_mu_);
    const bool hints = hints_valid && hints_policy == policy_->Name();
    for (const meta::MappingRecord& m : mappings) {
      auto it = by_id_.find(m.oblock.volume.value());
      if (it == by_id_.end()) {
        return ErrnoCode(EINVAL);  // the caller broke the contract
      }
      if (!WholeBlock(*it->second, m.oblock.index)) {
        // Past the end of the file: a truncate reached the origin and the
        // crash came before its unmaps were durable. The truncate wins.
        continue;
      }
      if (!sectors_.Possible(m.invalid)) {
        return ErrnoCode(EINVAL);  // the loader reports it as damage
      }
      Status st =
          policy_->LoadMapping(m.oblock, m.cblock, m.dirty, m.hint, hints);
      if (!st.ok()) return st;
      HoldSectors(m.cblock, m.invalid);
      index_.Set(m.oblock, m.cblock, m.dirty, m.invalid);
    }
    UpdateCapacity();
  }
  // Nothing is open yet: keep origin fds only where writeback needs them.
  for (const std::shared_ptr<Volume>& volume : restored) MaybeRelease(volume);
  return OkStatus();
}

Status CacheEngine::CloseCleanly() {
  Shutdown();
  if (meta_ == nullptr) return OkStatus();
  if (read_only_.load()) return ErrnoCode(EROFS);
  {
    // Each volume's size and mtime now, so the next mount can tell whether
    // the file changed behind tierfs's back.
    std::vector<meta::VolumeRecord> records;
    std::lock_guard<std::mutex> vlock(volumes_mu_);
    for (const auto& [id, volume] : by_id_) {
      if (!volume->removed()) records.push_back(VolumeRecordOf(*volume));
    }
    std::lock_guard<std::mutex> plock(policy_mu_);
    for (const meta::VolumeRecord& r : records) meta_->AppendVolume(r);
  }
  Status st = meta_->Checkpoint(true);
  if (!st.ok())
    EnterReadOnly("final checkpoint failed: " + st.error().message());
  return st;
}

}  // namespace tierfs::cache