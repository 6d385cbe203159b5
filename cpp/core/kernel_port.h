// The kernel backend without N-API: a port registered with the netmap kernel
// module through /dev/netmap (NIOCCTRL + NETMAP_REQ_REGISTER, or the legacy
// NIOCREGIF on modules that lack the new control API), its region mmapped
// and checked, NIOCTXSYNC / NIOCRXSYNC, and the one-shot NIOCCTRL control
// requests (VALE_LIST, ATTACH, DETACH, NEWIF...).
//
// Everything the kernel hands back (sizes, offsets, the netmap_if and ring
// headers in shared memory) is range-checked before anyone gets a view.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "abi/netmap_abi.h"
#include "core/fd.h"
#include "core/result.h"

namespace nm {

// Bits of the 64-bit NR_* flags a register request may carry and still be
// shown to JavaScript exactly (a double holds 53 bits).
constexpr uint64_t MAX_SAFE_FLAGS = (uint64_t{1} << 53) - 1;

// What to register: the nmreq_register fields, by name.
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

// The rings a registration bound, as its netmap_if says.
struct NifLayout {
  uint32_t tx_rings = 0, rx_rings = 0, host_tx_rings = 0, host_rx_rings = 0;
  std::vector<uint32_t> tx_present, rx_present;  // indices with a bound, valid ring
};

// A registered port: the fd it is bound to, its region mapped, the
// register reply (legacy replies translated) and the netmap_if checked.
struct KernelRegistration {
  unique_fd fd;
  mapping map;
  nmreq_register reg{};
  bool legacy = false;
  NifLayout layout;
};

// A control header for `name`, or ENAMETOOLONG / EINVAL and why not.
Result<nmreq_header> make_header(const std::string &name, uint16_t reqtype, bool allow_empty);
nmreq_register make_register(const RegisterSpec &s);
// The legacy NIOCREGIF request meaning the same as `s`, or why there is none.
Result<nmreq> make_legacy(const RegisterSpec &s);
// Body size NIOCCTRL reads and writes for the one-shot control requests;
// -1 for the others (REGISTER binds an fd; kloop/CSB need a registered port).
long control_body_size(uint16_t reqtype);
// Checks the netmap_if at `off` and every ring it points to against a
// mapping of `size` bytes.
Result<NifLayout> check_nifp(const uint8_t *base, size_t size, uint64_t off);

// Whether the netmap device node exists.
bool kernel_available();
// Registers `s`: NIOCCTRL REGISTER, the legacy NIOCREGIF only on a module
// that does not know NIOCCTRL, then maps and checks the region.
Result<KernelRegistration> kernel_register(const RegisterSpec &s);
// One NIOCCTRL `reqtype` for `name` on a fresh fd of `device`; the kernel
// reads and writes body[0, len) in place (len must be control_body_size).
// Returns nr_name as the kernel left it (VALE_LIST answers with a name).
Result<std::string> kernel_request(const std::string &device, const std::string &name, uint16_t reqtype,
                                   uint8_t *body, size_t len);
// NIOCTXSYNC (tx) or NIOCRXSYNC on a registered fd.
Status kernel_sync(int fd, bool tx, const std::string &label);

}  // namespace nm
