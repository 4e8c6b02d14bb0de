// Minimal leveled logging: stderr in the foreground, syslog when daemonized.
// Thread-safe; each call writes one line.
#ifndef TIERFS_SRC_UTIL_LOG_H_
#define TIERFS_SRC_UTIL_LOG_H_

#include <optional>
#include <string_view>

namespace tierfs {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Parses "debug", "info", "warning"/"warn", "error".
std::optional<LogLevel> ParseLogLevel(std::string_view name);

void SetLogLevel(LogLevel level);
// Sends subsequent log lines to syslog (ident "tierfs") instead of stderr.
void LogToSyslog();

void Log(LogLevel level, const char* format, ...)
    __attribute__((format(printf, 2, 3)));

}  // namespace tierfs

#define TIERFS_LOG_DEBUG(...) \
  ::tierfs::Log(::tierfs::LogLevel::kDebug, __VA_ARGS__)
#define TIERFS_LOG_INFO(...) \
  ::tierfs::Log(::tierfs::LogLevel::kInfo, __VA_ARGS__)
#define TIERFS_LOG_WARNING(...) \
  ::tierfs::Log(::tierfs::LogLevel::kWarning, __VA_ARGS__)
#define TIERFS_LOG_ERROR(...) \
  ::tierfs::Log(::tierfs::LogLevel::kError, __VA_ARGS__)

#endif  // TIERFS_SRC_UTIL_LOG_H_
