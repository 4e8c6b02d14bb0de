#include "meta/tools.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "src/util/geometry.h"
#include "src/util/size.h"

namespace tierfs::meta {
namespace {

using json = nlohmann::json;

std::string Plural(uint64_t n, const char* what) {
  const std::string w = what;
  if (n == 1) return "1 " + w;
  return std::to_string(n) + " " + w + (w.ends_with("ch") ? "es" : "s");
}

std::optional<Uuid> ParseUuid(const std::string& text) {
  Uuid u{};
  size_t i = 0;
  for (size_t p = 0; p < text.size(); ++p) {
    if (text[p] == '-') continue;
    if (i == 32 || p + 1 > text.size()) return std::nullopt;
    const int d = std::isxdigit(static_cast<unsigned char>(text[p]))
                      ? (std::isdigit(static_cast<unsigned char>(text[p]))
                             ? text[p] - '0'
                             : std::tolower(text[p]) - 'a' + 10)
                      : -1;
    if (d < 0) return std::nullopt;
    u[i / 2] = static_cast<uint8_t>(u[i / 2] | (i % 2 ? d : d << 4));
    ++i;
  }
  if (i != 32) return std::nullopt;
  return u;
}

// Mappings and volumes of `state` that a checkpoint can hold: each cblock
// and each origin block once, every volume known. Empty when valid.
std::string StateProblem(const LoadedState& state) {
  std::set<uint32_t> ids;
  for (const VolumeRecord& v : state.volumes) {
    if (!ids.insert(v.id.value()).second) {
      return "volume " + std::to_string(v.id.value()) + " listed twice";
    }
  }
  std::set<uint32_t> cblocks;
  std::set<OBlock> oblocks;
  const Sectors sectors(state.super.block_size);
  for (const MappingRecord& m : state.mappings) {
    if (!sectors.Possible(m.invalid)) {
      return "cache block " + std::to_string(m.cblock.value()) +
             " has an impossible sector mask";
    }
    if (!cblocks.insert(m.cblock.value()).second) {
      return "cache block " + std::to_string(m.cblock.value()) +
             " mapped twice";
    }
    if (!oblocks.insert(m.oblock).second) {
      return "block " + std::to_string(m.oblock.index) + " of volume " +
             std::to_string(m.oblock.volume.value()) + " mapped twice";
    }
    if (!ids.count(m.oblock.volume.value())) {
      return "cache block " + std::to_string(m.cblock.value()) +
             " maps unknown volume " + std::to_string(m.oblock.volume.value());
    }
  }
  return "";
}

}  // namespace

Result<std::unique_ptr<MetaStore>> FormatCache(
    io::Env* env, const std::string& meta_dir, const std::string& fast_dir,
    const FormatOptions& options, std::unique_ptr<io::File>* cache_store,
    std::string* error_message) {
  // Before anything is allocated for it.
  if (std::string why =
          GeometryProblem(options.block_size, options.cache_blocks);
      !why.empty()) {
    *error_message = "invalid cache geometry: " + why;
    return ErrnoCode(EINVAL);
  }
  const std::string path = meta_dir + "/" + kCacheStoreName;
  const uint64_t bytes = options.cache_blocks * options.block_size;
  io::OpenOptions open;
  open.create = true;
  open.truncate = true;
  open.mode = 0600;
  Result<std::unique_ptr<io::File>> store = env->OpenAt(AT_FDCWD, path, open);
  if (!store.ok()) {
    *error_message =
        "cannot create cache store " + path + ": " + store.error().message();
    return store.error();
  }
  // What a cache of this size needs free in the fast dir: all of it,
  // preallocated; a thin cache's store is sparse (its slots take space
  // only for the sectors they hold, and the engine punches what it drops),
  // so its budget must be free, and punching must work.
  const bool thin = options.budget_blocks != 0;
  const uint64_t needed =
      BudgetBlocks(options.cache_blocks, options.budget_blocks) *
      options.block_size;
  Status st = thin ? (*store)->Truncate(bytes) : (*store)->Allocate(0, bytes);
  if (st.ok() && thin) st = (*store)->PunchHole(0, options.block_size);
  struct statvfs vfs;
  const bool statted = ::statvfs(fast_dir.c_str(), &vfs) == 0;
  const uint64_t free_bytes =
      statted ? static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize : 0;
  if (st.ok() && thin && statted && free_bytes < needed) {
    st = ErrnoCode(ENOSPC);
  }
  if (!st.ok()) {
    if (st.error().value() == ENOSPC) {
      *error_message = "not enough space in fast dir " + fast_dir + " for a " +
                       FormatSize(needed) + " cache (" +
                       (statted ? FormatSize(free_bytes) : "unknown") +
                       " free); use a smaller --cache-size";
    } else if (thin && st.error().value() == EOPNOTSUPP) {
      *error_message = "fast dir " + fast_dir +
                       " cannot punch holes in files, which a thin cache "
                       "needs to give back dropped blocks' space; format it "
                       "without --thin";
    } else {
      *error_message =
          "cannot allocate cache store " + path + ": " + st.error().message();
    }
    (*store)->Truncate(0).ok();
    return st.error();
  }
  Result<std::unique_ptr<MetaStore>> meta =
      MetaStore::Format(env, meta_dir, options, error_message);
  if (!meta.ok()) return meta.error();
  *cache_store = std::move(store).value();
  return meta;
}

Status WriteFreshMetadata(io::Env* env, const std::string& dir,
                          const LoadedState& state,
                          std::string* error_message) {
  auto fail = [&](std::error_code ec, const std::string& what) {
    *error_message = what + ": " + ec.message();
    return ec;
  };
  Superblock sb = state.super;
  sb.version = VersionFor(sb.budget_blocks);
  sb.flags = state.clean_shutdown ? uint32_t{kCleanShutdown} : 0u;
  sb.reason.clear();
  std::string why;
  if (!DecodeSuperblock(EncodeSuperblock(sb), &why)) {
    *error_message = "invalid superblock: " + why;
    return ErrnoCode(EINVAL);
  }
  if (std::string problem = StateProblem(state); !problem.empty()) {
    *error_message = "invalid state: " + problem;
    return ErrnoCode(EINVAL);
  }
  // What the metadata being replaced holds, so that nothing of it can win
  // over the new state after a crash half way through.
  uint64_t checkpoint_sequence = state.checkpoint_sequence;
  uint64_t seq_floor = std::max(state.next_seq, state.journal_seq_limit);
  uint64_t generation = sb.generation;
  {
    std::string ignored;
    Result<LoadedState> old = Load(env, dir, &ignored);
    if (old.ok()) {
      generation = std::max(generation, old->super.generation);
      if (old->super.uuid == sb.uuid) {
        checkpoint_sequence =
            std::max(checkpoint_sequence, old->checkpoint_sequence);
        seq_floor =
            std::max({seq_floor, old->next_seq, old->journal_seq_limit});
      }
    }
  }

  Checkpoint cp;
  cp.uuid = sb.uuid;
  cp.next_seq = seq_floor;
  cp.replay_pos = 0;
  cp.next_volume_id = state.next_volume_id;
  for (const VolumeRecord& v : state.volumes) {
    cp.next_volume_id = std::max(cp.next_volume_id, v.id.value() + 1);
  }
  cp.hints_valid = state.hints_valid && state.clean_shutdown;
  cp.policy = state.hints_policy.empty() ? sb.policy : state.hints_policy;
  cp.volumes = state.volumes;
  cp.mappings = state.mappings;
  std::sort(cp.mappings.begin(), cp.mappings.end(),
            [](const MappingRecord& a, const MappingRecord& b) {
              return a.cblock < b.cblock;
            });
  // Both slots hold the new state; the second written has the higher
  // sequence number.
  for (uint64_t i = 1; i <= 2; ++i) {
    cp.sequence = checkpoint_sequence + i;
    const char* name = kCheckpointNames[cp.sequence % 2];
    std::vector<std::byte> data = EncodeCheckpoint(cp);
    std::string check;
    if (!DecodeCheckpoint(data, sb.uuid, sb.cache_blocks, &check)) {
      *error_message = "invalid state: " + check;
      return ErrnoCode(EINVAL);
    }
    Result<std::unique_ptr<io::File>> file =
        OpenInDir(env, dir, name, true, true);
    if (!file.ok()) return fail(file.error(), name);
    Status st = (*file)->WriteAt(0, data);
    if (st.ok()) st = (*file)->Truncate(data.size());
    if (st.ok()) st = (*file)->Sync();
    if (!st.ok()) return fail(st.error(), std::string("writing ") + name);
  }
  // An empty journal (the ring reads back as zeros), then the superblock.
  Result<std::unique_ptr<io::File>> meta =
      OpenInDir(env, dir, kMetaFileName, true, true);
  if (!meta.ok()) return fail(meta.error(), kMetaFileName);
  Status st = (*meta)->Truncate(kJournalOffset);
  if (st.ok()) st = (*meta)->Allocate(0, kJournalOffset + sb.journal_size);
  if (!st.ok()) return fail(st.error(), "clearing the journal");
  for (int i = 0; i < 2 && st.ok(); ++i) {
    sb.generation = ++generation;
    st = (*meta)->WriteAt((sb.generation % kSuperblockCopies) * kPage,
                          EncodeSuperblock(sb));
    if (st.ok()) st = (*meta)->Sync();
  }
  if (st.ok()) st = SyncDir(env, dir);
  if (!st.ok()) return fail(st.error(), "writing the superblock");
  return OkStatus();
}

// --- a cache about to be used or replaced

ExistingCache FindExistingCache(io::Env* env, const std::string& meta_dir) {
  ExistingCache cache;
  const std::string meta_path = meta_dir + "/" + kMetaFileName;
  cache.exists = ::access(meta_path.c_str(), F_OK) == 0;
  if (!cache.exists) return cache;
  Result<LoadedState> loaded = Load(env, meta_dir, &cache.why);
  if (!loaded.ok()) {
    cache.error = loaded.error().value();
    return cache;
  }
  cache.uuid = UuidString(loaded->super.uuid);
  if (!loaded->damage.empty()) {
    cache.error = EUCLEAN;
    cache.why = loaded->damage;
    return cache;
  }
  for (const MappingRecord& m : loaded->mappings) cache.dirty += m.dirty;
  cache.state = std::move(loaded).value();
  return cache;
}

Status RefuseToDrop(const ExistingCache& cache, const std::string& fast_dir,
                    bool force, const std::string& asking,
                    const std::string& forcing, std::string* error_message) {
  if (force || !cache.exists) return OkStatus();
  if (!cache.state) {
    *error_message = asking + ": the cache metadata in " + fast_dir +
                     " cannot be read (" + cache.why +
                     "), so it may hold data not yet on the slow dir; run "
                     "'tierfs check --fast " +
                     fast_dir + "', or add " + forcing + " to drop it anyway";
    return ErrnoCode(EBUSY);
  }
  if (cache.dirty != 0) {
    *error_message = asking + " would drop " +
                     Plural(cache.dirty, "dirty block") +
                     " not yet written to the slow dir; run 'tierfs "
                     "writeback --fast " +
                     fast_dir + " --slow DIR' first, or add " + forcing;
    return ErrnoCode(EBUSY);
  }
  return OkStatus();
}

// --- check

namespace {

void Examine(io::Env* env, const std::string& meta_dir,
             const CheckOptions& options, CheckReport* r) {
  std::string error;
  Result<LoadedState> loaded = Load(env, meta_dir, &error);
  if (!loaded.ok()) {
    r->problems.push_back(error);
    return;
  }
  r->loaded = true;
  r->state = std::move(loaded).value();
  const LoadedState& s = r->state;
  for (int i = 0; i < 2; ++i) {
    if (!s.superblock_damage[i].empty()) {
      r->problems.push_back("superblock copy " + std::to_string(i) +
                            " is invalid (" + s.superblock_damage[i] +
                            "); copy " + std::to_string(1 - i) + " is used");
    }
  }
  if (s.has_checkpoint) {
    for (int i = 0; i < 2; ++i) {
      if (!s.checkpoint_damage[i].empty()) {
        r->problems.push_back(
            std::string(kCheckpointNames[i]) + " is invalid (" +
            s.checkpoint_damage[i] + "); " + kCheckpointNames[1 - i] +
            " is used (a crash while writing a checkpoint leaves this)");
      }
    }
  }
  if (!s.damage.empty()) r->problems.push_back("metadata damaged: " + s.damage);
  if (s.needs_check && s.damage.find("needing a check") == std::string::npos) {
    r->problems.push_back("marked as needing a check: " + s.super.reason);
  }

  const std::string store = meta_dir + "/" + kCacheStoreName;
  io::OpenOptions o;
  o.write = false;
  Result<std::unique_ptr<io::File>> file = env->OpenAt(AT_FDCWD, store, o);
  Result<uint64_t> size =
      file.ok() ? (*file)->Size() : Result<uint64_t>(file.error());
  if (!size.ok()) {
    r->problems.push_back("cannot open the cache store " + store + ": " +
                          size.error().message());
  } else if (*size < s.super.cache_blocks * s.super.block_size) {
    r->problems.push_back(
        "the cache store " + store + " is shorter (" + FormatSize(*size) +
        ") than the cache (" +
        FormatSize(s.super.cache_blocks * s.super.block_size) + ")");
  }

  std::map<uint32_t, CheckVolume> volumes;
  for (const VolumeRecord& v : s.volumes) {
    volumes[v.id.value()] = CheckVolume{v, "unchecked", "", 0, 0};
  }
  for (const MappingRecord& m : s.mappings) {
    r->dirty += m.dirty;
    CheckVolume& v = volumes[m.oblock.volume.value()];
    ++v.mapped;
    v.dirty += m.dirty;
  }
  if (options.slow_dirfd >= 0) {
    for (const ResolvedVolume& v :
         ResolveVolumes(env, options.slow_dirfd, s.volumes, s.clean_shutdown)) {
      CheckVolume& c = volumes[v.record.id.value()];
      c.record = v.record;
      c.state = VolumeStateName(v.state);
      c.why = v.why;
      if (v.state == VolumeState::kMissing && c.dirty != 0) {
        r->problems.push_back("'" + v.record.path + "' (volume " +
                              std::to_string(v.record.id.value()) + ") has " +
                              Plural(c.dirty, "dirty block") +
                              " but is not in the slow dir (" + v.why + ")");
      }
    }
  }
  for (auto& [id, v] : volumes) r->volumes.push_back(std::move(v));
}

}  // namespace

CheckReport Check(io::Env* env, const std::string& meta_dir,
                  const CheckOptions& options) {
  CheckReport r;
  Examine(env, meta_dir, options, &r);
  if (!options.repair || r.problems.empty()) return r;
  std::vector<std::string> repairs;
  if (!r.loaded) {
    r.repairs.push_back(
        "cannot repair: without a valid superblock the cache's geometry is "
        "unknown; start over with 'tierfs format --force --discard-dirty' "
        "(the cache's contents are lost)");
    r.repair_refused = true;
    return r;
  }
  LoadedState fixed = r.state;
  const LoadedState& s = r.state;
  if (!s.has_checkpoint) {
    if (!options.force) {
      r.repairs.push_back(
          "refusing to repair: no valid checkpoint is left, so the cache's "
          "mappings cannot be recovered and dirty data in the cache (not yet "
          "on the slow dir) may be lost; add --force to start over with "
          "empty metadata");
      r.repair_refused = true;
      return r;
    }
    fixed.mappings.clear();
    fixed.volumes.clear();
    fixed.clean_shutdown = false;
    fixed.hints_valid = false;
    repairs.push_back(
        "no valid checkpoint: wrote empty metadata (--force); whatever the "
        "cache held, dirty or not, is dropped");
  } else {
    for (int i = 0; i < 2; ++i) {
      if (!s.superblock_damage[i].empty()) {
        repairs.push_back("rewrote superblock copy " + std::to_string(i));
      }
      if (!s.checkpoint_damage[i].empty()) {
        repairs.push_back(std::string("rewrote ") + kCheckpointNames[i]);
      }
    }
    if (!s.damage.empty() &&
        s.damage.find("needing a check") == std::string::npos) {
      uint64_t dirty = 0;
      for (const MappingRecord& m : fixed.mappings) dirty += m.dirty;
      repairs.push_back(
          "kept the state up to the damage (" +
          Plural(fixed.mappings.size(), "mapping") + ", " +
          Plural(dirty, "dirty block") +
          ") in a new checkpoint with an empty journal; journal records after "
          "the damage are dropped");
    }
    if (s.needs_check) repairs.push_back("cleared NEEDS_CHECK");
  }
  std::string error;
  Status st = WriteFreshMetadata(env, meta_dir, fixed, &error);
  if (!st.ok()) {
    r.repairs.push_back("repair failed: " + error);
    r.repair_refused = true;
    return r;
  }
  CheckReport after;
  Examine(env, meta_dir, options, &after);
  after.repairs = std::move(repairs);
  return after;
}

std::string CheckText(const CheckReport& r) {
  std::string out;
  auto line = [&](const std::string& key, const std::string& value) {
    std::string k = key + ":";
    k.resize(std::max<size_t>(k.size() + 1, 13), ' ');
    out += k + value + "\n";
  };
  if (r.loaded) {
    const LoadedState& s = r.state;
    const Superblock& sb = s.super;
    line("uuid", UuidString(sb.uuid));
    line("superblock",
         "version " + std::to_string(sb.version) + ", generation " +
             std::to_string(sb.generation) + ", copy 0 " +
             (s.superblock_damage[0].empty() ? "ok" : "BAD") + ", copy 1 " +
             (s.superblock_damage[1].empty() ? "ok" : "BAD"));
    line("geometry", "block size " + FormatSize(sb.block_size) + ", " +
                         Plural(sb.cache_blocks, "cache block") + " (" +
                         FormatSize(sb.block_size * sb.cache_blocks) + ")" +
                         (sb.budget_blocks != 0
                              ? ", thin: holds up to " +
                                    FormatSize(sb.block_size * sb.budget_blocks)
                              : std::string()) +
                         ", journal " + FormatSize(sb.journal_size) +
                         ", policy " + sb.policy);
    line("shutdown",
         s.clean_shutdown
             ? "clean"
             : "not clean (the last mount crashed, was killed or is running)");
    line("needs_check", s.needs_check ? "yes: " + sb.reason : "no");
    if (s.has_checkpoint) {
      line("checkpoint", "sequence " + std::to_string(s.checkpoint_sequence) +
                             " (" +
                             kCheckpointNames[s.checkpoint_sequence % 2] + ")");
    } else {
      line("checkpoint", "none valid");
    }
    line("journal", "replayed " + Plural(s.replayed_batches, "batch") + ", " +
                        Plural(s.replayed_records, "record") +
                        "; next record " + std::to_string(s.next_seq));
    line("mappings", std::to_string(s.mappings.size()) + " mapped, " +
                         std::to_string(r.dirty) + " dirty");
    line("volumes", std::to_string(r.volumes.size()));
    for (const CheckVolume& v : r.volumes) {
      out += "  " + std::to_string(v.record.id.value()) + " " + v.state + " '" +
             v.record.path + "': " + std::to_string(v.mapped) + " mapped, " +
             std::to_string(v.dirty) + " dirty" +
             (v.why.empty() ? "" : " (" + v.why + ")") + "\n";
    }
    for (const std::string& w : s.warnings) out += "warning: " + w + "\n";
  }
  for (const std::string& x : r.repairs) out += "repair: " + x + "\n";
  for (const std::string& p : r.problems) out += "problem: " + p + "\n";
  line("status", r.problems.empty()
                     ? "clean"
                     : Plural(r.problems.size(), "problem") +
                           (r.loaded ? "; 'tierfs check --repair' fixes what "
                                       "it can"
                                     : ""));
  return out;
}

json CheckJson(const CheckReport& r) {
  json j;
  j["ok"] = r.problems.empty();
  j["problems"] = r.problems;
  j["repairs"] = r.repairs;
  j["loaded"] = r.loaded;
  if (r.loaded) {
    const LoadedState& s = r.state;
    j["uuid"] = UuidString(s.super.uuid);
    j["generation"] = s.super.generation;
    j["block_size"] = s.super.block_size;
    j["cache_blocks"] = s.super.cache_blocks;
    j["budget_blocks"] = s.super.budget_blocks;
    j["journal_size"] = s.super.journal_size;
    j["policy"] = s.super.policy;
    j["clean_shutdown"] = s.clean_shutdown;
    j["needs_check"] = s.needs_check;
    j["superblock_damage"] = {s.superblock_damage[0], s.superblock_damage[1]};
    j["checkpoint_damage"] = {s.checkpoint_damage[0], s.checkpoint_damage[1]};
    j["checkpoint_sequence"] = s.checkpoint_sequence;
    j["replayed_batches"] = s.replayed_batches;
    j["replayed_records"] = s.replayed_records;
    j["mapped"] = s.mappings.size();
    j["dirty"] = r.dirty;
    j["damage"] = s.damage;
    j["warnings"] = s.warnings;
    j["volumes"] = json::array();
    for (const CheckVolume& v : r.volumes) {
      j["volumes"].push_back({{"id", v.record.id.value()},
                              {"path", v.record.path},
                              {"state", v.state},
                              {"why", v.why},
                              {"mapped", v.mapped},
                              {"dirty", v.dirty}});
    }
  }
  return j;
}

// --- dump / restore

json Dump(const LoadedState& s) {
  json j;
  j["format"] = "tierfs-metadata-dump";
  j["version"] = 1;
  j["superblock"] = {{"version", s.super.version},
                     {"uuid", UuidString(s.super.uuid)},
                     {"block_size", s.super.block_size},
                     {"cache_blocks", s.super.cache_blocks},
                     {"budget_blocks", s.super.budget_blocks},
                     {"journal_size", s.super.journal_size},
                     {"policy", s.super.policy},
                     {"clean_shutdown", s.clean_shutdown}};
  j["next_volume_id"] = s.next_volume_id;
  j["hints_valid"] = s.hints_valid;
  j["hints_policy"] = s.hints_policy;
  if (!s.damage.empty()) j["damage"] = s.damage;
  j["volumes"] = json::array();
  for (const VolumeRecord& v : s.volumes) {
    j["volumes"].push_back({{"id", v.id.value()},
                            {"path", v.path},
                            {"ino", v.ino},
                            {"generation", v.generation},
                            {"btime_ns", v.btime_ns},
                            {"size", v.size},
                            {"mtime_ns", v.mtime_ns}});
  }
  j["mappings"] = json::array();
  for (const MappingRecord& m : s.mappings) {
    j["mappings"].push_back({{"cblock", m.cblock.value()},
                             {"volume", m.oblock.volume.value()},
                             {"index", m.oblock.index},
                             {"dirty", m.dirty},
                             {"hint", m.hint},
                             {"invalid", m.invalid}});
  }
  return j;
}

Status Restore(io::Env* env, const std::string& dir, const json& dump,
               std::string* error_message) {
  LoadedState s;
  try {
    if (dump.at("format").get<std::string>() != "tierfs-metadata-dump" ||
        dump.at("version").get<int>() != 1) {
      *error_message = "not a tierfs metadata dump (version 1)";
      return ErrnoCode(EINVAL);
    }
    const json& sb = dump.at("superblock");
    s.super.version = sb.at("version").get<uint32_t>();
    std::optional<Uuid> uuid = ParseUuid(sb.at("uuid").get<std::string>());
    if (!uuid) {
      *error_message = "bad uuid in the dump";
      return ErrnoCode(EINVAL);
    }
    s.super.uuid = *uuid;
    s.super.block_size = sb.at("block_size").get<uint64_t>();
    s.super.cache_blocks = sb.at("cache_blocks").get<uint64_t>();
    s.super.budget_blocks = sb.value("budget_blocks", uint64_t{0});
    s.super.journal_size = sb.at("journal_size").get<uint64_t>();
    s.super.policy = sb.at("policy").get<std::string>();
    s.clean_shutdown = sb.at("clean_shutdown").get<bool>();
    s.next_volume_id = dump.at("next_volume_id").get<uint32_t>();
    s.hints_valid = dump.at("hints_valid").get<bool>();
    s.hints_policy = dump.at("hints_policy").get<std::string>();
    for (const json& v : dump.at("volumes")) {
      VolumeRecord r;
      r.id = VolumeId(v.at("id").get<uint32_t>());
      r.path = v.at("path").get<std::string>();
      r.ino = v.at("ino").get<uint64_t>();
      r.generation = v.at("generation").get<uint64_t>();
      r.btime_ns = v.at("btime_ns").get<int64_t>();
      r.size = v.at("size").get<uint64_t>();
      r.mtime_ns = v.at("mtime_ns").get<int64_t>();
      s.volumes.push_back(std::move(r));
    }
    for (const json& m : dump.at("mappings")) {
      s.mappings.push_back(
          MappingRecord{CBlock(m.at("cblock").get<uint32_t>()),
                        OBlock{VolumeId(m.at("volume").get<uint32_t>()),
                               m.at("index").get<uint64_t>()},
                        m.at("dirty").get<bool>(), m.at("hint").get<uint32_t>(),
                        m.value("invalid", uint16_t{0})});
    }
  } catch (const json::exception& e) {
    *error_message = std::string("malformed dump: ") + e.what();
    return ErrnoCode(EINVAL);
  }
  return WriteFreshMetadata(env, dir, s, error_message);
}

// --- writeback

Result<WritebackReport> Writeback(io::Env* env, const std::string& meta_dir,
                                  const WritebackOptions& options,
                                  std::string* error_message) {
  Result<LoadedState> loaded = Load(env, meta_dir, error_message);
  if (!loaded.ok()) return loaded.error();
  LoadedState& s = *loaded;
  if (!s.damage.empty()) {
    *error_message = "the cache metadata is damaged (" + s.damage +
                     "); run 'tierfs check --repair' first";
    return ErrnoCode(EUCLEAN);
  }
  WritebackReport report;
  for (const MappingRecord& m : s.mappings) report.dirty += m.dirty;
  if (report.dirty == 0) return report;

  const std::string store_path = meta_dir + "/" + kCacheStoreName;
  io::OpenOptions o;
  o.write = false;
  Result<std::unique_ptr<io::File>> cache =
      env->OpenAt(AT_FDCWD, store_path, o);
  if (!cache.ok()) {
    *error_message = "cannot open the cache store " + store_path + ": " +
                     cache.error().message();
    return cache.error();
  }
  // Written and checked against the file it belongs to, never a symlink.
  std::vector<ResolvedVolume> volumes =
      ResolveVolumes(env, options.slow_dirfd, s.volumes, false);
  std::map<uint32_t, ResolvedVolume*> by_id;
  for (ResolvedVolume& v : volumes) by_id[v.record.id.value()] = &v;
  std::map<uint32_t, std::vector<MappingRecord*>> dirty;
  for (MappingRecord& m : s.mappings) {
    if (m.dirty) dirty[m.oblock.volume.value()].push_back(&m);
  }
  const uint64_t bs = s.super.block_size;
  const Sectors sectors(bs);
  std::vector<std::byte> buffer(bs);
  uint64_t done = 0;
  for (auto& [id, blocks] : dirty) {
    ResolvedVolume& v = *by_id.at(id);
    if (v.state == VolumeState::kMissing) {
      report.problems.push_back(
          "'" + v.record.path + "': " + Plural(blocks.size(), "dirty block") +
          " kept: the file is not in the slow dir (" + v.why + ")");
      done += blocks.size();
      if (options.progress) options.progress(done, report.dirty);
      continue;
    }
    Status st;
    uint64_t bytes = 0;
    for (MappingRecord* m : blocks) {
      // Only the sectors the cache holds; the origin has the others.
      sectors.ForEachRun(
          sectors.Complement(m->invalid), 0, bs,
          [&](uint64_t off, uint64_t len) {
            if (!st.ok()) return;
            std::span<std::byte> run(buffer.data() + off, len);
            Result<size_t> n =
                (*cache)->ReadAt(uint64_t{m->cblock.value()} * bs + off, run);
            if (!n.ok() || *n != len) {
              st = n.ok() ? ErrnoCode(EIO) : n.error();
              return;
            }
            st = v.origin->WriteAt(m->oblock.index * bs + off, run);
            bytes += len;
          });
      if (!st.ok()) break;
      ++done;
      if (options.progress) options.progress(done, report.dirty);
    }
    // Clean only once the origin copy is durable.
    if (st.ok()) st = v.origin->Sync();
    Result<io::FileStat> stat =
        st.ok() ? v.origin->Stat() : Result<io::FileStat>(st.error());
    if (!stat.ok()) {
      report.problems.push_back("'" + v.record.path +
                                "': " + Plural(blocks.size(), "dirty block") +
                                " kept: " + stat.error().message());
      continue;
    }
    for (MappingRecord* m : blocks) m->dirty = false;
    report.written += blocks.size();
    report.bytes += bytes;
    ++report.volumes;
    // The file as tierfs left it: the next mount must not see a change.
    for (VolumeRecord& r : s.volumes) {
      if (r.id.value() == id) r = RecordFor(r.id, *stat, v.record.path);
    }
  }
  if (report.written != 0) {
    Status st = WriteFreshMetadata(env, meta_dir, s, error_message);
    if (!st.ok()) {
      *error_message =
          "the blocks were written to the slow dir but cannot "
          "be recorded clean: " +
          *error_message;
      return st.error();
    }
  }
  return report;
}

}  // namespace tierfs::meta
