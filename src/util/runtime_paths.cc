#include "src/util/runtime_paths.h"

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>

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

std::map<std::string, std::string> ReadKeyValues(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

std::string ControlSocketPath(const std::string& mountpoint) {
  return RuntimeDir() + "/" + EscapeMountpoint(mountpoint) + ".sock";
}

}  // namespace tierfs
