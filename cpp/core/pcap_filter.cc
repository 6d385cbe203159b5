#include "core/pcap_filter.h"

#include <dlfcn.h>

#include <mutex>
#include <vector>

namespace nm {

namespace {

// libpcap's public types and prototypes (pcap/bpf.h, pcap/pcap.h): stable ABI
// since libpcap 0.8, the soname Debian still ships (libpcap.so.0.8).
struct bpf_insn {
  uint16_t code;
  uint8_t jt;
  uint8_t jf;
  uint32_t k;
};
struct bpf_program {
  unsigned bf_len;
  bpf_insn *bf_insns;
};
struct pcap;  // opaque pcap_t
constexpr int DLT_EN10MB = 1;
constexpr uint32_t PCAP_NETMASK_UNKNOWN = 0xffffffff;

using open_dead_fn = pcap *(*)(int linktype, int snaplen);
using compile_fn = int (*)(pcap *, bpf_program *, const char *, int optimize, uint32_t netmask);
using freecode_fn = void (*)(bpf_program *);
using close_fn = void (*)(pcap *);
using geterr_fn = char *(*)(pcap *);
using bpf_filter_fn = unsigned (*)(const bpf_insn *, const unsigned char *, unsigned wirelen, unsigned buflen);

constexpr const char *LIBPCAP = "libpcap.so.0.8";
constexpr const char *LIBPCAP_HINT = "install Debian's libpcap0.8 package (apt-get install libpcap0.8)";

struct Lib {
  void *handle = nullptr;  // never closed: compiled filters keep calling bpf_filter
  open_dead_fn open_dead = nullptr;
  compile_fn compile = nullptr;
  freecode_fn freecode = nullptr;
  close_fn close = nullptr;
  geterr_fn geterr = nullptr;
  bpf_filter_fn filter = nullptr;
  std::string error;  // why it could not be loaded
  // pcap_compile is thread-safe only from libpcap 1.8 on; serialize it
  std::mutex compile_mu;
};

Lib &lib() {
  static Lib l;
  static std::once_flag once;
  std::call_once(once, [] {
    l.handle = ::dlopen(LIBPCAP, RTLD_NOW | RTLD_LOCAL);
    if (!l.handle) {
      const char *e = ::dlerror();
      l.error = std::string("tcpdump filters need libpcap (") + LIBPCAP + "), which cannot be loaded: " + (e ? e : "unknown error");
      return;
    }
    auto sym = [&](const char *name) {
      void *p = ::dlsym(l.handle, name);
      if (!p && l.error.empty()) l.error = std::string(LIBPCAP) + " has no symbol " + name + ": it is not libpcap";
      return p;
    };
    l.open_dead = reinterpret_cast<open_dead_fn>(sym("pcap_open_dead"));
    l.compile = reinterpret_cast<compile_fn>(sym("pcap_compile"));
    l.freecode = reinterpret_cast<freecode_fn>(sym("pcap_freecode"));
    l.close = reinterpret_cast<close_fn>(sym("pcap_close"));
    l.geterr = reinterpret_cast<geterr_fn>(sym("pcap_geterr"));
    l.filter = reinterpret_cast<bpf_filter_fn>(sym("bpf_filter"));
  });
  return l;
}

}  // namespace

struct PcapFilter::Program {
  std::vector<bpf_insn> insns;
  bpf_filter_fn run;
};

PcapFilter::PcapFilter(std::unique_ptr<Program> p) : prog_(std::move(p)) {}
PcapFilter::~PcapFilter() = default;

bool pcap_available(std::string *why) {
  Lib &l = lib();
  if (why) *why = l.error;
  return l.error.empty();
}

Result<std::unique_ptr<PcapFilter>> PcapFilter::compile(const std::string &expr, uint32_t snaplen) {
  Lib &l = lib();
  if (!l.error.empty()) return check_fail(ENOENT, l.error, LIBPCAP_HINT);
  if (snaplen == 0 || snaplen > 262144) return check_fail(EINVAL, "snaplen " + std::to_string(snaplen) + " out of range", "use 1..262144");
  if (expr.find('\0') != std::string::npos) return check_fail(EINVAL, "filter expression contains a NUL byte");
  if (expr.size() > PCAP_FILTER_MAX_BYTES)
    return check_fail(EINVAL,
                      "filter expression is " + std::to_string(expr.size()) + " bytes, more than the limit of " +
                          std::to_string(PCAP_FILTER_MAX_BYTES) + " (libpcap's compile time grows with the cube of the length)",
                      "shorten it: a net or a portrange instead of a list of hosts or ports");
  std::lock_guard<std::mutex> g(l.compile_mu);
  pcap *p = l.open_dead(DLT_EN10MB, static_cast<int>(snaplen));
  if (!p) return check_fail(ENOMEM, "pcap_open_dead failed");
  bpf_program bp{0, nullptr};
  if (l.compile(p, &bp, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    std::string msg = "bad filter '" + expr + "': " + l.geterr(p);
    l.close(p);
    return check_fail(EINVAL, std::move(msg), "the syntax is tcpdump's (man pcap-filter)");
  }
  auto prog = std::make_unique<Program>();
  prog->insns.assign(bp.bf_insns, bp.bf_insns + bp.bf_len);
  prog->run = l.filter;
  l.freecode(&bp);
  l.close(p);
  if (prog->insns.empty()) return check_fail(EINVAL, "libpcap compiled '" + expr + "' to an empty program");
  return std::unique_ptr<PcapFilter>(new PcapFilter(std::move(prog)));
}

bool PcapFilter::match(const uint8_t *data, uint32_t caplen, uint32_t wirelen) const {
  return prog_->run(prog_->insns.data(), data, wirelen, caplen) != 0;
}

uint32_t PcapFilter::match_batch(const uint8_t *base, uint64_t size, const uint32_t *offsets, const uint32_t *lens,
                                 uint32_t n, uint8_t *keep) const {
  uint32_t kept = 0;
  for (uint32_t i = 0; i < n; i++) {
    const uint64_t off = offsets[i], len = lens[i];
    const bool in = off <= size && len <= size - off;
    keep[i] = in && match(base + off, static_cast<uint32_t>(len), static_cast<uint32_t>(len)) ? 1 : 0;
    kept += keep[i];
  }
  return kept;
}

uint32_t PcapFilter::instructions() const { return static_cast<uint32_t>(prog_->insns.size()); }

}  // namespace nm
