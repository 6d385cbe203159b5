#include "core/socket_netdev_driver.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "core/clock.h"
#include "core/path_split.h"

namespace nm {

namespace {
constexpr uint32_t BATCH = 256;
// dgram: how long to wait before sending again to a peer whose receive queue
// was full, doubling while it stays full
constexpr int64_t RETRY_MIN_NS = 1'000'000, RETRY_MAX_NS = 16'000'000;
// stream client: how often to try to connect while the peer is not there
constexpr int64_t CONNECT_RETRY_NS = 1'000'000'000;

Result<sockaddr_un> unix_addr(const std::string &path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path)
    return check_fail(ENAMETOOLONG, "unix socket path '" + path + "' must be 1 to " + std::to_string(sizeof a.sun_path - 1) + " bytes");
  std::memcpy(a.sun_path, path.data(), path.size());
  return a;
}

// realpath() of the directory + the name: the socket file itself need not
// exist (QEMU binds it when it starts), its directory must.
Result<std::string> canonical_path(const std::string &path) {
  const auto split = split_path(path);
  if (path.empty() || path[0] != '/' || !split) return check_fail(EINVAL, "unix socket path '" + path + "' must be absolute and name a file");
  std::unique_ptr<char, decltype(&::free)> real(::realpath(split->dir.c_str(), nullptr), &::free);
  if (!real)
    return sys_fail("realpath", "directory " + split->dir + " of socket path " + path + " does not exist or cannot be searched");
  std::string r(real.get());
  if (r != "/") r += '/';
  return r + split->name;
}

// bind(), replacing a stale socket file (one nobody listens on) but nothing else
Status bind_unix(int fd, const sockaddr_un &a, const std::string &path) {
  if (::bind(fd, reinterpret_cast<const sockaddr *>(&a), sizeof a) == 0) return Ok{};
  if (errno != EADDRINUSE) return sys_fail("bind", "socket " + path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0 || !S_ISSOCK(st.st_mode))
    return check_fail(EEXIST, "socket path " + path + " exists and is not a socket", "choose another path or remove the file");
  // Only ECONNREFUSED (or the file gone) says nobody is bound there: a live
  // socket of another type (a datagram socket, probed with a stream one)
  // answers EPROTOTYPE, a listener with a full backlog EAGAIN.
  unique_fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe) return sys_fail("socket", "probing socket " + path);
  const bool live = ::connect(probe.get(), reinterpret_cast<const sockaddr *>(&a), sizeof a) == 0 || (errno != ECONNREFUSED && errno != ENOENT);
  probe.reset();
  if (live) return check_fail(EADDRINUSE, "socket " + path + " is in use by another listener");
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<const sockaddr *>(&a), sizeof a) < 0) return sys_fail("bind", "socket " + path);
  return Ok{};
}
}  // namespace

Result<std::unique_ptr<SocketNetdevDriver>> SocketNetdevDriver::open(PortClient pc, const SocketNetdevOptions &o, std::string label) {
  auto a = unix_addr(o.path);
  if (!a) return std::move(a).take_error();
  std::unique_ptr<SocketNetdevDriver> d(new SocketNetdevDriver(std::move(pc), std::move(label)));
  d->o_ = o;
  using M = SocketNetdevOptions::Mode;
  if (o.mode == M::StreamServer) {
    unique_fd l(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!l) return sys_fail("socket", "stream netdev " + o.path);
    auto b = bind_unix(l.get(), *a, o.path);
    if (!b) return std::move(b).take_error();
    if (::listen(l.get(), 4) < 0) return sys_fail("listen", "stream netdev " + o.path);
    d->listen_ = std::move(l);
    d->unlink_on_close_ = true;
  } else if (o.mode == M::StreamClient) {
    d->peer_ = *a;
    d->try_connect();
  } else {
    // QEMU's path as the kernel will spell it once QEMU binds it, if QEMU is
    // given the same spelling; it is checked now so that a typo is an error,
    // not a port that drops every datagram as foreign. An abstract name
    // (leading NUL) is no path: taken byte for byte. Frames go to the
    // configured spelling: a symlinked run directory pointed elsewhere is
    // followed, and only that spelling must fit in sun_path.
    auto p = unix_addr(o.peer);
    if (!p) return std::move(p).take_error();
    if (o.peer[0] == '\0') {
      d->peer_canon_ = o.peer;
    } else {
      auto c = canonical_path(o.peer);
      if (!c) return std::move(c).take_error();
      d->peer_canon_ = std::move(*c);
    }
    d->peer_ = *p;
    if (o.peer[0] == '\0') d->peer_len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + o.peer.size());
    unique_fd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s) return sys_fail("socket", "dgram netdev " + o.path);
    // each datagram carries its sender's uid (from_peer)
    const int on = 1;
    if (::setsockopt(s.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) < 0) return sys_fail("setsockopt", "SO_PASSCRED on dgram netdev " + o.path);
    auto b = bind_unix(s.get(), *a, o.path);
    if (!b) return std::move(b).take_error();
    d->conn_ = std::move(s);
    d->readable_ = true;
    d->unlink_on_close_ = true;
  }
  d->in_.resize(2 * (4 + STREAM_MAX_FRAME));
  return d;
}

SocketNetdevDriver::~SocketNetdevDriver() {
  stop();
  if (unlink_on_close_) ::unlink(o_.path.c_str());
}

void SocketNetdevDriver::try_connect() {
  connect_at_ns_ = mono_ns() + CONNECT_RETRY_NS;
  unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s) return;
  // a unix connect completes at once or fails (EAGAIN only with a full backlog: retried)
  if (::connect(s.get(), reinterpret_cast<const sockaddr *>(&peer_), sizeof peer_) < 0) return;
  conn_ = std::move(s);
  readable_ = true;
  count(Ctr::Connects);
}

void SocketNetdevDriver::close_conn(const std::string &why) {
  if (o_.mode == SocketNetdevOptions::Mode::Dgram) return;
  if (conn_) {
    count(Ctr::Disconnects);
    log_limited(disconnect_log_, "stream peer disconnected: " + why);
  }
  conn_.reset();
  connect_at_ns_ = mono_ns() + CONNECT_RETRY_NS;
  readable_ = false;
  in_have_ = skip_ = 0;
  drop_out_tail();
  out_blocked_ = false;
  send_shut_ = false;
}

// The end of what the peer sends (EOF or a read error): every whole frame
// read before it was delivered first (stream_in reads only then), so what
// is left is a frame cut short. The rest of a too-long one (skip_) was
// counted when it began.
void SocketNetdevDriver::end_stream(const std::string &why) {
  if (in_have_) count(Ctr::DropTruncated);
  close_conn(why);
}

// The frame a short write began: counted in outFrames only once its last
// byte is written, so a tail that never goes is a drop.
void SocketNetdevDriver::drop_out_tail() {
  if (out_off_ < out_.size()) count(Ctr::DropLinkDown);
  out_.clear();
  out_off_ = 0;
}

// A write failed: the peer takes no more (closed, or shut its reading
// side). What it sent before is still in the socket and in in_, whole frames
// that may wait for tx room: those are its frames, delivered as if the
// write had not failed, up to its end of stream (end_stream closes then).
// Our end of the stream is shut, so a peer that still reads after all (a
// transient error) sees it end, as on a close, rather than a silent gap.
void SocketNetdevDriver::shut_send(int err) {
  count(Ctr::LinkErrors);
  drop_out_tail();
  ::shutdown(conn_.get(), SHUT_WR);
  send_shut_ = true;
  out_blocked_ = false;
  log_limited(shut_log_, std::string("write: ") + std::strerror(err) +
                             ": sending to the stream peer stopped; what it sent is still delivered, up to its end of stream, and "
                             "frames for it are dropped (dropLinkDown)");
}

int SocketNetdevDriver::idle_timeout_ms() {
  if (o_.mode == SocketNetdevOptions::Mode::Dgram && out_blocked_) {
    const int64_t left = retry_at_ns_ - mono_ns();
    return left <= 0 ? 0 : static_cast<int>((left + 999'999) / 1'000'000);
  }
  if (o_.mode == SocketNetdevOptions::Mode::StreamClient && !conn_) {
    const int64_t left = connect_at_ns_ - mono_ns();
    return left <= 0 ? 0 : static_cast<int>((left + 999'999) / 1'000'000);
  }
  return -1;
}

void SocketNetdevDriver::on_idle_timeout() { connect_if_due(); }

// The retry runs on the clock, not on the poll timing out: frames for the
// port (dropped while there is no peer) wake the thread as often as anyone
// sends them, and a wait that never times out would never reconnect.
void SocketNetdevDriver::connect_if_due() {
  if (!conn_ && o_.mode == SocketNetdevOptions::Mode::StreamClient && mono_ns() >= connect_at_ns_) try_connect();
}

void SocketNetdevDriver::link_wants(std::vector<Want> &w, bool room_in, bool pending_out) {
  if (listen_) w.push_back({listen_.get(), POLLIN});
  if (!conn_) return;
  // The peer's hangup is news only when it can be acted on: while the port's
  // tx ring is full the stream is not read (its end is found once there is
  // room), and POLLRDHUP, like POLLHUP (which poll reports for any fd in the
  // set), would end every wait at once: a thread spinning until room came.
  uint32_t ev = 0;
  if (room_in) ev |= POLLRDHUP | (readable_ ? 0 : POLLIN);
  // dgram: POLLOUT on an unconnected unix datagram socket says only that its
  // own send buffer has room, not that the peer's receive queue does (the
  // EAGAIN): it would end every wait at once. dgram_out retries on a timer.
  if (pending_out && o_.mode != SocketNetdevOptions::Mode::Dgram) ev |= POLLOUT;
  if (ev) w.push_back({conn_.get(), ev});
}

void SocketNetdevDriver::link_event(int fd, uint32_t events) {
  if (listen_ && fd == listen_.get()) {
    int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    if (conn_) {
      // one peer at a time: a second QEMU on the same port would interleave frames
      count(Ctr::RefusedConnections);  // before the close the peer sees
      ::close(c);
      log_limited(refused_log_, "refused a second connection on " + o_.path + " (one peer per port; counted in refusedConnections)");
      return;
    }
    conn_.reset(c);
    readable_ = true;
    count(Ctr::Connects);
    return;
  }
  if (conn_ && fd == conn_.get()) {
    if (events & (POLLIN | POLLHUP | POLLERR | POLLRDHUP)) readable_ = true;
    // (dgram: a retry waits for its time, dgram_out)
    if ((events & (POLLOUT | POLLHUP | POLLERR)) && o_.mode != SocketNetdevOptions::Mode::Dgram) out_blocked_ = false;
  }
}

uint32_t SocketNetdevDriver::link_in() {
  if (!conn_) return 0;
  return o_.mode == SocketNetdevOptions::Mode::Dgram ? dgram_in() : stream_in();
}

uint32_t SocketNetdevDriver::link_out() {
  connect_if_due();
  if (!conn_) return drop_rx();
  return o_.mode == SocketNetdevOptions::Mode::Dgram ? dgram_out() : stream_out();
}

// Frames for a peer that is not there: counted, not kept (a switch port
// without a client drops the same way).
uint32_t SocketNetdevDriver::drop_rx() {
  uint32_t n = 0;
  const uint8_t *b;
  uint32_t l;
  while (n < BATCH && rx_peek(b, l)) {
    count(Ctr::DropLinkDown);
    rx_pop();
    n++;
  }
  return n;
}

uint32_t SocketNetdevDriver::stream_in() {
  uint32_t moved = 0;
  const size_t bs = slot_fill();
  for (;;) {
    size_t pos = 0;
    bool stalled = false;  // a whole frame waits for tx room
    while (moved < BATCH) {
      if (skip_) {
        size_t k = std::min(skip_, in_have_ - pos);
        pos += k;
        skip_ -= k;
        if (skip_) break;
        continue;
      }
      if (in_have_ - pos < 4) break;
      const uint8_t *p = in_.data() + pos;
      const uint32_t flen = uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
      if (flen == 0 || flen > STREAM_MAX_FRAME) {
        count(Ctr::DropBadLength);
        close_conn("frame length " + std::to_string(flen) + " is out of range (1.." + std::to_string(STREAM_MAX_FRAME) +
                   "): the stream is out of step");
        return moved;
      }
      if (flen > bs) {
        count(Ctr::DropTooLong);
        pos += 4;
        skip_ = flen;
        moved++;  // a dropped frame is work done too: a flood of them ends the batch like any other
        continue;
      }
      if (in_have_ - pos - 4 < flen) break;
      if (tx_room() == 0) {
        stalled = true;
        break;
      }
      std::memcpy(tx_buf(), p + 4, flen);
      tx_push(flen);
      pos += 4 + size_t{flen};
      moved++;
    }
    if (pos) {
      std::memmove(in_.data(), in_.data() + pos, in_have_ - pos);
      in_have_ -= pos;
    }
    if (stalled || moved >= BATCH || !readable_) return moved;
    ssize_t r = ::read(conn_.get(), in_.data() + in_have_, in_.size() - in_have_);
    if (r == 0) {
      end_stream("end of stream");
      return moved;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        readable_ = false;
        return moved;
      }
      count(Ctr::LinkErrors);
      end_stream(std::string("read: ") + std::strerror(errno));
      return moved;
    }
    in_have_ += static_cast<size_t>(r);
  }
}

uint32_t SocketNetdevDriver::stream_out() {
  if (send_shut_) return drop_rx();
  uint32_t moved = 0;
  // first the tail of a frame a short write left
  if (out_off_ < out_.size()) {
    while (out_off_ < out_.size()) {
      ssize_t r = ::send(conn_.get(), out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          out_blocked_ = true;
          return 0;
        }
        shut_send(errno);
        return drop_rx();
      }
      out_off_ += static_cast<size_t>(r);
    }
    count(Ctr::OutFrames);
    count(Ctr::OutBytes, out_.size() - 4);
    out_.clear();
    out_off_ = 0;
  }
  const uint8_t *b;
  uint32_t l;
  while (moved < BATCH && !out_blocked_ && rx_peek(b, l)) {
    uint8_t lenbe[4] = {static_cast<uint8_t>(l >> 24), static_cast<uint8_t>(l >> 16), static_cast<uint8_t>(l >> 8), static_cast<uint8_t>(l)};
    iovec iov[2] = {{lenbe, 4}, {const_cast<uint8_t *>(b), l}};
    msghdr mh{};
    mh.msg_iov = iov;
    mh.msg_iovlen = 2;
    ssize_t r = ::sendmsg(conn_.get(), &mh, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        out_blocked_ = true;
        break;
      }
      const int e = errno;
      count(Ctr::DropLinkDown);
      rx_pop();
      shut_send(e);
      return moved + 1;
    }
    const size_t w = static_cast<size_t>(r), total = 4 + size_t{l};
    if (w < total) {
      // keep the rest (the stream must stay in step), then wait for room;
      // the frame is counted once its tail is written
      out_.assign(lenbe, lenbe + 4);
      out_.insert(out_.end(), b, b + l);
      out_off_ = w;
      out_blocked_ = true;
    } else {
      count(Ctr::OutFrames);
      count(Ctr::OutBytes, l);
    }
    rx_pop();
    moved++;
  }
  return moved;
}

// Whether a datagram came from the socket bound at the configured peer path.
// Anyone who may write to our socket file can send to it; only QEMU's own
// socket speaks for the VM.
//
// A sender's name is the string it gave bind(), resolved then, in its cwd
// and mount namespace. The canonical peer path and the configured spelling
// are taken as they are: a path is bound by one socket at a time, QEMU's.
// Any other absolute name may be QEMU's spelled otherwise, and is resolved
// (realpath of its directory) - but what it resolves to now proves nothing
// about the sender: whoever owns a directory in it can have bound a socket
// there, then renamed the directory and put a symlink to QEMU's in its place.
// So the sender must also run as the user that owns the socket file at the
// peer path (its uid from SCM_CREDENTIALS, the kernel's word, not the
// sender's): another user can make its name resolve to the peer path but
// cannot send as that user, and that user could bind the path itself. The
// uid is checked first, so another user's names (which could lie on a FUSE
// mount that never answers) are never resolved. The peer path is resolved
// again with each lookup (its directory may have been pointed elsewhere).
//
// One name and uid is cached, with its verdict; a miss is counted
// (peerPathLookups). A "yes" holds for that name and uid (its user could
// bind the peer path itself). A "no" holds while the file at the peer path
// is the one that was there (device, inode, ctime: one lstat, no resolving):
// a sender seen before QEMU bound it, or while a stale socket or another
// user's was there, is looked up again once QEMU's is, and a flood from one
// foreign sender costs one lookup, not one per datagram. A relative name was
// resolved against the sender's cwd, unknown here: never matched.
bool SocketNetdevDriver::from_peer(const sockaddr_un &from, socklen_t len, const ucred *cred) {
  constexpr size_t path_at = offsetof(sockaddr_un, sun_path);
  if (len <= path_at) return false;  // an unbound sender
  const size_t n = std::min(static_cast<size_t>(len) - path_at, sizeof from.sun_path);
  // abstract (leading NUL): a name, not a path, compared byte for byte
  if (from.sun_path[0] == '\0') return n == o_.peer.size() && std::memcmp(from.sun_path, o_.peer.data(), n) == 0;
  const std::string_view name(from.sun_path, strnlen(from.sun_path, n));
  if (name == peer_canon_ || name == o_.peer) return true;
  if (name[0] != '/' || !cred || o_.peer[0] != '/') return false;
  const bool seen = name == sender_seen_.name && cred->uid == sender_seen_.uid;
  if (seen && sender_seen_.ok) return true;
  struct stat st {};
  const bool present = ::lstat(o_.peer.c_str(), &st) == 0;
  const PeerFile now = present ? PeerFile{true, st.st_dev, st.st_ino, st.st_ctim} : PeerFile{};
  if (seen && now == sender_seen_.peer) return false;
  count(Ctr::PeerPathLookups);
  sender_seen_ = {std::string(name), cred->uid, now, false};
  if (!present || !S_ISSOCK(st.st_mode) || st.st_uid != cred->uid) return false;
  auto pc = canonical_path(o_.peer);
  if (!pc) return false;
  peer_canon_ = std::move(*pc);
  auto c = canonical_path(sender_seen_.name);
  sender_seen_.ok = c && *c == peer_canon_;
  return sender_seen_.ok;
}

// Each foreign sender may be news (a QEMU given another local.path, an
// intruder): the first is logged at once, later ones at most once a second.
void SocketNetdevDriver::log_foreign(const sockaddr_un &from, socklen_t len) {
  const size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
  const std::string who(from.sun_path, strnlen(from.sun_path, std::min(n, sizeof from.sun_path)));
  const char *nameless = n > 0 ? "an abstract-namespace socket" : "an unbound socket";
  log_limited(foreign_log_, "dropped a datagram from " + (who.empty() ? std::string(nameless) : "'" + who + "'") + ", not the peer " +
                                peer_canon_ +
                                (!who.empty() && who[0] != '/' ? " (a relative name cannot be matched: give QEMU an absolute local.path)" : "") +
                                " (counted in dropForeignSender)");
}

uint32_t SocketNetdevDriver::dgram_in() {
  uint32_t moved = 0;
  const size_t bs = slot_fill();
  while (moved < BATCH && readable_ && tx_room() > 0) {
    uint8_t *slot = tx_buf();
    sockaddr_un from{};
    // room for the sender's credentials only: descriptors a sender attaches
    // (SCM_RIGHTS) find none and are closed by the kernel
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(ucred))];
    iovec iov{slot, bs};
    msghdr mh{};
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    // MSG_TRUNC: the datagram's real length, so a too-long one is counted, not cut
    ssize_t r = ::recvmsg(conn_.get(), &mh, MSG_TRUNC | MSG_CMSG_CLOEXEC);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) count(Ctr::LinkErrors);
      readable_ = false;
      break;
    }
    moved++;
    const socklen_t from_len = mh.msg_namelen;
    const ucred *cred = nullptr;
    ucred cr{};
    for (cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
      if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS && cm->cmsg_len >= CMSG_LEN(sizeof cr)) {
        std::memcpy(&cr, CMSG_DATA(cm), sizeof cr);
        cred = &cr;
      }
    if (!from_peer(from, from_len, cred)) {
      count(Ctr::DropForeignSender);
      log_foreign(from, from_len);
    } else if (static_cast<size_t>(r) > bs) count(Ctr::DropTooLong);
    else if (r == 0) count(Ctr::DropBadLength);
    else tx_push(static_cast<uint32_t>(r));
  }
  return moved;
}

// EAGAIN from sendto: the peer's receive queue holds net.unix.max_dgram_qlen
// datagrams already (QEMU reads no more while its guest takes none). Nothing
// says when it drains (the kernel's wakeup for that goes to connected senders
// only), so the frames wait in the rx ring and are tried again after 1 ms,
// then 2, 4 ... 16 ms while the queue stays full.
uint32_t SocketNetdevDriver::dgram_out() {
  if (out_blocked_) {
    if (mono_ns() < retry_at_ns_) return 0;
    out_blocked_ = false;
  }
  const uint32_t moved = send_rx_frames(
      BATCH,
      [this](const uint8_t *b, uint32_t l) {
        return ::sendto(conn_.get(), b, l, MSG_NOSIGNAL, reinterpret_cast<const sockaddr *>(&peer_), peer_len_);
      },
      [](int) {});  // ENOENT/ECONNREFUSED: QEMU is not (yet) bound on its side
  if (out_blocked_) {
    retry_ns_ = retry_ns_ == 0 ? RETRY_MIN_NS : std::min(2 * retry_ns_, RETRY_MAX_NS);
    retry_at_ns_ = mono_ns() + retry_ns_;
  } else if (moved) {
    retry_ns_ = 0;
  }
  return moved;
}

}  // namespace nm
