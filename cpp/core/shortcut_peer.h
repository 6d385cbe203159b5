// The rendezvous of two co-resident VXLAN ports (docs/vxlan-shortcut.md,
// "Rendezvous and proof"): a SOCK_SEQPACKET unix socket per port in a
// directory only vale-ts's user can enter, named by the port's instance id;
// CLAIM messages (who I am, which VNI, which addresses, a nonce, my buffer
// size) with the channel's fds riding along as SCM_RIGHTS.
//
// Everything received is the peer's word: a message of another length,
// magic, version or type, an address family other than 4 or 6, a buffer
// size outside the ring's bounds, is refused with the reason; a peer of
// another uid (SO_PEERCRED) is refused before anything is read from it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/fd.h"
#include "core/result.h"

namespace nm {

constexpr size_t SHORTCUT_CLAIM_LEN = 96;
constexpr uint8_t SHORTCUT_CLAIM = 4;    // message types (1 HELLO, 2 PROOF, 3 MARKER travel over VXLAN)
constexpr uint8_t SHORTCUT_CHANNEL = 5;  // the channel's memfd (SCM_RIGHTS) and its geometry

struct ShortcutClaim {
  std::array<uint8_t, 16> instance{};  // the sender's instance id (as in its HELLOs)
  uint32_t vni = 0;
  uint8_t family = 0;                  // 4 or 6: how many bytes of the addresses count
  std::array<uint8_t, 16> mine{};      // the sender's underlay address
  std::array<uint8_t, 16> yours{};     // the receiver's address, as the sender sends to it
  std::array<uint8_t, 16> nonce{};     // to come back over VXLAN in a PROOF
  uint32_t buf_size = 0;               // the sender's port buffer size: the ring's slot size is the larger
};

void encode_claim(const ShortcutClaim &c, uint8_t out[SHORTCUT_CLAIM_LEN]);
Result<ShortcutClaim> decode_claim(const uint8_t *m, size_t len);

// DIR exists (made 0700 if `create` and absent), is a directory and not a
// link, belongs to this process's effective uid and grants nothing to group
// or others: the sockets in it can then only be made by that uid (or root).
Status shortcut_dir_check(const std::string &dir, bool create);
// DIR/<32 hex digits>.sock; fails when it does not fit a sockaddr_un.
Result<std::string> shortcut_socket_path(const std::string &dir, const std::array<uint8_t, 16> &id);
// The listener, and beside it DIR/<id>.lock held with flock for the
// listener's life: a lock that can be taken marks a dead instance, whose
// socket and lock shortcut_sweep removes (a SIGKILLed vale-ts unlinks nothing).
struct ShortcutListener {
  unique_fd sock;
  unique_fd lock;
};
Result<ShortcutListener> shortcut_listen(const std::string &dir, const std::array<uint8_t, 16> &id);
// Removes the sockets of dead instances from DIR; returns how many.
uint32_t shortcut_sweep(const std::string &dir);
Result<unique_fd> shortcut_connect(const std::string &dir, const std::array<uint8_t, 16> &id);
// The connected peer runs as our effective uid, or as root.
Status shortcut_peer_check(int fd);
Status shortcut_send_claim(int fd, const ShortcutClaim &c, const std::vector<int> &fds);
// One CLAIM and the fds that came with it (at most 4; owned by `fds`).
// EOF is ECONNRESET ("the peer went away").
Result<ShortcutClaim> shortcut_recv_claim(int fd, std::vector<unique_fd> &fds);

// CHANNEL: "VTSC" 1 5 0 0 | slots | slot size | zeros, with three fds: the
// memfd, then the eventfds that wake the consumer of ring 0 (the attaching
// side) and of ring 1 (the creating side).
Status shortcut_send_channel(int fd, uint32_t slots, uint32_t slot_size, int memfd, int bell0, int bell1);
// An fd received as a wakeup is an eventfd (made non-blocking): writing 8
// bytes to it, reading 8 from it, cannot block or reach anything else.
Status shortcut_check_eventfd(int fd);
// One message of either type, checked as the functions above check it.
struct ShortcutMsg {
  uint8_t type = 0;
  ShortcutClaim claim;                  // type CLAIM
  uint32_t slots = 0, slot_size = 0;    // type CHANNEL (not yet checked: attach checks the memfd's own header)
};
Result<ShortcutMsg> shortcut_recv_msg(int fd, std::vector<unique_fd> &fds);

}  // namespace nm
