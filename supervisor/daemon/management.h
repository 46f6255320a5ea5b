// The management socket: JSON lines over a unix stream socket in the state directory
// (protocol in commands.h). Server side is an Asio adapter; client side is blocking.
#pragma once

#include <sys/types.h>

#include "asio.h"
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "json.h"

namespace deployctl {

// A connection that stays open for lines the supervisor sends as things happen (`events -f`).
class ManagementStream {
 public:
  virtual ~ManagementStream() = default;
  // Queues one JSON line. False once the client hung up, a write failed, or the client fell
  // more than ManagementServer::kMaxStreamBytes behind (it is then dropped).
  virtual bool send(const json::Value& line) = 0;
  // False once the client is gone (hung up, dropped, or a write failed).
  virtual bool open() const = 0;
};

class ManagementServer {
 public:
  // Called once per response; safe to call after the connection is gone.
  using Reply = std::function<void(const json::Value& response)>;
  using Handler = std::function<void(const json::Value& request, Reply reply)>;
  // Offered every request first: true takes it as a stream (the handler is then not called).
  using StreamHandler =
      std::function<bool(const json::Value& request, std::shared_ptr<ManagementStream> stream)>;

  // Only clients whose uid is root or `allowed_uid` (SO_PEERCRED) reach `handler`.
  ManagementServer(boost::asio::io_context& io, std::string socket_path, uid_t allowed_uid,
                   Handler handler);
  ~ManagementServer();

  // Binds the socket (replacing a stale one: the caller holds the deployment's lock), mode 0600.
  bool listen(std::string* error);
  // Serves an already listening socket `fd` (carried across an upgrade in place).
  bool adopt(int fd, std::string* error);
  int native_fd() { return acceptor_.is_open() ? acceptor_.native_handle() : -1; }
  void close();
  void set_stream_handler(StreamHandler handler) { stream_handler_ = std::move(handler); }
  // Responses written but not yet flushed to their clients.
  int pending_replies() const { return *pending_; }

  // At most this many clients at once: past it, the oldest idle one (no request line yet) is
  // closed, or, if every one has a request in progress, the new one is refused (kExitBusy).
  static constexpr int kMaxClients = 32;
  // When accept() fails for lack of fds (EMFILE, ENFILE), accepting pauses this long.
  static constexpr std::chrono::milliseconds kAcceptPause{100};
  // A stream's unwritten output past this drops its client.
  static constexpr std::size_t kMaxStreamBytes = 256 * 1024;

 private:
  class Session;
  void accept();
  void serve(boost::asio::local::stream_protocol::socket socket);
  bool evict_idle_client();

  std::string path_;
  uid_t allowed_uid_;
  Handler handler_;
  StreamHandler stream_handler_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::shared_ptr<int> pending_ = std::make_shared<int>(0);
  std::shared_ptr<int> sessions_ = std::make_shared<int>(0);  // open client connections
  std::deque<std::weak_ptr<Session>> idle_;  // clients in accept order, to evict the oldest idle
  boost::asio::steady_timer accept_timer_;
  bool accept_paused_ = false;
};

struct ClientResult {
  int exit_code = 0;        // kExit*: 0 when a response arrived
  std::string error;        // what went wrong, when exit_code != 0
  json::Value response;     // the supervisor's response
  bool unanswered = false;  // the connection closed before any byte of an answer (a
                            // supervisor exiting while the request arrived)
};

// Connects, sends one request, waits for its response at most `timeout` in all (connect,
// send and answer; zero: no limit). Past it: kExitTimeout, and the request may still complete
// (a stopped or overloaded supervisor answers later, to nobody).
// `on_line` non-null: a streamed request; after the first response (ok) every further line is
// passed to `on_line` until the supervisor closes the connection or `on_line` returns false
// (the timeout then applies only to the first response).
ClientResult call_supervisor(const std::string& socket_path, const json::Value& request,
                             std::chrono::milliseconds timeout,
                             const std::function<bool(const json::Value&)>& on_line = nullptr);

}  // namespace deployctl
