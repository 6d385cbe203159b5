// tcpdump filter expressions ('icmp or port 53'), compiled by the system's
// libpcap and run on batches of frames in place.
//
// libpcap is loaded at run time (dlopen("libpcap.so.0.8"), Debian's
// libpcap0.8 package) so that building the addon needs no libpcap headers
// and a machine without libpcap runs everything but filters. The few
// functions used are declared here with the prototypes of libpcap's stable
// public API (pcap/pcap.h, pcap/bpf.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/result.h"

namespace nm {

// Longest expression compile() takes, in bytes. pcap_compile's optimiser
// grows with about the cube of the expression ('port 1 or port 2 or ...':
// 1 KB 1 s, 2 KB 7 s, 4.7 KB 77 s), and a compile cannot be interrupted:
// without a bound a long one holds the capture before it starts, for days.
constexpr size_t PCAP_FILTER_MAX_BYTES = 2048;

// One compiled filter. Immutable once compiled: match() may run on any
// thread, concurrently.
class PcapFilter {
 public:
  // Compile `expr` for Ethernet frames (DLT_EN10MB) captured up to `snaplen`
  // bytes. Errors: ENOENT when libpcap is not installed (the message names
  // the package), EINVAL with libpcap's own message for a bad expression,
  // EINVAL for one over PCAP_FILTER_MAX_BYTES.
  static Result<std::unique_ptr<PcapFilter>> compile(const std::string &expr, uint32_t snaplen);
  ~PcapFilter();
  PcapFilter(const PcapFilter &) = delete;
  PcapFilter &operator=(const PcapFilter &) = delete;

  // Whether the frame passes: `caplen` bytes at `data` are what is seen of a
  // frame of `wirelen` bytes on the wire. The BPF interpreter checks every
  // load against caplen, so a short frame is safe (it fails the match).
  bool match(const uint8_t *data, uint32_t caplen, uint32_t wirelen) const;

  // The filter over a batch: frame i is lens[i] bytes at base + offsets[i]
  // (each within [0, size), checked); keep[i] = 1 when it passes, else 0.
  // A frame outside `size` is not kept. Returns how many passed.
  uint32_t match_batch(const uint8_t *base, uint64_t size, const uint32_t *offsets, const uint32_t *lens, uint32_t n,
                       uint8_t *keep) const;

  uint32_t instructions() const;

 private:
  struct Program;
  explicit PcapFilter(std::unique_ptr<Program> p);
  std::unique_ptr<Program> prog_;
};

// Whether libpcap can be loaded here (for tests and tools to say why filters
// are unavailable), with the reason when not.
bool pcap_available(std::string *why);

}  // namespace nm
