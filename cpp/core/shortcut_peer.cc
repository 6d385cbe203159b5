#include "core/shortcut_peer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/eventfd_check.h"
#include "core/recv_fds.h"
#include "core/shortcut_ring.h"

namespace nm {

namespace {
constexpr uint8_t MAGIC[4] = {'V', 'T', 'S', 'C'};
constexpr uint8_t VERSION = 1;
constexpr size_t MAX_FDS = 4;

void put32(uint8_t *p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
uint32_t get32(const uint8_t *p) { return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3]; }

Result<sockaddr_un> un_addr(const std::string &path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path)
    return check_fail(ENAMETOOLONG, "shortcut socket path '" + path + "' is longer than a unix socket address holds", "give a shorter shortcut directory");
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}
}  // namespace

// wire: magic(4) version type 0 0 | instance(16) | vni(4) | family 0 0 0 | mine(16) | yours(16) | nonce(16) | buf_size(4) | zeros to 96
void encode_claim(const ShortcutClaim &c, uint8_t out[SHORTCUT_CLAIM_LEN]) {
  std::memset(out, 0, SHORTCUT_CLAIM_LEN);
  std::memcpy(out, MAGIC, 4);
  out[4] = VERSION;
  out[5] = SHORTCUT_CLAIM;
  std::memcpy(out + 8, c.instance.data(), 16);
  put32(out + 24, c.vni);
  out[28] = c.family;
  std::memcpy(out + 32, c.mine.data(), 16);
  std::memcpy(out + 48, c.yours.data(), 16);
  std::memcpy(out + 64, c.nonce.data(), 16);
  put32(out + 80, c.buf_size);
}

Result<ShortcutClaim> decode_claim(const uint8_t *m, size_t len) {
  if (len != SHORTCUT_CLAIM_LEN) return check_fail(EPROTO, "shortcut CLAIM of " + std::to_string(len) + " bytes, not " + std::to_string(SHORTCUT_CLAIM_LEN));
  if (std::memcmp(m, MAGIC, 4) != 0 || m[4] != VERSION || m[5] != SHORTCUT_CLAIM)
    return check_fail(EPROTO, "shortcut message of another magic, version or type", "both vale-ts must be of one version");
  ShortcutClaim c;
  std::memcpy(c.instance.data(), m + 8, 16);
  c.vni = get32(m + 24);
  c.family = m[28];
  std::memcpy(c.mine.data(), m + 32, 16);
  std::memcpy(c.yours.data(), m + 48, 16);
  std::memcpy(c.nonce.data(), m + 64, 16);
  c.buf_size = get32(m + 80);
  if (c.vni > 0xffffff) return check_fail(EPROTO, "shortcut CLAIM with VNI " + std::to_string(c.vni) + " out of range");
  if (c.family != 4 && c.family != 6) return check_fail(EPROTO, "shortcut CLAIM with address family " + std::to_string(c.family));
  if (c.buf_size < SHORTCUT_RING_MIN_SLOT || c.buf_size > SHORTCUT_RING_MAX_SLOT)
    return check_fail(EPROTO, "shortcut CLAIM with a buffer size of " + std::to_string(c.buf_size));
  return c;
}

Status shortcut_dir_check(const std::string &dir, bool create) {
  if (create && ::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return sys_fail("mkdir", "shortcut directory " + dir);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) < 0) return sys_fail("lstat", "shortcut directory " + dir);
  if (!S_ISDIR(st.st_mode)) return check_fail(ENOTDIR, "shortcut directory " + dir + " is not a directory (or is a symbolic link)");
  if (st.st_uid != ::geteuid())
    return check_fail(EPERM, "shortcut directory " + dir + " belongs to uid " + std::to_string(st.st_uid) + ", not to vale-ts's " + std::to_string(::geteuid()),
                      "give a directory of vale-ts's own user");
  if (st.st_mode & 077)
    return check_fail(EPERM, "shortcut directory " + dir + " is open to group or others", "chmod 0700 " + dir);
  return Ok{};
}

Result<std::string> shortcut_socket_path(const std::string &dir, const std::array<uint8_t, 16> &id) {
  static const char hex[] = "0123456789abcdef";
  std::string p = dir + "/";
  for (uint8_t b : id) {
    p += hex[b >> 4];
    p += hex[b & 15];
  }
  p += ".sock";
  auto a = un_addr(p);
  if (!a) return std::move(a).take_error();
  return p;
}

Result<ShortcutListener> shortcut_listen(const std::string &dir, const std::array<uint8_t, 16> &id) {
  auto p = shortcut_socket_path(dir, id);
  if (!p) return std::move(p).take_error();
  auto a = un_addr(*p);
  if (!a) return std::move(a).take_error();
  ShortcutListener l;
  const std::string lock = p->substr(0, p->size() - 5) + ".lock";
  l.lock.reset(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!l.lock) return sys_fail("open", "shortcut lock " + lock);
  if (::flock(l.lock.get(), LOCK_EX | LOCK_NB) < 0) return sys_fail("flock", "shortcut lock " + lock);
  l.sock.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!l.sock) return sys_fail("socket(AF_UNIX)", "shortcut listener");
  // the name is a fresh random id: anything there is a dead instance's socket
  ::unlink(p->c_str());
  if (::bind(l.sock.get(), reinterpret_cast<const sockaddr *>(&*a), sizeof *a) < 0) return sys_fail("bind", "shortcut listener " + *p);
  if (::listen(l.sock.get(), 8) < 0) return sys_fail("listen", "shortcut listener " + *p);
  return l;
}

uint32_t shortcut_sweep(const std::string &dir) {
  DIR *d = ::opendir(dir.c_str());
  if (!d) return 0;
  std::vector<std::string> locks;
  while (dirent *e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.size() == 32 + 5 && n.compare(32, 5, ".lock") == 0 && n.find_first_not_of("0123456789abcdef") == 32) locks.push_back(n.substr(0, 32));
  }
  ::closedir(d);
  uint32_t swept = 0;
  for (const std::string &id : locks) {
    const std::string base = dir + "/" + id;
    unique_fd f(::open((base + ".lock").c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!f || ::flock(f.get(), LOCK_EX | LOCK_NB) < 0) continue;  // alive (or gone already)
    ::unlink((base + ".sock").c_str());
    ::unlink((base + ".lock").c_str());
    swept++;
  }
  return swept;
}

Result<unique_fd> shortcut_connect(const std::string &dir, const std::array<uint8_t, 16> &id) {
  auto p = shortcut_socket_path(dir, id);
  if (!p) return std::move(p).take_error();
  auto a = un_addr(*p);
  if (!a) return std::move(a).take_error();
  unique_fd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s) return sys_fail("socket(AF_UNIX)", "shortcut connection");
  if (::connect(s.get(), reinterpret_cast<const sockaddr *>(&*a), sizeof *a) < 0) return sys_fail("connect", "shortcut peer " + *p);
  return s;
}

Status shortcut_peer_check(int fd) {
  ucred cr{};
  socklen_t l = sizeof cr;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0) return sys_fail("getsockopt(SO_PEERCRED)", "shortcut peer");
  if (cr.uid != ::geteuid() && cr.uid != 0)
    return check_fail(EPERM, "shortcut peer (pid " + std::to_string(cr.pid) + ") runs as uid " + std::to_string(cr.uid) + ", not as vale-ts's");
  return Ok{};
}

Status shortcut_send_claim(int fd, const ShortcutClaim &c, const std::vector<int> &fds) {
  if (fds.size() > MAX_FDS) return check_fail(EINVAL, "more than 4 fds with a shortcut CLAIM");
  uint8_t m[SHORTCUT_CLAIM_LEN];
  encode_claim(c, m);
  iovec iov{m, sizeof m};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS)] = {};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  if (!fds.empty()) {
    h.msg_control = cbuf;
    h.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr *ch = CMSG_FIRSTHDR(&h);
    ch->cmsg_level = SOL_SOCKET;
    ch->cmsg_type = SCM_RIGHTS;
    ch->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(ch), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t r;
  do {
    r = ::sendmsg(fd, &h, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return sys_fail("sendmsg", "shortcut CLAIM");
  if (static_cast<size_t>(r) != sizeof m) return check_fail(EIO, "shortcut CLAIM sent in part");
  return Ok{};
}

Result<ShortcutMsg> shortcut_recv_msg(int fd, std::vector<unique_fd> &fds) {
  uint8_t m[SHORTCUT_CLAIM_LEN + 1];
  int flags = 0;
  const ssize_t r = recv_with_fds<MAX_FDS>(fd, m, sizeof m, fds, flags);
  if (r < 0) return sys_fail("recvmsg", "shortcut message");
  if (r == 0) return check_fail(ECONNRESET, "shortcut peer went away");
  if (flags & (MSG_TRUNC | MSG_CTRUNC)) return check_fail(EPROTO, "shortcut message longer than a CLAIM, or with more than 4 fds");
  ShortcutMsg msg;
  if (r == static_cast<ssize_t>(SHORTCUT_CLAIM_LEN) && std::memcmp(m, MAGIC, 4) == 0 && m[4] == VERSION && m[5] == SHORTCUT_CHANNEL) {
    msg.type = SHORTCUT_CHANNEL;
    msg.slots = get32(m + 8);
    msg.slot_size = get32(m + 12);
    return msg;
  }
  auto c = decode_claim(m, static_cast<size_t>(r));
  if (!c) return std::move(c).take_error();
  msg.type = SHORTCUT_CLAIM;
  msg.claim = *c;
  return msg;
}

Result<ShortcutClaim> shortcut_recv_claim(int fd, std::vector<unique_fd> &fds) {
  auto m = shortcut_recv_msg(fd, fds);
  if (!m) return std::move(m).take_error();
  if (m->type != SHORTCUT_CLAIM) return check_fail(EPROTO, "shortcut message of another magic, version or type", "both vale-ts must be of one version");
  return m->claim;
}

Status shortcut_send_channel(int fd, uint32_t slots, uint32_t slot_size, int memfd, int bell0, int bell1) {
  uint8_t m[SHORTCUT_CLAIM_LEN] = {};
  std::memcpy(m, MAGIC, 4);
  m[4] = VERSION;
  m[5] = SHORTCUT_CHANNEL;
  put32(m + 8, slots);
  put32(m + 12, slot_size);
  iovec iov{m, sizeof m};
  const int fds[3] = {memfd, bell0, bell1};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof fds)] = {};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  h.msg_control = cbuf;
  h.msg_controllen = sizeof cbuf;
  cmsghdr *ch = CMSG_FIRSTHDR(&h);
  ch->cmsg_level = SOL_SOCKET;
  ch->cmsg_type = SCM_RIGHTS;
  ch->cmsg_len = CMSG_LEN(sizeof fds);
  std::memcpy(CMSG_DATA(ch), fds, sizeof fds);
  ssize_t r;
  do {
    r = ::sendmsg(fd, &h, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return sys_fail("sendmsg", "shortcut CHANNEL");
  if (static_cast<size_t>(r) != sizeof m) return check_fail(EIO, "shortcut CHANNEL sent in part");
  return Ok{};
}

Status shortcut_check_eventfd(int fd) {
  if (std::string why = eventfd_check(fd); !why.empty()) return check_fail(EINVAL, "shortcut wakeup fd from the peer: " + why);
  return Ok{};
}

}  // namespace nm
