#include "tools/stress/options.h"

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string_view>

#include "src/util/geometry.h"

namespace tierfs::stress {
namespace {

constexpr const char* kOpNames[kOpCount] = {
    "write",      "write-pair", "read",  "punch",  "punch-eof", "zero",
    "truncate",   "falloc",     "scan",  "unlink", "mode",      "policy",
    "invalidate", "flush",      "fsync", "crash",  "restart",
};

// Writes and reads dominate, like a VM disk; the ops that drop or move
// many blocks at once stay rare so the cache has time to fill between them.
constexpr std::array<double, kOpCount> kDefaultMix = {
    30, 5, 20, 5, 1, 3, 3, 1, 0.5, 0.5, 2, 1, 2, 1, 3, 0, 0.02,
};

void Usage() {
  std::fprintf(stderr,
               "usage: tierfs-stress [flags]\n"
               "Seeded stress of the cache engine, every read checked "
               "against an in-memory model.\n"
               "  --seed N            default: from the clock (always "
               "printed)\n"
               "  --duration SECONDS  stop after this long (default 30)\n"
               "  --ops N             stop after N writer ops (0: no limit)\n"
               "  --volumes N         files in the slow dir (default 3)\n"
               "  --max-file-mib N    largest file size (default 16)\n"
               "  --cache-blocks N    default 64\n"
               "  --block-size BYTES  default 65536\n"
               "  --thin              a thin cache (--cache-blocks is its "
               "budget)\n"
               "  --crash-every N     kill -9 and recover every N ops (0: "
               "never)\n"
               "  --readers N         concurrent verifying readers (default "
               "3)\n"
               "  --no-latency        no injected IO latency\n"
               "  --latency-us N      most injected latency (default 300)\n"
               "  --cache-errors P    each cache store write fails (EIO) with "
               "probability P\n"
               "                      (default 0; writes then stay inside "
               "the files)\n"
               "  --origin-errors P   each origin write fails (EIO) with "
               "probability P (the same)\n"
               "  --read-errors P     each read of the cache store or an "
               "origin fails (EIO)\n"
               "                      with probability P; failed reads are "
               "retried\n"
               "  --sync-errors P     each fdatasync of an origin fails (EIO)"
               "\n"
               "                      with probability P (the data stays "
               "written)\n"
               "  --mix OP=W,...      op weights; unlisted ops keep their "
               "default\n"
               "                      ops: ");
  for (int op = 0; op < kOpCount; ++op) {
    std::fprintf(stderr, "%s=%g%s", kOpNames[op], kDefaultMix[op],
                 op + 1 < kOpCount ? "," : "\n");
  }
  std::fprintf(stderr,
               "  --dir DIR           where the temp dirs go (default /tmp)\n"
               "  --keep              keep the temp dirs\n"
               "  --json FILE         write the summary as JSON\n"
               "  --stall SECONDS     report a hang after this long without "
               "progress (default 120)\n"
               "  --verbose           show engine log lines during crashes\n"
               "exit: 0 clean, 1 mismatch or engine error, 2 usage\n");
}

// An error probability: at most 0.5, so that a retried read finishes.
double Probability(std::string_view flag, const std::string& text) {
  const double p = std::stod(text);
  if (!(p >= 0 && p <= 0.5)) {
    throw std::invalid_argument(std::string(flag) + ": not in [0, 0.5]");
  }
  return p;
}

bool ParseMix(std::string_view text, Options* options) {
  while (!text.empty()) {
    const size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? "" : text.substr(comma + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) return false;
    const std::string_view name = item.substr(0, eq);
    int op = 0;
    while (op < kOpCount && name != kOpNames[op]) ++op;
    if (op == kOpCount) return false;
    const double weight = std::stod(std::string(item.substr(eq + 1)));
    if (weight < 0) return false;
    options->mix[op] = weight;
  }
  return true;
}

}  // namespace

const char* OpName(int op) { return op < kOpCount ? kOpNames[op] : "?"; }

bool IsAdminOp(int op) {
  return op == kMode || op == kPolicy || op == kInvalidate || op == kFlush ||
         op == kFsync;
}

bool ParseOptions(int argc, char** argv, Options* options) {
  options->mix = kDefaultMix;
  options->argv.assign(argv, argv + argc);
  bool seeded = false;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view flag = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument("missing value");
        return argv[++i];
      };
      if (flag == "--seed") {
        options->seed = std::stoull(value());
        seeded = true;
      } else if (flag == "--duration") {
        options->duration_s = std::stod(value());
      } else if (flag == "--ops") {
        options->ops = std::stoull(value());
      } else if (flag == "--volumes") {
        options->volumes = std::stoi(value());
      } else if (flag == "--max-file-mib") {
        options->max_file_size = std::stoull(value()) << 20;
      } else if (flag == "--cache-blocks") {
        options->cache_blocks = std::stoull(value());
      } else if (flag == "--block-size") {
        options->block_size = std::stoull(value());
      } else if (flag == "--crash-every") {
        options->crash_every = std::stoull(value());
      } else if (flag == "--readers") {
        options->readers = std::stoi(value());
      } else if (flag == "--no-latency") {
        options->latency = false;
      } else if (flag == "--latency-us") {
        options->latency_max_us = static_cast<unsigned>(std::stoul(value()));
      } else if (flag == "--cache-errors") {
        options->cache_errors = Probability(flag, value());
      } else if (flag == "--origin-errors") {
        options->origin_errors = Probability(flag, value());
      } else if (flag == "--read-errors") {
        options->read_errors = Probability(flag, value());
      } else if (flag == "--sync-errors") {
        options->sync_errors = Probability(flag, value());
      } else if (flag == "--mix") {
        if (!ParseMix(value(), options)) {
          throw std::invalid_argument("bad --mix");
        }
      } else if (flag == "--dir") {
        options->dir = value();
      } else if (flag == "--thin") {
        options->thin = true;
      } else if (flag == "--keep") {
        options->keep = true;
      } else if (flag == "--json") {
        options->json = value();
      } else if (flag == "--stall") {
        options->stall_s = std::stod(value());
      } else if (flag == "--verbose") {
        options->verbose = true;
      } else if (flag == "--help" || flag == "-h") {
        Usage();
        return false;
      } else {
        throw std::invalid_argument("unknown flag " + std::string(flag));
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tierfs-stress: %s\n", e.what());
    Usage();
    return false;
  }
  double total = 0;
  for (double w : options->mix) total += w;
  const uint64_t bs = options->block_size;
  if (options->volumes < 1 || options->readers < 0 || total <= 0 ||
      options->cache_blocks == 0 || !BlockSizeProblem(bs).empty() ||
      options->max_file_size < bs || options->duration_s <= 0) {
    std::fprintf(stderr, "tierfs-stress: a flag is out of range\n");
    Usage();
    return false;
  }
  if (!seeded) {
    options->seed = static_cast<uint64_t>(
        std::chrono::system_clock::now().time_since_epoch().count());
  }
  return true;
}

}  // namespace tierfs::stress
