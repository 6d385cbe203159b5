#include "core/kernel_port.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace nm {

namespace {

constexpr const char *NO_MODULE_HINT =
    "the netmap kernel module is not loaded; use the userspace backend (NETMAP_BACKEND=user, start vale-ts)";

// A sane upper bound for nr_memsize: netmap's global allocator is a few
// hundred MiB by default; anything near this is a corrupt reply.
constexpr uint64_t MAX_MEMSIZE = uint64_t{1} << 40;
// Ring counts are 16-bit in the requests; the netmap_if fields are 32-bit.
constexpr uint32_t MAX_RINGS_PER_KIND = 0xffff;
// Bits of the 64-bit NR_* flags that the legacy nmreq.nr_flags carries as is
// (NR_MONITOR_TX .. NR_ACCEPT_VNET_HDR, 0x100..0x8000). NR_NO_TX_POLL and
// NR_DO_RX_POLL travel as NETMAP_NO_TX_POLL / NETMAP_DO_RX_POLL in nr_ringid.
constexpr uint64_t LEGACY_FLAG_BITS = 0xff00;
// Body sizes per control request (netmap.c nmreq_size_by_type). The kernel
// copies exactly this many bytes from/to nr_body, so a shorter buffer would
// let it read and write past our memory.
constexpr size_t NMREQ_VALE_POLLING_SIZE = 16;
constexpr size_t NMREQ_POOLS_INFO_SIZE = 64;

// What a failed register usually means, for the message.
const char *register_hint(int e) {
  switch (e) {
    case EBUSY:
      return "port busy (bound exclusively (/x) by another process, or the interface is in use in an incompatible "
             "netmap mode)";
    case ENXIO:
    case ENOENT:
    case ENODEV:
      return "no such interface or switch (check the interface name with `ip link`; VALE ports are named valeX:Y)";
    case EINVAL:
      return "invalid request (ring index out of range, a mode or flag this port does not support, bad @conf "
             "values, or a netmap API mismatch between this library (API 14) and the kernel module)";
    case EPERM:
    case EACCES:
      return "permission denied (netmap needs root or CAP_NET_ADMIN)";
    case ENOMEM:
      return "out of netmap memory (ask for fewer rings, slots or extra buffers)";
    case EOPNOTSUPP:
      return "not supported by this port or kernel (e.g. host rings, monitors or pipes on an adapter without them)";
    case ENOTTY:
      return "the kernel does not know the NIOCCTRL ioctl (netmap module too old for API 14)";
    default:
      return "registration failed";
  }
}

// 0 or the errno of a failed ioctl; EINTR is retried.
int do_ioctl(int fd, unsigned long request, void *arg) {
  int r;
  do {
    r = ::ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? errno : 0;
}

// Whether a NIOCCTRL that failed with `e` failed because the module does not
// know the NIOCCTRL ioctl at all (so the legacy NIOCREGIF is worth a try).
// A module that speaks NIOCCTRL answers every NIOCCTRL itself, with EINVAL
// for a version or request type it does not take; one that predates it ends
// in its ioctl switch's default: EOPNOTSUPP on Linux (netmap_ioctl_legacy),
// and a device that is not netmap at all says ENOTTY. A modern module may
// also refuse a REGISTER with EOPNOTSUPP (a mode the adapter lacks), so that
// case is told apart by a probe: an empty request of type 0, which every
// NIOCCTRL-speaking module refuses with EINVAL and touches nothing.
bool ctrl_unknown(int fd, int e) {
  if (e == ENOTTY) return true;
  if (e != EOPNOTSUPP) return false;
  nmreq_header probe;
  std::memset(&probe, 0, sizeof probe);
  probe.nr_version = static_cast<uint16_t>(NETMAP_API);
  probe.nr_reqtype = 0;
  const int pe = do_ioctl(fd, NIOCCTRL, &probe);
  return pe == ENOTTY || pe == EOPNOTSUPP;
}

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

SysError name_too_long(const std::string &name, size_t max, const char *api) {
  return check_fail(ENAMETOOLONG, "port name '" + name + "' is " + std::to_string(name.size()) + " bytes; the " + api +
                                      " allows at most " + std::to_string(max) + " (plus the terminating NUL)");
}

// Checks the netmap_if at `off` and every ring it points to against the
// mapping. Returns an empty string when all is in range, else what is not.
std::string nifp_problem(const uint8_t *base, size_t size, uint64_t off, NifLayout *out) {
  if (off % alignof(netmap_if) != 0) return "nr_offset " + std::to_string(off) + " is not 8-byte aligned";
  if (off >= size || size - off < sizeof(netmap_if))
    return "nr_offset " + std::to_string(off) + " leaves no room for the netmap_if in " + std::to_string(size) +
           " bytes";
  netmap_if nif;
  std::memcpy(&nif, base + off, sizeof nif);
  if (nif.ni_tx_rings > MAX_RINGS_PER_KIND || nif.ni_rx_rings > MAX_RINGS_PER_KIND ||
      nif.ni_host_tx_rings > MAX_RINGS_PER_KIND || nif.ni_host_rx_rings > MAX_RINGS_PER_KIND)
    return "netmap_if ring counts out of range (tx " + std::to_string(nif.ni_tx_rings) + ", rx " +
           std::to_string(nif.ni_rx_rings) + ", host tx " + std::to_string(nif.ni_host_tx_rings) + ", host rx " +
           std::to_string(nif.ni_host_rx_rings) + ")";
  out->tx_rings = nif.ni_tx_rings;
  out->rx_rings = nif.ni_rx_rings;
  out->host_tx_rings = nif.ni_host_tx_rings;
  out->host_rx_rings = nif.ni_host_rx_rings;
  const uint64_t ntx = uint64_t{nif.ni_tx_rings} + nif.ni_host_tx_rings;
  const uint64_t nrx = uint64_t{nif.ni_rx_rings} + nif.ni_host_rx_rings;
  const uint64_t ofs_end = off + sizeof(netmap_if) + (ntx + nrx) * sizeof(int64_t);
  if (ofs_end > size) return "the netmap_if's ring_ofs array runs past the end of the region";
  for (uint64_t i = 0; i < ntx + nrx; i++) {
    int64_t rel;
    std::memcpy(&rel, base + off + sizeof(netmap_if) + i * sizeof(int64_t), sizeof rel);
    if (rel == 0) continue;  // not bound by this registration
    const bool is_tx = i < ntx;
    const uint64_t idx = is_tx ? i : i - ntx;
    const std::string what = std::string(is_tx ? "tx" : "rx") + " ring " + std::to_string(idx);
    // off <= 2^40, |rel| checked against size before any arithmetic can wrap
    if (rel < -static_cast<int64_t>(off) || rel > static_cast<int64_t>(size))
      return what + ": ring_ofs " + std::to_string(rel) + " points outside the region";
    const uint64_t abs = static_cast<uint64_t>(static_cast<int64_t>(off) + rel);
    if (abs % 8 != 0) return what + ": ring offset is not 8-byte aligned";
    if (abs > size || size - abs < sizeof(netmap_ring)) return what + ": ring header runs past the region";
    netmap_ring hdr;
    std::memcpy(&hdr, base + abs, offsetof(netmap_ring, sem));
    if (hdr.num_slots == 0) return what + ": ring has 0 slots";
    const uint64_t slots_end = abs + sizeof(netmap_ring) + uint64_t{hdr.num_slots} * sizeof(netmap_slot);
    if (slots_end > size)
      return what + ": " + std::to_string(hdr.num_slots) + " slots run past the end of the region";
    if (hdr.nr_buf_size == 0) return what + ": ring has a 0-byte buffer size";
    // the buffer pool starts inside the region (each slot's buf_idx is checked by the ring code on use)
    if (hdr.buf_ofs < -static_cast<int64_t>(abs) || hdr.buf_ofs >= static_cast<int64_t>(size - abs))
      return what + ": buf_ofs " + std::to_string(hdr.buf_ofs) + " points outside the region";
    // hdr.dir is not checked: the ring's place in ring_ofs[] says whether it
    // is tx or rx, and nothing here reads dir (see docs/netmap-abi.md).
    (is_tx ? out->tx_present : out->rx_present).push_back(static_cast<uint32_t>(idx));
  }
  return "";
}

// The device, opened; a missing node or driver is told apart (ENODEV).
Result<unique_fd> open_device(const std::string &dev, const std::string &label) {
  int fd;
  do {
    fd = ::open(dev.c_str(), O_RDWR | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd >= 0) return unique_fd(fd);
  const int e = errno;
  // ENOENT: no device node; ENXIO/ENODEV: a node whose driver is not loaded.
  // All three are ENODEV to the caller, so it tests one code; the message
  // keeps what open(2) said.
  if (e == ENOENT || e == ENXIO || e == ENODEV)
    return SysError{ENODEV, nullptr,
                    "cannot open " + label + ": " + dev + " is missing (" + std::strerror(e) + ", " + errno_symbol(e) + ")",
                    NO_MODULE_HINT, dev, 0};
  SysError err = sys_fail("open", "cannot open " + dev + " for " + label);
  if (e == EACCES || e == EPERM) err.what += " (netmap needs root, or read/write access to " + dev + ")";
  err.path = dev;
  return err;
}

}  // namespace

Result<nmreq_header> make_header(const std::string &name, uint16_t reqtype, bool allow_empty) {
  if (name.size() > NETMAP_REQ_IFNAMSIZ - 1)
    return name_too_long(name, NETMAP_REQ_IFNAMSIZ - 1, "netmap control API (nmreq_header.nr_name)");
  if (!allow_empty && name.empty()) return check_fail(EINVAL, "empty port name");
  if (name.find('\0') != std::string::npos) return check_fail(EINVAL, "port name contains a NUL character");
  nmreq_header h;
  std::memset(&h, 0, sizeof h);
  h.nr_version = static_cast<uint16_t>(NETMAP_API);
  h.nr_reqtype = reqtype;
  std::memcpy(h.nr_name, name.data(), name.size());
  return h;
}

nmreq_register make_register(const RegisterSpec &s) {
  nmreq_register r;
  std::memset(&r, 0, sizeof r);
  r.nr_tx_slots = s.tx_slots;
  r.nr_rx_slots = s.rx_slots;
  r.nr_tx_rings = static_cast<uint16_t>(s.tx_rings);
  r.nr_rx_rings = static_cast<uint16_t>(s.rx_rings);
  r.nr_host_tx_rings = static_cast<uint16_t>(s.host_tx_rings);
  r.nr_host_rx_rings = static_cast<uint16_t>(s.host_rx_rings);
  r.nr_mem_id = static_cast<uint16_t>(s.mem_id);
  r.nr_ringid = static_cast<uint16_t>(s.ring_id);
  r.nr_mode = s.mode;
  r.nr_extra_bufs = s.extra_bufs;
  r.nr_flags = s.flags;
  return r;
}

// The legacy struct nmreq for NIOCREGIF (netmap_legacy.h). The kernel
// (netmap_legacy.c, nmreq_register_from_legacy) takes the NR_REG_* mode from
// the low 4 bits of nr_flags and the ring index from nr_ringid &
// NETMAP_RING_MASK; NETMAP_HW_RING / NETMAP_SW_RING are the pre-nr_flags way
// to say "one NIC ring" / "host rings" and are set as well, so the request
// means the same thing to either reading. Fails (EINVAL, ENAMETOOLONG,
// EOPNOTSUPP) with why when the request cannot be expressed without
// changing its meaning.
Result<nmreq> make_legacy(const RegisterSpec &s) {
  if (s.name.size() > IFNAMSIZ_ - 1) {
    return check_fail(ENAMETOOLONG, "port name '" + s.name + "' is " + std::to_string(s.name.size()) +
           " bytes; the legacy API (nmreq.nr_name) allows at most " + std::to_string(IFNAMSIZ_ - 1) +
           " (plus the terminating NUL)");
  }
  if (s.mode > NR_REG_MASK) {
    return check_fail(EINVAL, "mode " + std::to_string(s.mode) + " does not fit the legacy nr_flags mode bits (NR_REG_MASK 0xf)");
  }
  if (s.ring_id > NETMAP_RING_MASK) {
    return check_fail(EINVAL, "ring " + std::to_string(s.ring_id) + " does not fit the legacy nr_ringid (NETMAP_RING_MASK 0xfff)");
  }
  if (s.host_tx_rings != 0 || s.host_rx_rings != 0) {
    return check_fail(EOPNOTSUPP, "the legacy API cannot ask for a number of host rings (@conf:host-rings)");
  }
  const uint64_t poll_bits = NR_NO_TX_POLL | NR_DO_RX_POLL;
  uint64_t unrepresentable = s.flags & ~(LEGACY_FLAG_BITS | poll_bits);
  if (unrepresentable != 0) {
    return check_fail(EOPNOTSUPP, "flags " + hex(unrepresentable) + " have no legacy nr_flags equivalent");
  }
  nmreq r;
  std::memset(&r, 0, sizeof r);
  std::memcpy(r.nr_name, s.name.data(), s.name.size());
  r.nr_version = NETMAP_API;
  r.nr_tx_slots = s.tx_slots;
  r.nr_rx_slots = s.rx_slots;
  r.nr_tx_rings = static_cast<uint16_t>(s.tx_rings);
  r.nr_rx_rings = static_cast<uint16_t>(s.rx_rings);
  uint16_t ringid = static_cast<uint16_t>(s.ring_id);
  if (s.mode == NR_REG_ONE_NIC) ringid |= NETMAP_HW_RING;
  if (s.mode == NR_REG_SW || s.mode == NR_REG_ONE_SW) ringid |= NETMAP_SW_RING;
  if (s.flags & NR_NO_TX_POLL) ringid |= NETMAP_NO_TX_POLL;
  if (s.flags & NR_DO_RX_POLL) ringid |= NETMAP_DO_RX_POLL;
  r.nr_ringid = ringid;
  r.nr_cmd = 0;  // plain register
  r.nr_arg1 = 0;
  r.nr_arg2 = static_cast<uint16_t>(s.mem_id);
  r.nr_arg3 = s.extra_bufs;
  r.nr_flags = s.mode | static_cast<uint32_t>(s.flags & LEGACY_FLAG_BITS);
  return r;
}

Result<NifLayout> check_nifp(const uint8_t *base, size_t size, uint64_t off) {
  NifLayout l;
  std::string bad = nifp_problem(base, size, off, &l);
  if (!bad.empty()) return check_fail(EIO, bad);
  return l;
}

// Body size NIOCCTRL expects for the control requests we pass through, or
// -1 for those that need more than a one-shot fd (REGISTER binds the fd;
// the kloop/CSB requests need a registered port).
long control_body_size(uint16_t reqtype) {
  switch (reqtype) {
    case NETMAP_REQ_PORT_INFO_GET: return sizeof(nmreq_port_info_get);
    case NETMAP_REQ_VALE_ATTACH: return sizeof(nmreq_vale_attach);
    case NETMAP_REQ_VALE_DETACH: return sizeof(nmreq_vale_detach);
    case NETMAP_REQ_VALE_LIST: return sizeof(nmreq_vale_list);
    case NETMAP_REQ_PORT_HDR_SET:
    case NETMAP_REQ_PORT_HDR_GET: return sizeof(nmreq_port_hdr);
    case NETMAP_REQ_VALE_NEWIF: return sizeof(nmreq_vale_newif);
    case NETMAP_REQ_VALE_DELIF: return 0;
    case NETMAP_REQ_VALE_POLLING_ENABLE:
    case NETMAP_REQ_VALE_POLLING_DISABLE: return NMREQ_VALE_POLLING_SIZE;
    case NETMAP_REQ_POOLS_INFO_GET: return NMREQ_POOLS_INFO_SIZE;
    default: return -1;
  }
}

bool kernel_available() {
  struct stat st;
  return ::stat(NETMAP_DEVICE_NAME, &st) == 0;
}

Result<KernelRegistration> kernel_register(const RegisterSpec &s) {
  auto hdr = make_header(s.name, NETMAP_REQ_REGISTER, false);
  if (!hdr) return std::move(hdr).take_error();
  KernelRegistration out;
  out.reg = make_register(s);
  auto fd = open_device(s.device, "'" + s.label + "'");
  if (!fd) return std::move(fd).take_error();
  out.fd = std::move(fd).value();
  nmreq_register &reg = out.reg;

  hdr->nr_body = reinterpret_cast<uintptr_t>(&reg);
  const int e = do_ioctl(out.fd.get(), NIOCCTRL, &*hdr);
  if (e != 0) {
    const std::string what =
        "cannot register netmap port '" + s.label + "' (nr_name '" + s.name + "', NIOCCTRL REGISTER)";
    // Only a module that does not know NIOCCTRL gets the legacy request: one
    // that speaks NIOCCTRL turns NIOCREGIF into the same NIOCCTRL request
    // (netmap_legacy.c) and would fail it again. See ctrl_unknown().
    if (!ctrl_unknown(out.fd.get(), e)) return SysError{e, "ioctl", what, register_hint(e), {}, 0};
    const std::string unknown = "the module does not know NIOCCTRL (not netmap, or a netmap module older than API 14)";
    auto lreq = make_legacy(s);
    if (!lreq)
      return SysError{e, "ioctl", what, unknown + "; the legacy NIOCREGIF fallback was not tried: " + lreq.error().what,
                      {}, 0};
    nmreq &l = *lreq;
    const int le = do_ioctl(out.fd.get(), NIOCREGIF, &l);
    if (le != 0) {
      std::string after = unknown + "; the legacy NIOCREGIF fallback failed too";
      after += le == e ? std::string(", with the same error")
                       : std::string(": ") + std::strerror(le) + " (" + errno_symbol(le) + ")";
      after += std::string(": ") + register_hint(le);
      // old kernels write their own NETMAP_API back on a version mismatch
      if (l.nr_version != NETMAP_API)
        after += "; the kernel module speaks netmap API " + std::to_string(l.nr_version) + ", this library speaks " +
                 std::to_string(NETMAP_API) + ": upgrade the netmap module";
      // the module's answer to the registration is the legacy call's errno
      return SysError{e, "ioctl", what, after, {}, le};
    }
    out.legacy = true;
    reg.nr_offset = l.nr_offset;
    reg.nr_memsize = l.nr_memsize;
    reg.nr_tx_slots = l.nr_tx_slots;
    reg.nr_rx_slots = l.nr_rx_slots;
    reg.nr_tx_rings = l.nr_tx_rings;
    reg.nr_rx_rings = l.nr_rx_rings;
    reg.nr_host_tx_rings = 0;  // not in the legacy reply: taken from the netmap_if below
    reg.nr_host_rx_rings = 0;
    reg.nr_mem_id = l.nr_arg2;
    reg.nr_ringid = l.nr_ringid & NETMAP_RING_MASK;
    reg.nr_mode = l.nr_flags & NR_REG_MASK;
    reg.nr_flags = l.nr_flags & ~uint64_t{NR_REG_MASK};
    if (l.nr_ringid & NETMAP_NO_TX_POLL) reg.nr_flags |= NR_NO_TX_POLL;
    if (l.nr_ringid & NETMAP_DO_RX_POLL) reg.nr_flags |= NR_DO_RX_POLL;
    reg.nr_extra_bufs = l.nr_arg3;
  }

  // What the kernel returned, checked before anything is mapped.
  const std::string port = "netmap port '" + s.label + "'";
  if (reg.nr_memsize == 0 || reg.nr_memsize > MAX_MEMSIZE)
    return check_fail(EIO, port + ": the kernel returned an implausible nr_memsize " + std::to_string(reg.nr_memsize));
  if (reg.nr_offset >= reg.nr_memsize || reg.nr_memsize - reg.nr_offset < sizeof(netmap_if))
    return check_fail(EIO, port + ": the kernel returned nr_offset " + std::to_string(reg.nr_offset) + " outside the " +
                               std::to_string(reg.nr_memsize) + "-byte region");
  const size_t size = static_cast<size_t>(reg.nr_memsize);
  auto m = mapping::map_shared(out.fd.get(), size, port + ": mmap of " + std::to_string(size) + " bytes failed");
  if (!m) return std::move(m).take_error();
  out.map = std::move(m).value();
  auto layout = check_nifp(out.map.data(), size, reg.nr_offset);
  if (!layout) return check_fail(EIO, port + ": the shared region is inconsistent: " + layout.error().what);
  out.layout = std::move(layout).value();
  return out;
}

Result<std::string> kernel_request(const std::string &device, const std::string &name, uint16_t reqtype,
                                   uint8_t *body, size_t len) {
  const long want = control_body_size(reqtype);
  if (want < 0)
    return check_fail(EINVAL, "kernelRequest: request type " + std::to_string(reqtype) +
                                  " is not a one-shot control request (REGISTER needs a KernelPort; kloop/CSB "
                                  "requests need a registered port)");
  if (len != static_cast<size_t>(want))
    return check_fail(EINVAL, "kernelRequest: request type " + std::to_string(reqtype) + " takes a " +
                                  std::to_string(want) + "-byte body, got " + std::to_string(len));
  auto h = make_header(name, reqtype, true);
  if (!h) return std::move(h).take_error();
  // the kernel copies the body in and out during the call
  h->nr_body = want > 0 ? reinterpret_cast<uintptr_t>(body) : 0;
  const std::string label = name.empty() ? std::string("netmap control request") : "'" + name + "'";
  auto fd = open_device(device, label);
  if (!fd) return std::move(fd).take_error();
  if (int e = do_ioctl(fd->get(), NIOCCTRL, &*h))
    return SysError{e, "ioctl", "NIOCCTRL request " + std::to_string(reqtype) + " on " + label + " failed", {}, {}, 0};
  return std::string(h->nr_name, strnlen(h->nr_name, sizeof h->nr_name));
}

Status kernel_sync(int fd, bool tx, const std::string &label) {
  const char *what = tx ? "NIOCTXSYNC" : "NIOCRXSYNC";
  if (int e = do_ioctl(fd, tx ? NIOCTXSYNC : NIOCRXSYNC, nullptr))
    return SysError{e, "ioctl", std::string(what) + " on netmap port '" + label + "'", {}, {}, 0};
  return Ok{};
}

}  // namespace nm
