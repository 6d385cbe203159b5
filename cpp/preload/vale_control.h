// The client side of the vale-ts control protocol (docs/control-protocol.md)
// for the preload: one blocking request at a time on a SOCK_SEQPACKET socket,
// JSON in and out, fds received with SCM_RIGHTS. Used on registration and
// for the VALE requests only, never on the sync path.
#pragma once

#include <string>
#include <vector>

#include "preload/json.h"

namespace nmpre {

// The socket path by the rules of defaultSocketPath (protocol.ts).
std::string vale_socket_path();

struct ControlError {
  int err = 0;          // errno value for the program
  std::string message;  // one line, for stderr
};

// Connects to vale-ts. Returns the fd, or -1 with *e set.
int vale_connect(ControlError *e);

// Sends `request` (a JSON object text without "v", which is added) and
// waits up to 30 s for the reply. Received fds are appended to *fds (the
// caller owns them). Returns true on an ok reply; false with *e set for an
// error reply (errno from its code) or a transport failure.
bool vale_request(int fd, const std::string &request, JVal *reply, std::vector<int> *fds, ControlError *e);

// One request on a fresh connection (vale-ctl-style requests).
bool vale_request_once(const std::string &request, JVal *reply, ControlError *e);

// errno value for an errno name sent by vale-ts ("EBUSY" -> EBUSY); EIO if unknown.
int errno_from_name(const std::string &name);

}  // namespace nmpre
