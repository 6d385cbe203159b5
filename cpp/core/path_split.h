// A path split at its last '/' into its directory and the name in it, for
// what needs the directory itself (realpath of a file that may not exist
// yet, a sweep of its siblings).
#pragma once

#include <optional>
#include <string>

namespace nm {

struct PathSplit {
  std::string dir;   // "/" for a name in the root
  std::string name;  // not empty
};

// nullopt for a path with no '/' (a name relative to the cwd) or ending in
// one (no name)
inline std::optional<PathSplit> split_path(const std::string &path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash + 1 == path.size()) return std::nullopt;
  return PathSplit{slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace nm
