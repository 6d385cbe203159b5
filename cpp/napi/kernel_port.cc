// The kernel backend: a port registered with the netmap kernel module through
// /dev/netmap (NIOCCTRL + NETMAP_REQ_REGISTER, or the legacy NIOCREGIF on
// kernels that lack the new control API), its region mmapped and checked,
// and NIOCTXSYNC / NIOCRXSYNC. Also the raw NIOCCTRL control requests that
// vale-ctl-ts sends to a real kernel (VALE_LIST, ATTACH, DETACH, NEWIF...).
//
// Everything the kernel hands back (sizes, offsets, the netmap_if and ring
// headers in shared memory) is range-checked before JS ever gets a view.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <optional>
#include <vector>

#include "napi/napi_util.h"
#include "abi/netmap_abi.h"

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
constexpr uint64_t MAX_SAFE_FLAGS = (uint64_t{1} << 53) - 1;
// Body sizes per control request (netmap.c nmreq_size_by_type). The kernel
// copies exactly this many bytes from/to nr_body, so a shorter buffer would
// let it read and write past our memory.
constexpr size_t NMREQ_VALE_POLLING_SIZE = 16;
constexpr size_t NMREQ_POOLS_INFO_SIZE = 64;
// src/backends/kernel.ts reads nr_mem_id from a PORT_INFO_GET reply (@share=).
static_assert(offsetof(nmreq_port_info_get, nr_mem_id) == 24);

// ---- errors -------------------------------------------------------------

const char *code_name(int e) {
  switch (e) {
    case ENOTTY: return "ENOTTY";
    case EINTR: return "EINTR";
    case EFAULT: return "EFAULT";
    case ENOBUFS: return "ENOBUFS";
    case EIO: return "EIO";
    case E2BIG: return "E2BIG";
    case ERANGE: return "ERANGE";
    case EOVERFLOW: return "EOVERFLOW";
    default: return errno_code(e);
  }
}

// Like errno_error, with ENOTTY & co named correctly and the syscall attached:
// "what: strerror (CODE)" then `after` (what it means), the errno text once.
Napi::Error sys_error(Napi::Env env, const std::string &what, int e, const char *syscall,
                      const std::string &after = "") {
  const char *code = code_name(e);
  Napi::Error err = Napi::Error::New(env, what + ": " + std::strerror(e) + " (" + code + ")" + after);
  err.Set("code", Napi::String::New(env, code));
  err.Set("errno", Napi::Number::New(env, e));
  err.Set("syscall", Napi::String::New(env, syscall));
  return err;
}

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

Napi::Error missing_module_error(Napi::Env env, const std::string &label, const std::string &dev, int e) {
  Napi::Error err = Napi::Error::New(env, "cannot open " + label + ": " + dev + " is missing (" + std::strerror(e) +
                                              "): " + NO_MODULE_HINT);
  err.Set("code", Napi::String::New(env, "ENODEV"));
  err.Set("errno", Napi::Number::New(env, e));
  err.Set("syscall", Napi::String::New(env, "open"));
  err.Set("path", Napi::String::New(env, dev));
  return err;
}

int open_device(Napi::Env env, const std::string &dev, const std::string &label) {
  int fd;
  do {
    fd = ::open(dev.c_str(), O_RDWR | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd >= 0) return fd;
  int e = errno;
  // ENOENT: no device node; ENXIO/ENODEV: a node whose driver is not loaded
  if (e == ENOENT || e == ENXIO || e == ENODEV) throw missing_module_error(env, label, dev, e);
  if (e == EACCES || e == EPERM)
    throw sys_error(env, "cannot open " + dev + " for " + label + " (netmap needs root, or read/write access to " +
                             dev + ")",
                    e, "open");
  throw sys_error(env, "cannot open " + dev + " for " + label, e, "open");
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

class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard &) = delete;
  FdGuard &operator=(const FdGuard &) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

// ---- the register request from a JS spec --------------------------------

struct RegisterSpec {
  std::string name;
  std::string label;  // for messages: the port name as the user wrote it
  std::string device = NETMAP_DEVICE_NAME;
  uint32_t mode = 0;
  uint32_t ring_id = 0;
  uint64_t flags = 0;
  uint32_t tx_slots = 0;
  uint32_t rx_slots = 0;
  uint32_t tx_rings = 0;
  uint32_t rx_rings = 0;
  uint32_t host_tx_rings = 0;
  uint32_t host_rx_rings = 0;
  uint32_t mem_id = 0;
  uint32_t extra_bufs = 0;
};

uint32_t bounded(Napi::Object o, const char *key, uint32_t max) {
  uint32_t v = opt_u32(o, key, 0);
  if (v > max)
    throw Napi::RangeError::New(o.Env(), std::string(key) + " must be at most " + std::to_string(max) + ", got " +
                                             std::to_string(v));
  return v;
}

std::string opt_string(Napi::Object o, const char *key, const std::string &dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return dflt;
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a string");
  return v.As<Napi::String>();
}

RegisterSpec parse_spec(const Napi::CallbackInfo &info, size_t i) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsObject())
    throw Napi::TypeError::New(env, "expected a register spec {name, mode, ringId, flags, ...}");
  Napi::Object o = info[i].As<Napi::Object>();
  RegisterSpec s;
  Napi::Value name = o.Get("name");
  if (!name.IsString()) throw Napi::TypeError::New(env, "spec.name must be a string (the nr_name, e.g. 'eth0')");
  s.name = name.As<Napi::String>();
  if (s.name.empty()) throw coded_error(env, "spec.name is empty: name the interface or VALE port", "EINVAL");
  if (s.name.find('\0') != std::string::npos)
    throw coded_error(env, "spec.name contains a NUL character", "EINVAL");
  s.label = opt_string(o, "label", s.name);
  s.device = opt_string(o, "device", NETMAP_DEVICE_NAME);
  s.mode = bounded(o, "mode", 0xffffffffu);
  s.ring_id = bounded(o, "ringId", 0xffff);
  Napi::Value fv = o.Get("flags");
  if (!fv.IsUndefined()) {
    if (!fv.IsNumber()) throw Napi::TypeError::New(env, "flags must be a number");
    double d = fv.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= static_cast<double>(MAX_SAFE_FLAGS)) || std::floor(d) != d)
      throw Napi::RangeError::New(env, "flags must be a non-negative integer below 2^53");
    s.flags = static_cast<uint64_t>(d);
  }
  s.tx_slots = bounded(o, "txSlots", 0xffffffffu);
  s.rx_slots = bounded(o, "rxSlots", 0xffffffffu);
  s.tx_rings = bounded(o, "txRings", 0xffff);
  s.rx_rings = bounded(o, "rxRings", 0xffff);
  s.host_tx_rings = bounded(o, "hostTxRings", 0xffff);
  s.host_rx_rings = bounded(o, "hostRxRings", 0xffff);
  s.mem_id = bounded(o, "memId", 0xffff);
  s.extra_bufs = bounded(o, "extraBufs", 0xffffffffu);
  return s;
}

Napi::Error name_too_long(Napi::Env env, const std::string &name, size_t max, const char *api) {
  return coded_error(env,
                     "port name '" + name + "' is " + std::to_string(name.size()) + " bytes; the " + api +
                         " allows at most " + std::to_string(max) + " (plus the terminating NUL)",
                     "ENAMETOOLONG");
}

nmreq_header make_header(Napi::Env env, const std::string &name, uint16_t reqtype, bool allow_empty) {
  if (name.size() > NETMAP_REQ_IFNAMSIZ - 1)
    throw name_too_long(env, name, NETMAP_REQ_IFNAMSIZ - 1, "netmap control API (nmreq_header.nr_name)");
  if (!allow_empty && name.empty()) throw coded_error(env, "empty port name", "EINVAL");
  if (name.find('\0') != std::string::npos) throw coded_error(env, "port name contains a NUL character", "EINVAL");
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

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

// The legacy struct nmreq for NIOCREGIF (netmap_legacy.h). The kernel
// (netmap_legacy.c, nmreq_register_from_legacy) takes the NR_REG_* mode from
// the low 4 bits of nr_flags and the ring index from nr_ringid &
// NETMAP_RING_MASK; NETMAP_HW_RING / NETMAP_SW_RING are the pre-nr_flags way
// to say "one NIC ring" / "host rings" and are set as well, so the request
// means the same thing to either reading. Returns nullopt and why when the
// request cannot be expressed without changing its meaning.
std::optional<nmreq> make_legacy(const RegisterSpec &s, std::string *why, int *code) {
  *code = EINVAL;
  if (s.name.size() > IFNAMSIZ_ - 1) {
    *code = ENAMETOOLONG;
    *why = "port name '" + s.name + "' is " + std::to_string(s.name.size()) +
           " bytes; the legacy API (nmreq.nr_name) allows at most " + std::to_string(IFNAMSIZ_ - 1) +
           " (plus the terminating NUL)";
    return std::nullopt;
  }
  if (s.mode > NR_REG_MASK) {
    *why = "mode " + std::to_string(s.mode) + " does not fit the legacy nr_flags mode bits (NR_REG_MASK 0xf)";
    return std::nullopt;
  }
  if (s.ring_id > NETMAP_RING_MASK) {
    *why = "ring " + std::to_string(s.ring_id) + " does not fit the legacy nr_ringid (NETMAP_RING_MASK 0xfff)";
    return std::nullopt;
  }
  if (s.host_tx_rings != 0 || s.host_rx_rings != 0) {
    *code = EOPNOTSUPP;
    *why = "the legacy API cannot ask for a number of host rings (@conf:host-rings)";
    return std::nullopt;
  }
  const uint64_t poll_bits = NR_NO_TX_POLL | NR_DO_RX_POLL;
  uint64_t unrepresentable = s.flags & ~(LEGACY_FLAG_BITS | poll_bits);
  if (unrepresentable != 0) {
    *code = EOPNOTSUPP;
    *why = "flags " + hex(unrepresentable) + " have no legacy nr_flags equivalent";
    return std::nullopt;
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

// ---- checking what the kernel returned ----------------------------------

struct NifLayout {
  uint32_t tx_rings = 0, rx_rings = 0, host_tx_rings = 0, host_rx_rings = 0;
  std::vector<uint32_t> tx_present, rx_present;  // indices with a bound, valid ring
};

// Checks the netmap_if at `off` and every ring it points to against the
// mapping. Returns an empty string when all is in range, else what is not.
std::string check_nifp(const uint8_t *base, size_t size, uint64_t off, NifLayout *out) {
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

Napi::Array to_array(Napi::Env env, const std::vector<uint32_t> &v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (uint32_t i = 0; i < v.size(); i++) a.Set(i, Napi::Number::New(env, v[i]));
  return a;
}

// ---- exported functions --------------------------------------------------

Napi::Value KernelAvailable(const Napi::CallbackInfo &info) {
  struct stat st;
  return Napi::Boolean::New(info.Env(), ::stat(NETMAP_DEVICE_NAME, &st) == 0);
}

Napi::Value EncodeRegisterRequest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RegisterSpec s = parse_spec(info, 0);
  nmreq_header h = make_header(env, s.name, NETMAP_REQ_REGISTER, false);
  nmreq_register r = make_register(s);
  Napi::Object o = Napi::Object::New(env);
  o.Set("header", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t *>(&h), sizeof h));
  o.Set("body", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t *>(&r), sizeof r));
  return o;
}

Napi::Value EncodeLegacyRegisterRequest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RegisterSpec s = parse_spec(info, 0);
  std::string why;
  int code = 0;
  std::optional<nmreq> r = make_legacy(s, &why, &code);
  if (!r) throw coded_error(env, "cannot encode a legacy NIOCREGIF request: " + why, code_name(code));
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t *>(&*r), sizeof *r);
}

// Body size NIOCCTRL expects for the control requests we pass through, or
// -1 for those that need more than a one-shot fd (REGISTER binds the fd;
// the kloop/CSB requests need a registered port).
long body_size_for(uint16_t reqtype) {
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

// kernelRequest(reqtype, name, body: Buffer, device?): one NIOCCTRL on a fresh
// fd; the kernel reads and writes `body` in place. Returns {body, name}, name
// being nr_name as the kernel left it (VALE_LIST answers with a port's name).
Napi::Value KernelRequest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t rt = arg_u32(info, 0, "reqtype");
  if (info.Length() < 2 || !info[1].IsString())
    throw Napi::TypeError::New(env, "kernelRequest(reqtype, name, body, device?)");
  std::string name = info[1].As<Napi::String>();
  long want = rt <= 0xffff ? body_size_for(static_cast<uint16_t>(rt)) : -1;
  if (want < 0)
    throw coded_error(env,
                      "kernelRequest: request type " + std::to_string(rt) +
                          " is not a one-shot control request (REGISTER needs a KernelPort; kloop/CSB requests "
                          "need a registered port)",
                      "EINVAL");
  Napi::Buffer<uint8_t> body;
  if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()) {
    if (!info[2].IsBuffer()) throw Napi::TypeError::New(env, "kernelRequest body must be a Buffer");
    body = info[2].As<Napi::Buffer<uint8_t>>();
  } else {
    body = Napi::Buffer<uint8_t>::New(env, 0);
  }
  if (body.Length() != static_cast<size_t>(want))
    throw coded_error(env,
                      "kernelRequest: request type " + std::to_string(rt) + " takes a " + std::to_string(want) +
                          "-byte body, got " + std::to_string(body.Length()),
                      "EINVAL");
  std::string device = NETMAP_DEVICE_NAME;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsString()) throw Napi::TypeError::New(env, "kernelRequest device must be a string");
    device = info[3].As<Napi::String>();
  }
  nmreq_header h = make_header(env, name, static_cast<uint16_t>(rt), true);
  // The kernel copies the body in and out during the call; a Buffer's bytes
  // do not move while this synchronous call runs.
  h.nr_body = want > 0 ? reinterpret_cast<uintptr_t>(body.Data()) : 0;
  std::string label = name.empty() ? std::string("netmap control request") : "'" + name + "'";
  FdGuard fd(open_device(env, device, label));
  int e = do_ioctl(fd.get(), NIOCCTRL, &h);
  if (e != 0)
    throw sys_error(env, "NIOCCTRL request " + std::to_string(rt) + " on " + label + " failed", e, "ioctl");
  auto out = Napi::Object::New(env);
  out.Set("body", body);
  out.Set("name", Napi::String::New(env, std::string(h.nr_name, strnlen(h.nr_name, sizeof h.nr_name))));
  return out;
}

// ---- KernelPort ------------------------------------------------------------

class KernelPort : public Napi::ObjectWrap<KernelPort> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "KernelPort",
                       {InstanceMethod("txsync", &KernelPort::TxSync), InstanceMethod("rxsync", &KernelPort::RxSync),
                        InstanceMethod("close", &KernelPort::Close),
                        InstanceAccessor("memory", &KernelPort::Memory, nullptr),
                        InstanceAccessor("nifpOffset", &KernelPort::NifpOffset, nullptr),
                        InstanceAccessor("fd", &KernelPort::Fd, nullptr),
                        InstanceAccessor("info", &KernelPort::Info, nullptr)});
  }

  KernelPort(const Napi::CallbackInfo &info) : Napi::ObjectWrap<KernelPort>(info) {
    Napi::Env env = info.Env();
    RegisterSpec s = parse_spec(info, 0);
    label_ = s.label;
    nmreq_header hdr = make_header(env, s.name, NETMAP_REQ_REGISTER, false);
    nmreq_register reg = make_register(s);
    FdGuard fd(open_device(env, s.device, "'" + s.label + "'"));

    hdr.nr_body = reinterpret_cast<uintptr_t>(&reg);
    int e = do_ioctl(fd.get(), NIOCCTRL, &hdr);
    bool legacy = false;
    if (e != 0) {
      const std::string what =
          "cannot register netmap port '" + s.label + "' (nr_name '" + s.name + "', NIOCCTRL REGISTER)";
      // Only a module that does not know NIOCCTRL gets the legacy request: one
      // that speaks NIOCCTRL turns NIOCREGIF into the same NIOCCTRL request
      // (netmap_legacy.c) and would fail it again. See ctrl_unknown().
      if (!ctrl_unknown(fd.get(), e)) throw sys_error(env, what, e, "ioctl", std::string(": ") + register_hint(e));
      const std::string unknown = ": the module does not know NIOCCTRL (not netmap, or a netmap module older than API 14)";
      std::string why;
      int why_code = 0;
      std::optional<nmreq> lreq = make_legacy(s, &why, &why_code);
      if (!lreq) throw sys_error(env, what, e, "ioctl", unknown + "; the legacy NIOCREGIF fallback was not tried: " + why);
      nmreq l = *lreq;
      const int le = do_ioctl(fd.get(), NIOCREGIF, &l);
      if (le != 0) {
        // the module's answer to the registration is the legacy call's errno
        std::string after = unknown + "; the legacy NIOCREGIF fallback failed too";
        after += le == e ? std::string(", with the same error") : std::string(": ") + std::strerror(le) + " (" + code_name(le) + ")";
        after += std::string(": ") + register_hint(le);
        // old kernels write their own NETMAP_API back on a version mismatch
        if (l.nr_version != NETMAP_API)
          after += "; the kernel module speaks netmap API " + std::to_string(l.nr_version) + ", this library speaks " +
                   std::to_string(NETMAP_API) + ": upgrade the netmap module";
        Napi::Error err = sys_error(env, what, e, "ioctl", after);
        err.Set("code", Napi::String::New(env, code_name(le)));
        err.Set("errno", Napi::Number::New(env, le));
        throw err;
      }
      legacy = true;
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
    if (reg.nr_memsize == 0 || reg.nr_memsize > MAX_MEMSIZE)
      throw coded_error(env,
                        "netmap port '" + s.label + "': the kernel returned an implausible nr_memsize " +
                            std::to_string(reg.nr_memsize),
                        "EIO");
    if (reg.nr_offset >= reg.nr_memsize || reg.nr_memsize - reg.nr_offset < sizeof(netmap_if))
      throw coded_error(env,
                        "netmap port '" + s.label + "': the kernel returned nr_offset " +
                            std::to_string(reg.nr_offset) + " outside the " + std::to_string(reg.nr_memsize) +
                            "-byte region",
                        "EIO");
    const size_t size = static_cast<size_t>(reg.nr_memsize);
    void *m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (m == MAP_FAILED) {
      int me = errno;
      throw sys_error(env, "netmap port '" + s.label + "': mmap of " + std::to_string(size) + " bytes failed", me,
                      "mmap");
    }
    NifLayout layout;
    std::string bad = check_nifp(static_cast<const uint8_t *>(m), size, reg.nr_offset, &layout);
    if (!bad.empty()) {
      ::munmap(m, size);
      throw coded_error(env, "netmap port '" + s.label + "': the shared region is inconsistent: " + bad, "EIO");
    }
    // takes the mapping over (munmaps it itself if it fails)
    memory_ = Napi::Persistent(mapping_to_arraybuffer(env, m, size));
    base_ = m;
    size_ = size;
    nifp_offset_ = reg.nr_offset;

    Napi::Object o = Napi::Object::New(env);
    o.Set("txSlots", Napi::Number::New(env, reg.nr_tx_slots));
    o.Set("rxSlots", Napi::Number::New(env, reg.nr_rx_slots));
    o.Set("txRings", Napi::Number::New(env, reg.nr_tx_rings));
    o.Set("rxRings", Napi::Number::New(env, reg.nr_rx_rings));
    o.Set("hostTxRings", Napi::Number::New(env, legacy ? layout.host_tx_rings : reg.nr_host_tx_rings));
    o.Set("hostRxRings", Napi::Number::New(env, legacy ? layout.host_rx_rings : reg.nr_host_rx_rings));
    o.Set("memId", Napi::Number::New(env, reg.nr_mem_id));
    o.Set("memSize", Napi::Number::New(env, static_cast<double>(reg.nr_memsize)));
    o.Set("usedLegacy", Napi::Boolean::New(env, legacy));
    o.Set("mode", Napi::Number::New(env, reg.nr_mode));
    o.Set("ringId", Napi::Number::New(env, reg.nr_ringid));
    o.Set("flags", Napi::Number::New(env, static_cast<double>(reg.nr_flags & MAX_SAFE_FLAGS)));
    o.Set("extraBufs", Napi::Number::New(env, reg.nr_extra_bufs));
    Napi::Object lo = Napi::Object::New(env);
    lo.Set("txRings", Napi::Number::New(env, layout.tx_rings));
    lo.Set("rxRings", Napi::Number::New(env, layout.rx_rings));
    lo.Set("hostTxRings", Napi::Number::New(env, layout.host_tx_rings));
    lo.Set("hostRxRings", Napi::Number::New(env, layout.host_rx_rings));
    lo.Set("txPresent", to_array(env, layout.tx_present));
    lo.Set("rxPresent", to_array(env, layout.rx_present));
    o.Set("layout", lo);
    info_ = Napi::Persistent(o);
    fd_ = fd.release();
  }

  ~KernelPort() override {
    // The mapping may already be gone with its ArrayBuffer; only the fd is ours.
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  Napi::Value Memory(const Napi::CallbackInfo &info) {
    if (memory_.IsEmpty()) return info.Env().Null();
    return memory_.Value();
  }
  Napi::Value NifpOffset(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), static_cast<double>(nifp_offset_));
  }
  Napi::Value Fd(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value Info(const Napi::CallbackInfo &info) {
    if (info_.IsEmpty()) return info.Env().Null();
    return info_.Value();
  }

  Napi::Value Sync(const Napi::CallbackInfo &info, unsigned long request, const char *what) {
    Napi::Env env = info.Env();
    if (fd_ < 0) throw coded_error(env, "netmap port '" + label_ + "' is closed", "EBADF");
    int e = do_ioctl(fd_, request, nullptr);
    if (e != 0) throw sys_error(env, std::string(what) + " on netmap port '" + label_ + "'", e, "ioctl");
    return env.Undefined();
  }
  Napi::Value TxSync(const Napi::CallbackInfo &info) { return Sync(info, NIOCTXSYNC, "NIOCTXSYNC"); }
  Napi::Value RxSync(const Napi::CallbackInfo &info) { return Sync(info, NIOCRXSYNC, "NIOCRXSYNC"); }

  // Unregisters now: the kernel keeps a port bound while any mapping of its
  // fd exists, and the ArrayBuffer (with every view JS still holds) lives
  // until GC. So the netmap pages are swapped for private anonymous memory
  // at the same address (zeros, never the kernel's pages again), which drops
  // the mapping's hold on the file; the fd is closed; the address range is
  // unmapped when the ArrayBuffer goes. memory_ is held strongly, so the
  // range is still ours here.
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (fd_ < 0) return info.Env().Undefined();
    if (base_ != nullptr) {
      void *r = ::mmap(base_, size_, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
      // on failure the netmap mapping stays until GC unmaps it: still correct,
      // only the port stays bound a little longer
      (void)r;
    }
    ::close(fd_);
    fd_ = -1;
    return info.Env().Undefined();
  }

  std::string label_;
  int fd_ = -1;
  void *base_ = nullptr;
  size_t size_ = 0;
  uint64_t nifp_offset_ = 0;
  Napi::Reference<Napi::ArrayBuffer> memory_;
  Napi::ObjectReference info_;
};

}  // namespace

void InitKernel(Napi::Env env, Napi::Object exports) {
  exports.Set("kernelAvailable", Napi::Function::New(env, KernelAvailable));
  exports.Set("encodeRegisterRequest", Napi::Function::New(env, EncodeRegisterRequest));
  exports.Set("encodeLegacyRegisterRequest", Napi::Function::New(env, EncodeLegacyRegisterRequest));
  exports.Set("kernelRequest", Napi::Function::New(env, KernelRequest));
  exports.Set("KernelPort", KernelPort::Define(env));
}

}  // namespace nm
