// A vale-ts port that QEMU reaches through one of its socket netdevs, over a
// unix socket, with no root and no TAP:
//
//   -netdev stream,id=n0,server=off,addr.type=unix,addr.path=PATH
//       vale-ts listens on PATH (StreamServer); with QEMU's server=on,
//       vale-ts connects (StreamClient) and reconnects every second while
//       the socket is not there. Framing (QEMU 7.2+): each frame is preceded
//       by its length, 4 bytes big-endian.
//   -netdev dgram,id=n0,local.type=unix,local.path=QEMU,remote.type=unix,remote.path=PATH
//       vale-ts binds PATH and sends to QEMU's path; one frame per datagram.
//       Datagrams from any other sender (bound elsewhere, or not at all) are
//       dropped and counted (dropForeignSender): the socket file's mode is
//       all that stands between other local processes and PATH. Frames are
//       sent to QEMU's path as configured (resolved by the kernel at each
//       send, as QEMU's remote.path is); senders are matched on its
//       canonical form (from_peer), so QEMU may spell it otherwise (a
//       symlinked directory, a doubled slash), not relatively.
//
// The peer's lengths are its word: a frame longer than the port's buffer is
// skipped and counted (dropTooLong; the stream stays in step), a length of 0
// or beyond anything QEMU can send means the stream is out of step: counted
// (dropBadLength), logged, and the connection closed. A frame the stream
// ends inside of is counted (dropTruncated). A failed write (the peer reads
// no more) ends only the sending side: the frames the peer sent, read or
// still queued, are delivered up to its end of stream, and frames for it
// are dropped (dropLinkDown) meanwhile.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "core/port_pump.h"

namespace nm {

struct SocketNetdevOptions {
  enum class Mode { StreamServer, StreamClient, Dgram } mode = Mode::StreamServer;
  std::string path;  // the socket vale-ts listens on / connects to / binds
  std::string peer;  // dgram only: QEMU's local path, where frames are sent
};

// The longest frame QEMU's socket netdevs send (its NET_BUFSIZE): a larger
// length prefix is a stream out of step.
constexpr uint32_t STREAM_MAX_FRAME = 4096 + 65536;

class SocketNetdevDriver final : public PortPump {
 public:
  static Result<std::unique_ptr<SocketNetdevDriver>> open(PortClient pc, const SocketNetdevOptions &o, std::string label);
  ~SocketNetdevDriver() override;
  bool connected() const { return static_cast<bool>(conn_); }

 private:
  SocketNetdevDriver(PortClient pc, std::string label) : PortPump(std::move(pc), std::move(label)) {}
  void link_wants(std::vector<Want> &w, bool room_in, bool pending_out) override;
  void link_event(int fd, uint32_t events) override;
  uint32_t link_in() override;
  uint32_t link_out() override;
  // read until EAGAIN before link_wants asks for POLLIN again (in-line: the
  // switch must not sleep on a socket a look found readable)
  bool link_in_ready() const override { return conn_ && readable_; }
  int idle_timeout_ms() override;
  void on_idle_timeout() override;

  void try_connect();
  void connect_if_due();
  void close_conn(const std::string &why);
  void end_stream(const std::string &why);
  void shut_send(int err);
  void drop_out_tail();
  uint32_t stream_in();
  uint32_t dgram_in();
  uint32_t stream_out();
  uint32_t dgram_out();
  uint32_t drop_rx();
  bool from_peer(const sockaddr_un &from, socklen_t len, const ucred *cred);
  void log_foreign(const sockaddr_un &from, socklen_t len);

  SocketNetdevOptions o_;
  unique_fd listen_, conn_;  // conn_: the stream, or the dgram socket
  bool readable_ = false;
  bool unlink_on_close_ = false;
  LogLimit refused_log_, disconnect_log_;  // a peer can connect and close in a loop
  LogLimit foreign_log_;                   // dgram: anyone who may write to PATH can send
  sockaddr_un peer_{};
  socklen_t peer_len_ = sizeof(sockaddr_un);
  // dgram: the peer path as realpath(its directory) + its name (as of the
  // last lookup), and the one sender name (with its uid) last resolved
  // against it, the verdict, and the file at the peer path then: a "no"
  // holds while that file is the same (from_peer)
  std::string peer_canon_;
  struct PeerFile {
    bool present = false;
    dev_t dev = 0;
    ino_t ino = 0;
    timespec ctime{};
    bool operator==(const PeerFile &o) const {
      return present == o.present && dev == o.dev && ino == o.ino && ctime.tv_sec == o.ctime.tv_sec && ctime.tv_nsec == o.ctime.tv_nsec;
    }
  };
  struct {
    std::string name;
    uid_t uid = 0;
    PeerFile peer;
    bool ok = false;
  } sender_seen_;
  // stream reassembly
  std::vector<uint8_t> in_;
  size_t in_have_ = 0;
  size_t skip_ = 0;  // bytes of a too-long frame still to pass over
  // the unsent tail of a frame a short write left
  std::vector<uint8_t> out_;
  size_t out_off_ = 0;
  // stream: a write failed (the peer reads no more): frames for it are
  // dropped while what it sent is still read, up to its end (shut_send)
  bool send_shut_ = false;
  LogLimit shut_log_;  // once per connection, but connections come in a loop
  // dgram: when to send again after the peer's receive queue was full
  int64_t retry_at_ns_ = 0;
  int64_t retry_ns_ = 0;
  // stream client: when to try to connect again
  int64_t connect_at_ns_ = 0;
};

}  // namespace nm
