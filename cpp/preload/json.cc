#include "preload/json.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace nmpre {

const JVal *JVal::get(const char *key) const {
  if (type != OBJ) return nullptr;
  for (const auto &kv : obj)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

bool JVal::get_u64(const char *key, uint64_t lo, uint64_t hi, uint64_t *out) const {
  const JVal *v = get(key);
  if (!v || v->type != NUM || !std::isfinite(v->num) || v->num < 0 || v->num != std::floor(v->num)) return false;
  if (v->num > 1.8e19) return false;
  const uint64_t u = static_cast<uint64_t>(v->num);
  if (u < lo || u > hi) return false;
  *out = u;
  return true;
}

const std::string *JVal::get_str(const char *key) const {
  const JVal *v = get(key);
  return v && v->type == STR ? &v->str : nullptr;
}

bool JVal::get_bool(const char *key, bool dflt) const {
  const JVal *v = get(key);
  return v && v->type == BOOL ? v->b : dflt;
}

namespace {

constexpr int MAX_DEPTH = 32;

struct Parser {
  const std::string &s;
  size_t i = 0;
  std::string err;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  }
  bool fail(const char *what) {
    if (err.empty()) err = std::string(what) + " at byte " + std::to_string(i);
    return false;
  }
  bool lit(const char *w) {
    const size_t n = std::strlen(w);
    if (s.compare(i, n, w) != 0) return fail("bad literal");
    i += n;
    return true;
  }
  static void utf8(std::string &o, uint32_t c) {
    if (c < 0x80) {
      o += static_cast<char>(c);
    } else if (c < 0x800) {
      o += static_cast<char>(0xc0 | (c >> 6));
      o += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      o += static_cast<char>(0xe0 | (c >> 12));
      o += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      o += static_cast<char>(0x80 | (c & 0x3f));
    } else {
      o += static_cast<char>(0xf0 | (c >> 18));
      o += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
      o += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      o += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  bool hex4(uint32_t *out) {
    if (i + 4 > s.size()) return fail("short \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
      const char c = s[i++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else return fail("bad \\u escape");
    }
    *out = v;
    return true;
  }
  bool string(std::string *o) {
    if (i >= s.size() || s[i] != '"') return fail("expected a string");
    i++;
    while (i < s.size()) {
      const char c = s[i++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
      if (c != '\\') {
        *o += c;
        continue;
      }
      if (i >= s.size()) break;
      const char e = s[i++];
      switch (e) {
        case '"': *o += '"'; break;
        case '\\': *o += '\\'; break;
        case '/': *o += '/'; break;
        case 'b': *o += '\b'; break;
        case 'f': *o += '\f'; break;
        case 'n': *o += '\n'; break;
        case 'r': *o += '\r'; break;
        case 't': *o += '\t'; break;
        case 'u': {
          uint32_t c1;
          if (!hex4(&c1)) return false;
          if (c1 >= 0xd800 && c1 < 0xdc00 && i + 1 < s.size() && s[i] == '\\' && s[i + 1] == 'u') {
            i += 2;
            uint32_t c2;
            if (!hex4(&c2)) return false;
            if (c2 >= 0xdc00 && c2 < 0xe000) c1 = 0x10000 + ((c1 - 0xd800) << 10) + (c2 - 0xdc00);
          }
          utf8(*o, c1);
          break;
        }
        default: return fail("bad escape");
      }
    }
    return fail("unterminated string");
  }
  bool value(JVal *v, int depth) {
    if (depth > MAX_DEPTH) return fail("nested too deeply");
    ws();
    if (i >= s.size()) return fail("unexpected end");
    const char c = s[i];
    if (c == '{') {
      v->type = JVal::OBJ;
      i++;
      ws();
      if (i < s.size() && s[i] == '}') return ++i, true;
      for (;;) {
        ws();
        std::pair<std::string, JVal> kv;
        if (!string(&kv.first)) return false;
        ws();
        if (i >= s.size() || s[i] != ':') return fail("expected ':'");
        i++;
        if (!value(&kv.second, depth + 1)) return false;
        v->obj.push_back(std::move(kv));
        ws();
        if (i < s.size() && s[i] == ',') { i++; continue; }
        if (i < s.size() && s[i] == '}') return ++i, true;
        return fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v->type = JVal::ARR;
      i++;
      ws();
      if (i < s.size() && s[i] == ']') return ++i, true;
      for (;;) {
        JVal e;
        if (!value(&e, depth + 1)) return false;
        v->arr.push_back(std::move(e));
        ws();
        if (i < s.size() && s[i] == ',') { i++; continue; }
        if (i < s.size() && s[i] == ']') return ++i, true;
        return fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v->type = JVal::STR;
      return string(&v->str);
    }
    if (c == 't') { v->type = JVal::BOOL; v->b = true; return lit("true"); }
    if (c == 'f') { v->type = JVal::BOOL; v->b = false; return lit("false"); }
    if (c == 'n') { v->type = JVal::NUL; return lit("null"); }
    if (c == '-' || (c >= '0' && c <= '9')) {
      const size_t start = i;
      while (i < s.size() && std::strchr("+-.eE0123456789", s[i])) i++;
      const std::string tok = s.substr(start, i - start);
      char *end = nullptr;
      v->type = JVal::NUM;
      v->num = std::strtod(tok.c_str(), &end);
      if (!end || *end != '\0') return fail("bad number");
      return true;
    }
    return fail("unexpected character");
  }
};

}  // namespace

std::string json_parse(const std::string &text, JVal *out) {
  Parser p{text};
  JVal v;
  if (!p.value(&v, 0)) return p.err;
  p.ws();
  if (p.i != text.size()) return "trailing bytes after the JSON value";
  *out = std::move(v);
  return {};
}

std::string json_quote(const std::string &s) {
  std::string o = "\"";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (u < 0x20) {
      static const char hex[] = "0123456789abcdef";
      o += "\\u00";
      o += hex[u >> 4];
      o += hex[u & 15];
    } else {
      o += c;
    }
  }
  return o + "\"";
}

}  // namespace nmpre
