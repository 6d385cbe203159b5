#include "preload/vale_control.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/recv_fds.h"
#include "preload/sys.h"

namespace nmpre {

namespace {
constexpr int PROTOCOL_VERSION = 1;
constexpr size_t MAX_MESSAGE = 65536;
// longer than the Node client's 5 s: a C program has no event loop to keep
// alive meanwhile, and a busy machine can hold a switch's reply that long
constexpr int REPLY_TIMEOUT_MS = 30000;
constexpr int MAX_FDS = 8;
}  // namespace

std::string vale_socket_path() {
  const char *env = std::getenv("VALE_TS_SOCKET");
  if (env && *env) return env;
  if (getuid() == 0) return "/run/vale-ts/vale-ts.sock";
  const char *xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg) return std::string(xdg) + "/vale-ts.sock";
  return "/tmp/vale-ts-" + std::to_string(getuid()) + "/vale-ts.sock";  // privateSocketDir
}

int errno_from_name(const std::string &n) {
  static const struct {
    const char *name;
    int value;
  } table[] = {{"EPERM", EPERM},   {"ENOENT", ENOENT},     {"EIO", EIO},          {"ENXIO", ENXIO},
               {"EBADF", EBADF},   {"EAGAIN", EAGAIN},     {"ENOMEM", ENOMEM},    {"EACCES", EACCES},
               {"EBUSY", EBUSY},   {"EEXIST", EEXIST},     {"ENODEV", ENODEV},    {"EINVAL", EINVAL},
               {"ENFILE", ENFILE}, {"EMFILE", EMFILE},     {"ENOSPC", ENOSPC},    {"ERANGE", ERANGE},
               {"EPROTO", EPROTO}, {"EOPNOTSUPP", EOPNOTSUPP}, {"ENOTSUP", ENOTSUP}, {"ENAMETOOLONG", ENAMETOOLONG},
               {"ECONNREFUSED", ECONNREFUSED}, {"ETIMEDOUT", ETIMEDOUT}, {"E2BIG", E2BIG}, {"EFBIG", EFBIG}};
  for (const auto &t : table)
    if (n == t.name) return t.value;
  return EIO;
}

int vale_connect(ControlError *e) {
  const std::string path = vale_socket_path();
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa.sun_path)) {
    *e = {ENAMETOOLONG, "vale-ts socket path " + path + " is longer than 107 bytes: set VALE_TS_SOCKET to a shorter one"};
    return -1;
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *e = {errno, std::string("socket: ") + std::strerror(errno)};
    return -1;
  }
  if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) < 0) {
    const int err = errno;
    sys::close(fd);
    if (err == ENOENT || err == ECONNREFUSED)
      *e = {ENXIO, "vale-ts is not running at " + path + " (" + std::strerror(err) +
                       "): start it with `vale-ts`, or point VALE_TS_SOCKET at the one that runs"};
    else
      *e = {err, "cannot connect to vale-ts at " + path + ": " + std::strerror(err)};
    return -1;
  }
  return fd;
}

bool vale_request(int fd, const std::string &request, JVal *reply, std::vector<int> *fds, ControlError *e) {
  // every request is an object: splice the version in front of its fields
  std::string msg = "{\"v\":" + std::to_string(PROTOCOL_VERSION) + "," + request.substr(1);
  if (request.size() < 2 || request[0] != '{' || msg.size() > MAX_MESSAGE) {
    *e = {EINVAL, "internal: malformed control request"};
    return false;
  }
  if (send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) < 0) {
    *e = {errno, std::string("send to vale-ts: ") + std::strerror(errno)};
    return false;
  }
  pollfd p{fd, POLLIN, 0};
  timespec ts{REPLY_TIMEOUT_MS / 1000, 0};
  int r;
  do r = sys::ppoll(&p, 1, &ts, nullptr);
  while (r < 0 && errno == EINTR);
  if (r <= 0) {
    *e = {ETIMEDOUT, "vale-ts did not answer within " + std::to_string(REPLY_TIMEOUT_MS / 1000) + " s"};
    return false;
  }
  std::string buf(MAX_MESSAGE + 1, '\0');
  std::vector<nm::unique_fd> got;
  int msg_flags = 0;
  const ssize_t n = nm::recv_with_fds<MAX_FDS>(fd, buf.data(), buf.size(), got, msg_flags);
  const int err = errno;
  // the fds are ours to close whatever the reply says
  for (nm::unique_fd &f : got) fds->push_back(f.release());
  if (n < 0) {
    *e = {err, std::string("recvmsg from vale-ts: ") + std::strerror(err)};
    return false;
  }
  if (n == 0) {
    *e = {EIO, "vale-ts closed the connection"};
    return false;
  }
  if ((msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || static_cast<size_t>(n) > MAX_MESSAGE) {
    *e = {EPROTO, "vale-ts sent a truncated reply"};
    return false;
  }
  buf.resize(static_cast<size_t>(n));
  const std::string perr = json_parse(buf, reply);
  if (!perr.empty() || reply->type != JVal::OBJ) {
    *e = {EPROTO, "vale-ts sent a malformed reply: " + (perr.empty() ? "not an object" : perr)};
    return false;
  }
  uint64_t v = 0;
  if (!reply->get_u64("v", PROTOCOL_VERSION, PROTOCOL_VERSION, &v)) {
    *e = {EPROTO, "vale-ts speaks another protocol version: use matching @x/netmap versions"};
    return false;
  }
  const std::string *op = reply->get_str("op");
  if (op && *op == "bye") {
    *e = {ENXIO, "vale-ts is shutting down"};
    return false;
  }
  if (!reply->get_bool("ok", false)) {
    const std::string *code = reply->get_str("code");
    const std::string *text = reply->get_str("error");
    *e = {code ? errno_from_name(*code) : EIO, text ? *text : "vale-ts refused the request"};
    return false;
  }
  return true;
}

bool vale_request_once(const std::string &request, JVal *reply, ControlError *e) {
  const int fd = vale_connect(e);
  if (fd < 0) return false;
  std::vector<int> fds;
  const bool ok = vale_request(fd, request, reply, &fds, e);
  for (int f : fds) sys::close(f);
  sys::close(fd);
  return ok;
}

}  // namespace nmpre
