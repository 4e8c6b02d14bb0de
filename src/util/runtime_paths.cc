#include "src/util/runtime_paths.h"

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>

namespace tierfs {
namespace {

// systemd-escape --path style: "/mnt/tier" -> "mnt-tier".
std::string EscapeMountpoint(const std::string& mountpoint) {
  std::string out;
  for (size_t i = !mountpoint.empty() && mountpoint[0] == '/' ? 1 : 0;
       i < mountpoint.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(mountpoint[i]);
    if (c == '/') {
      out.push_back('-');
    } else if (std::isalnum(c) || c == '_' || c == '.') {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    }
  }
  return out.empty() ? "-" : out;
}

}  // namespace

std::string RuntimeDir() {
  if (::geteuid() == 0) return "/run/tierfs";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg) {
    return std::string(xdg) + "/tierfs";
  }
  return "/tmp/tierfs-" + std::to_string(::geteuid());
}

std::string MountStatePath(const std::string& mountpoint) {
  return RuntimeDir() + "/" + EscapeMountpoint(mountpoint) + ".mount";
}

std::string ControlSocketPath(const std::string& mountpoint) {
  return RuntimeDir() + "/" + EscapeMountpoint(mountpoint) + ".sock";
}

}  // namespace tierfs
