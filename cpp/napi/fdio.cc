// File-descriptor plumbing the JS side cannot do itself: eventfd doorbells,
// memfd regions and their mappings, unix sockets that carry fds
// (SCM_RIGHTS), and an fd watcher on libuv's loop so nothing ever blocks the
// event loop.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <optional>
#include <cstdio>
#include <unordered_map>
#include <vector>

#include "core/recv_fds.h"
#include "core/region.h"
#include "napi/napi_util.h"

namespace nm {

namespace {

// A mapping exposed to JS. It is released either explicitly (unmap(), when a
// port is removed: deterministic, not left to the GC) or by the ArrayBuffer's
// finalizer, whichever comes first; the other then finds base == nullptr.
struct Mapping {
  void *base;
  size_t size;
};

// base address -> live mapping, so unmap(ab) can find what to release
std::unordered_map<void *, Mapping *> &live_mappings() {
  static std::unordered_map<void *, Mapping *> m;
  return m;
}

void release_mapping(napi_env env, Mapping *m) {
  if (!m->base) return;
  live_mappings().erase(m->base);
  munmap(m->base, m->size);
  int64_t adjusted = 0;
  napi_adjust_external_memory(env, -static_cast<int64_t>(m->size), &adjusted);
  m->base = nullptr;
}

void finalize_mapping(napi_env env, void * /*data*/, void *hint) {
  auto *m = static_cast<Mapping *>(hint);
  release_mapping(env, m);
  delete m;
}

}  // namespace

Napi::ArrayBuffer mapping_to_arraybuffer(Napi::Env env, void *base, size_t size) {
  auto *m = new Mapping{base, size};
  napi_value ab;
  napi_status st = napi_create_external_arraybuffer(env, base, size, finalize_mapping, m, &ab);
  if (st != napi_ok) {
    munmap(base, size);
    delete m;
    throw Napi::Error::New(env, "cannot expose the mapping as an ArrayBuffer");
  }
  live_mappings()[base] = m;
  int64_t adjusted = 0;
  napi_adjust_external_memory(env, static_cast<int64_t>(size), &adjusted);
  return Napi::ArrayBuffer(env, ab);
}

namespace {

Napi::Value EventFd(const Napi::CallbackInfo &info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw errno_error(info.Env(), "eventfd", errno, "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

// Rings a doorbell: an eventfd (8-byte counter) or a FIFO (any bytes).
Napi::Value Kick(const Napi::CallbackInfo &info) {
  int fd = arg_fd(info, 0);
  uint64_t one = 1;
  ssize_t r = write(fd, &one, sizeof one);
  // EAGAIN: the counter/FIFO is already full of kicks, so the peer will wake.
  if (r < 0 && errno != EAGAIN) throw errno_error(info.Env(), "kick fd " + std::to_string(fd), errno, "write");
  return info.Env().Undefined();
}

Napi::Value Drain(const Napi::CallbackInfo &info) {
  int fd = arg_fd(info, 0);
  uint8_t buf[512];
  uint32_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r > 0) {
      n++;
      // a short read emptied it (an eventfd's counter is read whole): no
      // second read just to see EAGAIN; a kick that lands now leaves the fd
      // readable and the next wait returns at once
      if (static_cast<size_t>(r) < sizeof buf) break;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    break;
  }
  return Napi::Number::New(info.Env(), n);
}

// Blocks the calling thread in poll(2) on one fd, for threads that own their
// loop (a pkt-gen-ts thread, a worker): the kick wakes this thread directly,
// with no event-loop turn between. waitFd(fd, events, timeoutMs): events 1
// readable, 2 writable; returns what fired (1, 2, 4 hang-up/error), 0 on
// timeout or a signal.
Napi::Value WaitFd(const Napi::CallbackInfo &info) {
  int fd = arg_fd(info, 0);
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber()) throw Napi::TypeError::New(info.Env(), "waitFd(fd, events, timeoutMs)");
  uint32_t events = info[1].As<Napi::Number>().Uint32Value();
  double ms = info[2].As<Napi::Number>().DoubleValue();
  int timeout = ms < 0 ? -1 : ms > 60000 ? 60000 : static_cast<int>(ms);
  pollfd p{fd, static_cast<short>(((events & 1) ? POLLIN : 0) | ((events & 2) ? POLLOUT : 0)), 0};
  int r = ::poll(&p, 1, timeout);
  if (r < 0 && errno != EINTR) throw errno_error(info.Env(), "poll fd " + std::to_string(fd), errno, "poll");
  uint32_t out = 0;
  if (r > 0) out = ((p.revents & POLLIN) ? 1u : 0u) | ((p.revents & POLLOUT) ? 2u : 0u) | ((p.revents & (POLLHUP | POLLERR | POLLNVAL)) ? 4u : 0u);
  return Napi::Number::New(info.Env(), out);
}

Napi::Value Close(const Napi::CallbackInfo &info) {
  int fd = arg_fd(info, 0);
  if (close(fd) < 0 && errno != EINTR) throw errno_error(info.Env(), "close fd " + std::to_string(fd), errno, "close");
  return info.Env().Undefined();
}

// unmap(ab): releases a mapping made by mapFd/createRegion/a switch port now,
// instead of when the GC finds the ArrayBuffer unreachable. The buffer is
// detached first, so every view over it reads as empty: no JS access can
// reach the unmapped pages. Returns false if it was released already.
Napi::Value Unmap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "unmap(ArrayBuffer)");
  auto ab = info[0].As<Napi::ArrayBuffer>();
  void *base = ab.Data();
  auto it = base ? live_mappings().find(base) : live_mappings().end();
  if (it == live_mappings().end()) return Napi::Boolean::New(env, false);
  Mapping *m = it->second;
  if (m->size != ab.ByteLength()) throw Napi::Error::New(env, "unmap: not the ArrayBuffer of this mapping");
  if (napi_detach_arraybuffer(env, ab) != napi_ok) throw Napi::Error::New(env, "unmap: cannot detach the ArrayBuffer");
  release_mapping(env, m);
  return Napi::Boolean::New(env, true);
}

// liveMappings(): {count, bytes} of mappings not yet released (leak checks)
Napi::Value LiveMappings(const Napi::CallbackInfo &info) {
  double bytes = 0;
  for (auto &kv : live_mappings()) bytes += static_cast<double>(kv.second->size);
  auto o = Napi::Object::New(info.Env());
  o.Set("count", static_cast<double>(live_mappings().size()));
  o.Set("bytes", bytes);
  return o;
}

// createRegionFdAsync(params, name) -> Promise<number>: a sealed memfd holding
// a fresh region, written on a worker thread. A region's first touch (the
// extra-buffer list alone links up to 2^20 buffers) costs up to seconds; the
// event loop that forwards frames must not pay it. The worker's mapping is
// dropped; the caller maps the fd itself (pages stay in the memfd).
class RegionWorker : public Napi::AsyncWorker {
 public:
  RegionWorker(Napi::Env env, const Layout &l, std::string name)
      : Napi::AsyncWorker(env, "createRegionFd"), deferred_(Napi::Promise::Deferred::New(env)), l_(l),
        name_(std::move(name)) {}
  ~RegionWorker() override {
    if (fd_ >= 0) close(fd_);  // never handed out (the env went away)
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    std::string names[MAX_IFS] = {name_, ""};
    Result<MemfdRegion> r = create_memfd_region(("vale-ts:" + name_).c_str(), l_, names);
    if (!r) {
      err_ = std::move(r).take_error();
      return;
    }
    fd_ = std::move(r).value().fd.release();  // the mapping is dropped here; the pages stay in the memfd
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      deferred_.Reject(sys_error(env, *err_).Value());
      return;
    }
    int fd = fd_;
    fd_ = -1;
    deferred_.Resolve(Napi::Number::New(env, fd));
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Layout l_;
  std::string name_;
  int fd_ = -1;
  std::optional<SysError> err_;
};

Napi::Value CreateRegionFdAsync(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsString()) throw Napi::TypeError::New(env, "createRegionFdAsync(params, name)");
  LayoutParams p = params_from(info[0].As<Napi::Object>());
  p.n_ifs = 1;
  const Layout l = unwrap(env, compute_layout(p));
  auto *w = new RegionWorker(env, l, info[1].As<Napi::String>());
  Napi::Promise pr = w->Promise();
  w->Queue();
  return pr;
}

Napi::Value FdSize(const Napi::CallbackInfo &info) {
  struct stat st;
  if (fstat(arg_fd(info, 0), &st) < 0) throw errno_error(info.Env(), "fstat", errno, "fstat");
  return Napi::Number::New(info.Env(), static_cast<double>(st.st_size));
}

// mapFd(fd, size): the whole region, shared. The caller checked size against
// fstat; mapping more than the file would fault on access, so check again.
Napi::Value MapFd(const Napi::CallbackInfo &info) {
  int fd = arg_fd(info, 0);
  double dsize = info[1].As<Napi::Number>().DoubleValue();
  if (!(dsize > 0 && dsize < 1e12)) throw Napi::RangeError::New(info.Env(), "map size out of range");
  size_t size = static_cast<size_t>(dsize);
  struct stat st;
  if (fstat(fd, &st) < 0) throw errno_error(info.Env(), "fstat", errno, "fstat");
  if (static_cast<uint64_t>(st.st_size) < size)
    throw coded_error(info.Env(), "region fd is smaller than the size to map", EINVAL);
  void *base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) throw errno_error(info.Env(), "mmap", errno, "mmap");
  return mapping_to_arraybuffer(info.Env(), base, size);
}

// ---- unix sockets ---------------------------------------------------------

bool fill_sockaddr(const std::string &path, sockaddr_un *sa, socklen_t *len) {
  if (path.size() >= sizeof(sa->sun_path)) return false;
  std::memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  std::memcpy(sa->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

Napi::Value UnixListen(const Napi::CallbackInfo &info) {
  std::string path = info[0].As<Napi::String>();
  sockaddr_un sa;
  socklen_t len;
  if (!fill_sockaddr(path, &sa, &len))
    throw coded_error(info.Env(), "socket path too long (max 107 bytes): " + path, ENAMETOOLONG);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errno_error(info.Env(), "socket", errno, "socket");
  if (bind(fd, reinterpret_cast<sockaddr *>(&sa), len) < 0 || listen(fd, 128) < 0) {
    int e = errno;
    close(fd);
    throw errno_error(info.Env(), "bind/listen " + path, e, "bind");
  }
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value UnixConnect(const Napi::CallbackInfo &info) {
  std::string path = info[0].As<Napi::String>();
  sockaddr_un sa;
  socklen_t len;
  if (!fill_sockaddr(path, &sa, &len))
    throw coded_error(info.Env(), "socket path too long (max 107 bytes): " + path, ENAMETOOLONG);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errno_error(info.Env(), "socket", errno, "socket");
  // a unix connect completes at once or fails; block for it, then go non-blocking
  if (connect(fd, reinterpret_cast<sockaddr *>(&sa), len) < 0) {
    int e = errno;
    close(fd);
    throw errno_error(info.Env(), "connect " + path, e, "connect");
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return Napi::Number::New(info.Env(), fd);
}

// A descriptor held in reserve for the moment the process runs out: at
// EMFILE/ENFILE it is closed, the pending connection accepted (told why, if
// the caller gave a refusal message) and closed, and the reserve taken back.
// Without it a level-triggered listener would spin on a connection it can
// never accept (the trick libuv, nginx and others use).
int g_reserve_fd = -1;
uint64_t g_accept_shed = 0;

void take_reserve() {
  if (g_reserve_fd < 0) g_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

// accept(fd, refusal?): the new fd; -1 when nothing is pending; -2 when the
// process is out of descriptors (the pending connection, if any, was sent
// `refusal` and closed: the caller should back off and log).
Napi::Value Accept(const Napi::CallbackInfo &info) {
  const int lfd = arg_fd(info, 0);
  take_reserve();
  int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) return Napi::Number::New(info.Env(), fd);
  if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return Napi::Number::New(info.Env(), -1);
  if (errno != EMFILE && errno != ENFILE) throw errno_error(info.Env(), "accept", errno, "accept4");
  if (g_reserve_fd >= 0) {
    close(g_reserve_fd);
    g_reserve_fd = -1;
    int victim = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (victim >= 0) {
      if (info.Length() > 1 && info[1].IsTypedArray()) {
        auto msg = info[1].As<Napi::Uint8Array>();
        ssize_t w = send(victim, msg.Data(), msg.ByteLength(), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;  // best effort: the peer learns why, or just sees EOF
      }
      close(victim);
      g_accept_shed++;
    }
    take_reserve();
  }
  return Napi::Number::New(info.Env(), -2);
}

// acceptShed(): connections accepted-and-closed for lack of descriptors
Napi::Value AcceptShed(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), static_cast<double>(g_accept_shed));
}

constexpr size_t MAX_FDS = 8;

// sendMsg(fd, data: Uint8Array, fds: number[]): true, or false on EAGAIN.
Napi::Value SendMsg(const Napi::CallbackInfo &info) {
  int fd = arg_fd(info, 0);
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "sendMsg data must be a Uint8Array");
  auto data = info[1].As<Napi::Uint8Array>();
  std::vector<int> fds;
  if (info.Length() > 2 && info[2].IsArray()) {
    auto arr = info[2].As<Napi::Array>();
    if (arr.Length() > MAX_FDS) throw Napi::RangeError::New(info.Env(), "too many fds in one message");
    for (uint32_t i = 0; i < arr.Length(); i++) fds.push_back(arr.Get(i).As<Napi::Number>().Int32Value());
  }
  iovec iov{data.Data(), data.ByteLength()};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    std::memset(ctrl, 0, sizeof ctrl);
    msg.msg_control = ctrl;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t r = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (r >= 0) return Napi::Boolean::New(info.Env(), true);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return Napi::Boolean::New(info.Env(), false);
    throw errno_error(info.Env(), "sendmsg", errno, "sendmsg");
  }
}

// recvMsg(fd, maxLen): {data, fds} | null (nothing now) | {eof:true}
Napi::Value RecvMsg(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = arg_fd(info, 0);
  uint32_t max = arg_u32(info, 1, "maxLen");
  if (max == 0 || max > (1u << 20)) throw Napi::RangeError::New(env, "maxLen out of range");
  std::vector<uint8_t> buf(max);
  std::vector<unique_fd> got;
  int flags = 0;
  ssize_t r = recv_with_fds<MAX_FDS>(fd, buf.data(), buf.size(), got, flags);
  if (r < 0) {
    if (errno == EAGAIN) return env.Null();
    if (errno == ECONNRESET) {
      auto o = Napi::Object::New(env);
      o.Set("eof", true);
      return o;
    }
    throw errno_error(env, "recvmsg", errno, "recvmsg");
  }
  auto o = Napi::Object::New(env);
  auto fds = Napi::Array::New(env);
  uint32_t nfd = 0;
  for (unique_fd &f : got) fds.Set(nfd++, Napi::Number::New(env, f.release()));  // JS owns them now
  if (r == 0 && nfd == 0) {
    o.Set("eof", true);
    return o;
  }
  o.Set("data", Napi::Buffer<uint8_t>::Copy(env, buf.data(), static_cast<size_t>(r)));
  o.Set("fds", fds);
  // two different faults, reported apart: a body too long, or more fds than
  // MAX_FDS (the kernel closed the ones that did not fit)
  o.Set("truncated", Napi::Boolean::New(env, (flags & MSG_TRUNC) != 0));
  o.Set("fdsTruncated", Napi::Boolean::New(env, (flags & MSG_CTRUNC) != 0));
  return o;
}

Napi::Value PeerCred(const Napi::CallbackInfo &info) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(arg_fd(info, 0), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
    throw errno_error(info.Env(), "SO_PEERCRED", errno, "getsockopt");
  auto o = Napi::Object::New(info.Env());
  o.Set("pid", cred.pid);
  o.Set("uid", cred.uid);
  o.Set("gid", cred.gid);
  return o;
}

// ---- FdWatcher: uv_poll on the Node loop ---------------------------------

// Exceptions thrown by watcher callbacks. One escaping into libuv would
// terminate the process (every port of every switch with it); instead each is
// counted and logged, at most one line per LOG_EVERY, and the loop goes on.
uint64_t g_callback_errors = 0;
uint64_t g_callback_errors_logged = 0;
std::chrono::steady_clock::time_point g_last_log{};
constexpr auto LOG_EVERY = std::chrono::seconds(10);

void report_callback_error(int fd, const char *what) {
  g_callback_errors++;
  auto now = std::chrono::steady_clock::now();
  if (g_callback_errors_logged != 0 && now - g_last_log < LOG_EVERY) return;
  uint64_t suppressed = g_callback_errors - g_callback_errors_logged - 1;
  g_callback_errors_logged = g_callback_errors;
  g_last_log = now;
  std::fprintf(stderr, "netmap: an fd watcher callback (fd %d) threw: %s; kept running (%llu errors in all, %llu not logged)\n",
               fd, what, static_cast<unsigned long long>(g_callback_errors), static_cast<unsigned long long>(suppressed));
}

Napi::Value CallbackErrors(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), static_cast<double>(g_callback_errors));
}


class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {InstanceMethod("start", &FdWatcher::Start), InstanceMethod("stop", &FdWatcher::Stop),
                        InstanceMethod("unref", &FdWatcher::Unref_), InstanceMethod("close", &FdWatcher::Close)});
  }

  FdWatcher(const Napi::CallbackInfo &info) : Napi::ObjectWrap<FdWatcher>(info) {
    fd_ = arg_fd(info, 0);
    if (!info[1].IsFunction()) throw Napi::TypeError::New(info.Env(), "FdWatcher(fd, callback)");
    cb_ = Napi::Persistent(info[1].As<Napi::Function>());
    ctx_ = std::make_unique<Napi::AsyncContext>(info.Env(), "FdWatcher");
    uv_loop_t *loop = nullptr;
    napi_get_uv_event_loop(info.Env(), &loop);
    handle_ = new uv_poll_t;
    if (uv_poll_init(loop, handle_, fd_) != 0) {
      delete handle_;
      handle_ = nullptr;
      throw coded_error(info.Env(), "uv_poll_init failed for fd " + std::to_string(fd_), EBADF);
    }
    handle_->data = this;
    env_ = info.Env();
    // close the handle while the loop still runs when Node tears the
    // environment down with the watcher alive (a port never closed)
    napi_add_env_cleanup_hook(env_, EnvCleanup, this);
  }

  ~FdWatcher() override {
    if (hook_) napi_remove_env_cleanup_hook(env_, EnvCleanup, this);
    CloseHandle();
  }

 private:
  // start(events): 1 = readable, 2 = writable; keeps the loop alive while on
  Napi::Value Start(const Napi::CallbackInfo &info) {
    if (!handle_) throw Napi::Error::New(info.Env(), "FdWatcher is closed");
    uint32_t ev = arg_u32(info, 0, "events");
    int uvev = ((ev & 1) ? UV_READABLE : 0) | ((ev & 2) ? UV_WRITABLE : 0) | UV_DISCONNECT;
    if (!active_) Ref();
    active_ = true;
    uv_poll_start(handle_, uvev, OnPoll);
    return info.Env().Undefined();
  }

  // a watcher that must not keep the process alive (e.g. a hang-up watch)
  Napi::Value Unref_(const Napi::CallbackInfo &info) {
    if (handle_) uv_unref(reinterpret_cast<uv_handle_t *>(handle_));
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo &info) {
    StopPoll();
    return info.Env().Undefined();
  }

  // close(): the handle goes, and so does the callback: it closes over its
  // owner (a client, a switch and their regions), which must not stay
  // reachable from a watcher object the GC has not collected yet
  Napi::Value Close(const Napi::CallbackInfo &info) {
    StopPoll();
    CloseHandle();
    cb_.Reset();
    return info.Env().Undefined();
  }

  void StopPoll() {
    if (handle_ && active_) uv_poll_stop(handle_);
    if (active_) {
      active_ = false;
      Unref();
    }
  }

  void CloseHandle() {
    if (!handle_) return;
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t *>(handle_),
             [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
    handle_ = nullptr;
  }

  static void EnvCleanup(void *arg) {
    auto *self = static_cast<FdWatcher *>(arg);
    self->hook_ = false;
    if (self->handle_ && self->active_) uv_poll_stop(self->handle_);
    self->active_ = false;
    self->CloseHandle();
  }

  static void OnPoll(uv_poll_t *h, int status, int events) {
    auto *self = static_cast<FdWatcher *>(h->data);
    if (!self || !self->active_ || self->cb_.IsEmpty()) return;
    Napi::Env env = self->cb_.Env();
    Napi::HandleScope scope(env);
    int ev = ((events & UV_READABLE) ? 1 : 0) | ((events & UV_WRITABLE) ? 2 : 0) |
             ((events & UV_DISCONNECT) ? 4 : 0);
    // nothing may escape into libuv: see report_callback_error
    try {
      self->cb_.MakeCallback(self->Value(), {Napi::Number::New(env, status), Napi::Number::New(env, ev)},
                             *self->ctx_);
    } catch (const Napi::Error &e) {
      report_callback_error(self->fd_, e.Message().c_str());
    } catch (const std::exception &e) {
      report_callback_error(self->fd_, e.what());
    } catch (...) {
      report_callback_error(self->fd_, "unknown exception");
    }
  }

  int fd_ = -1;
  bool active_ = false;
  bool hook_ = true;
  napi_env env_ = nullptr;
  uv_poll_t *handle_ = nullptr;
  Napi::FunctionReference cb_;
  std::unique_ptr<Napi::AsyncContext> ctx_;
};

}  // namespace

void InitFdio(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfd", Napi::Function::New(env, EventFd));
  exports.Set("kick", Napi::Function::New(env, Kick));
  exports.Set("drain", Napi::Function::New(env, Drain));
  exports.Set("waitFd", Napi::Function::New(env, WaitFd));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("fdSize", Napi::Function::New(env, FdSize));
  exports.Set("mapFd", Napi::Function::New(env, MapFd));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
  exports.Set("accept", Napi::Function::New(env, Accept));
  exports.Set("acceptShed", Napi::Function::New(env, AcceptShed));
  exports.Set("callbackErrors", Napi::Function::New(env, CallbackErrors));
  exports.Set("unmap", Napi::Function::New(env, Unmap));
  exports.Set("liveMappings", Napi::Function::New(env, LiveMappings));
  exports.Set("createRegionFdAsync", Napi::Function::New(env, CreateRegionFdAsync));
  exports.Set("sendMsg", Napi::Function::New(env, SendMsg));
  exports.Set("recvMsg", Napi::Function::New(env, RecvMsg));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred));
  exports.Set("FdWatcher", FdWatcher::Define(env));
}

}  // namespace nm
