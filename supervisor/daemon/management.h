// The management socket: JSON lines over a unix stream socket in the state directory
// (protocol in commands.h). Server side is an Asio adapter; client side is blocking.
#pragma once

#include <sys/types.h>

#include "asio.h"
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "json.h"

namespace deployctl {

class ManagementServer {
 public:
  // Called once per response; safe to call after the connection is gone.
  using Reply = std::function<void(const json::Value& response)>;
  using Handler = std::function<void(const json::Value& request, Reply reply)>;

  // Only clients whose uid is root or `allowed_uid` (SO_PEERCRED) reach `handler`.
  ManagementServer(boost::asio::io_context& io, std::string socket_path, uid_t allowed_uid,
                   Handler handler);
  ~ManagementServer();

  // Binds the socket (replacing a stale one: the caller holds the deployment's lock), mode 0600.
  bool listen(std::string* error);
  void close();
  // Responses written but not yet flushed to their clients.
  int pending_replies() const { return *pending_; }

 private:
  class Session;
  void accept();

  std::string path_;
  uid_t allowed_uid_;
  Handler handler_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::shared_ptr<int> pending_ = std::make_shared<int>(0);
};

struct ClientResult {
  int exit_code = 0;        // kExit*: 0 when a response arrived
  std::string error;        // what went wrong, when exit_code != 0
  json::Value response;     // the supervisor's response
};

// Connects, sends one request, waits for its response at most `timeout` in all (connect,
// send and answer; zero: no limit). Past it: kExitTimeout, and the request may still complete
// (a stopped or overloaded supervisor answers later, to nobody).
ClientResult call_supervisor(const std::string& socket_path, const json::Value& request,
                             std::chrono::milliseconds timeout);

}  // namespace deployctl
