// A small JSON reader for the replies of the vale-ts control protocol
// (docs/control-protocol.md) and the escaping its requests need. The preload
// cannot use a JS engine; replies are bounded (64 KiB) and come from a local
// process, but are still parsed defensively: depth, length and types are
// checked, and a malformed reply is an error, never UB.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nmpre {

struct JVal {
  enum Type { NUL, BOOL, NUM, STR, ARR, OBJ } type = NUL;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<JVal> arr;
  std::vector<std::pair<std::string, JVal>> obj;

  const JVal *get(const char *key) const;
  // an integer field in [lo, hi]; false if absent, not a number or out of range
  bool get_u64(const char *key, uint64_t lo, uint64_t hi, uint64_t *out) const;
  const std::string *get_str(const char *key) const;
  bool get_bool(const char *key, bool dflt) const;
};

// Parses `text`; returns an empty string or what is wrong with it.
std::string json_parse(const std::string &text, JVal *out);

// `s` as a JSON string literal, quotes included.
std::string json_quote(const std::string &s);

}  // namespace nmpre
