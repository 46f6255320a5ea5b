#include "management.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include <spdlog/spdlog.h>

#include "commands.h"

namespace deployctl {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

namespace {
constexpr std::size_t kMaxRequest = 64 * 1024;
// A client must send its request line within this time (an idle client holds an fd).
constexpr std::chrono::seconds kRequestTimeout{10};

// Never empty: says what was wrong and what a request looks like.
std::string malformed_request_text(bool parsed, const std::string& parse_error) {
  std::string why = parsed ? "not a JSON object"
                           : parse_error.empty() ? "not JSON" : "not JSON: " + parse_error;
  return "malformed request (" + why + "); expected one JSON object per line, e.g. "
         "{\"command\": \"status\"}";
}

}  // namespace

class ManagementServer::Session : public ManagementStream,
                                  public std::enable_shared_from_this<Session> {
 public:
  Session(local::socket socket, std::shared_ptr<int> pending, std::shared_ptr<int> sessions)
      : socket_(std::move(socket)),
        buffer_(kMaxRequest),
        pending_(std::move(pending)),
        sessions_(std::move(sessions)),
        request_timer_(socket_.get_executor()) {
    ++*sessions_;
  }
  ~Session() { --*sessions_; }

  void read_request(Handler handler, StreamHandler stream_handler) {
    auto self = shared_from_this();
    request_timer_.expires_after(kRequestTimeout);
    request_timer_.async_wait([self](boost::system::error_code ec) {
      if (!ec) self->close();  // never sent a whole request line: its fd is needed elsewhere
    });
    asio::async_read_until(socket_, buffer_, '\n',
                           [self, handler, stream_handler](boost::system::error_code ec,
                                                           std::size_t length) {
                             self->waiting_ = false;
                             self->request_timer_.cancel();
                             if (ec) {
                               if (ec == asio::error::not_found) {
                                 self->respond(management_error("request too large", kExitUsage));
                               }
                               return;
                             }
                             std::string line(asio::buffers_begin(self->buffer_.data()),
                                              asio::buffers_begin(self->buffer_.data()) + length);
                             self->buffer_.consume(length);
                             json::ParseError error;
                             auto request = json::parse(line, &error);
                             if (request && !request->is_object()) {
                               error.message = "expected a JSON object";
                             }
                             if (!request || !request->is_object()) {
                               self->respond(management_error(malformed_request_text(
                                   request.has_value(), error.message), kExitUsage));
                               return;
                             }
                             if (stream_handler && stream_handler(*request, self)) {
                               self->watch_hangup();
                               return;
                             }
                             std::weak_ptr<Session> weak = self;
                             handler(*request, [weak](const json::Value& response) {
                               if (auto session = weak.lock()) session->respond(response);
                             });
                             // Keep the session alive while the request is in progress.
                             self->wait_for_close();
                           });
  }

  void respond(const json::Value& response) {
    if (responded_) return;
    responded_ = true;
    waiting_ = false;
    auto text = std::make_shared<std::string>(json::dump(response) + "\n");
    ++*pending_;
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(*text),
                      [self, text](boost::system::error_code, std::size_t) {
                        --*self->pending_;
                        self->close();
                      });
  }

  bool open() const override { return socket_.is_open(); }

  bool send(const json::Value& line) override {
    if (!socket_.is_open()) return false;
    std::string text = json::dump(line) + "\n";
    if (queued_bytes_ + text.size() > kMaxStreamBytes) {  // a slow client: drop it
      close();
      return false;
    }
    queued_bytes_ += text.size();
    queue_.push_back(std::move(text));
    if (queue_.size() == 1) write_next();
    return true;
  }

  // Still waiting for its request line (an idle client, which may be evicted).
  bool waiting() const { return waiting_; }

  void close() {
    boost::system::error_code ignored;
    request_timer_.cancel();
    socket_.shutdown(local::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  void write_next() {
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(queue_.front()),
                      [self](boost::system::error_code ec, std::size_t) {
                        if (ec) {
                          self->close();
                          return;
                        }
                        self->queued_bytes_ -= self->queue_.front().size();
                        self->queue_.pop_front();
                        if (!self->queue_.empty()) self->write_next();
                      });
  }

  // A stream ends when its client hangs up (or sends anything more).
  void watch_hangup() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(hangup_byte_),
                            [self](boost::system::error_code, std::size_t) { self->close(); });
  }

  // Holds a reference to the session until the client hangs up or the response is written.
  void wait_for_close() {
    auto self = shared_from_this();
    socket_.async_wait(local::socket::wait_error, [self](boost::system::error_code) {});
  }

  local::socket socket_;
  asio::streambuf buffer_;
  std::shared_ptr<int> pending_;
  std::shared_ptr<int> sessions_;
  asio::steady_timer request_timer_;
  bool waiting_ = true;
  bool responded_ = false;
  std::deque<std::string> queue_;  // a stream's lines not yet written
  std::size_t queued_bytes_ = 0;
  char hangup_byte_[1];
};

ManagementServer::ManagementServer(asio::io_context& io, std::string socket_path,
                                   uid_t allowed_uid, Handler handler)
    : path_(std::move(socket_path)), allowed_uid_(allowed_uid),
      handler_(std::move(handler)), acceptor_(io), accept_timer_(io) {}

ManagementServer::~ManagementServer() { close(); }

bool ManagementServer::listen(std::string* error) {
  ::unlink(path_.c_str());
  boost::system::error_code ec;
  mode_t old_mask = ::umask(0177);
  acceptor_.open(local(), ec);
  if (!ec) acceptor_.bind(local::endpoint(path_), ec);
  ::umask(old_mask);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec && ::chmod(path_.c_str(), 0600) != 0) ec.assign(errno, boost::system::system_category());
  if (ec) {
    *error = "cannot create management socket " + path_ + ": " + ec.message();
    return false;
  }
  accept();
  return true;
}

bool ManagementServer::adopt(int fd, std::string* error) {
  boost::system::error_code ec;
  acceptor_.assign(local(), fd, ec);
  if (ec) {
    *error = "cannot serve the carried management socket: " + ec.message();
    return false;
  }
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  accept();
  return true;
}

void ManagementServer::close() {
  if (!acceptor_.is_open()) return;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  accept_timer_.cancel();
  ::unlink(path_.c_str());
}

// Makes room for one more client: closes the oldest one still idle (no request yet). False if
// every client has a request in progress.
bool ManagementServer::evict_idle_client() {
  while (!idle_.empty()) {
    auto oldest = idle_.front().lock();
    idle_.pop_front();
    if (oldest && oldest->waiting()) {
      oldest->close();
      return true;
    }
  }
  return false;
}

void ManagementServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, local::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec == asio::error::no_descriptors || ec.value() == ENFILE || ec.value() == ENOBUFS ||
        ec.value() == ENOMEM) {
      // Out of fds: retrying at once would spin a core. Clients wait in the backlog meanwhile.
      if (!accept_paused_) {
        spdlog::warn("management socket: cannot accept a client ({}); pausing accepts for "
                     "{} ms at a time until fds are free",
                     ec.message(), kAcceptPause.count());
      }
      accept_paused_ = true;
      accept_timer_.expires_after(kAcceptPause);
      accept_timer_.async_wait([this](boost::system::error_code timer_ec) {
        if (!timer_ec && acceptor_.is_open()) accept();
      });
      return;
    }
    if (!ec) {
      if (accept_paused_) spdlog::info("management socket: accepting clients again");
      accept_paused_ = false;
      serve(std::move(socket));
    }
    accept();
  });
}

void ManagementServer::serve(local::socket socket) {
  ucred peer{};
  socklen_t length = sizeof peer;
  bool allowed = ::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer,
                              &length) == 0 &&
                 (peer.uid == 0 || peer.uid == allowed_uid_);
  const bool room = !allowed || *sessions_ < kMaxClients || evict_idle_client();
  auto session = std::make_shared<Session>(std::move(socket), pending_, sessions_);
  if (!allowed) {
    session->respond(management_error(
        "permission denied: uid " + std::to_string(peer.uid) +
            " may not manage this deployment (only root and uid " +
            std::to_string(allowed_uid_) + ")",
        kExitPermission));
  } else if (!room) {
    session->respond(management_error(
        "too many management clients (" + std::to_string(kMaxClients) +
            " requests in progress); try again once one is done",
        kExitBusy));
  } else {
    idle_.push_back(session);
    if (idle_.size() > 4 * kMaxClients) {  // drop the entries of finished sessions
      std::erase_if(idle_, [](const std::weak_ptr<Session>& weak) {
        auto alive = weak.lock();
        return !alive || !alive->waiting();
      });
    }
    session->read_request(handler_, stream_handler_);
  }
}

namespace {

// The longest answer line the CLI accepts (a status of thousands of replicas is a few MiB): a
// peer that never ends its line cannot grow the CLI without bound.
constexpr std::size_t kMaxReplyLine = 64 * 1024 * 1024;

// What is left of `timeout` since `start`, for poll() and SO_*TIMEO: -1 for no limit, else at
// least 1 ms (0 would mean "no limit" to SO_*TIMEO).
int remaining_ms(std::chrono::steady_clock::time_point start, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) return -1;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      timeout - (std::chrono::steady_clock::now() - start));
  return static_cast<int>(std::clamp<long long>(left.count(), 1, INT32_MAX));
}

bool expired(std::chrono::steady_clock::time_point start, std::chrono::milliseconds timeout) {
  return timeout.count() > 0 && std::chrono::steady_clock::now() - start >= timeout;
}

// Bounds a blocking connect() (a full backlog of a stopped supervisor) and send().
void set_socket_timeouts(int fd, int ms) {
  if (ms < 0) return;
  timeval limit{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
}

// Passes each further line on `fd` (after `pending`, already read) to `on_line` until EOF or
// `on_line` returns false. A line that is not JSON, or longer than kMaxReplyLine, ends it too.
void follow_lines(int fd, std::string pending, const std::function<bool(const json::Value&)>& on_line) {
  char buffer[8192];
  std::size_t scanned = 0;  // bytes of `pending` known to hold no newline
  while (true) {
    for (auto end = pending.find('\n', scanned); end != std::string::npos;
         end = pending.find('\n')) {
      auto line = json::parse(std::string_view(pending).substr(0, end));
      pending.erase(0, end + 1);
      if (!line || !on_line(*line)) return;
    }
    scanned = pending.size();
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || pending.size() > kMaxReplyLine) return;
    pending.append(buffer, static_cast<std::size_t>(n));
  }
}

}  // namespace

ClientResult call_supervisor(const std::string& socket_path, const json::Value& request,
                             std::chrono::milliseconds timeout,
                             const std::function<bool(const json::Value&)>& on_line) {
  const auto start = std::chrono::steady_clock::now();
  ClientResult result;
  auto timed_out = [&](const char* stage) {
    result.exit_code = kExitTimeout;
    result.error = std::string("no answer from the supervisor within ") +
                   std::to_string(timeout.count()) + " ms (" + stage + " " + socket_path +
                   "); it may be stopped (SIGSTOP) or overloaded. The request may still be "
                   "carried out: check 'deployctl status'; --timeout DURATION waits longer";
    return result;
  };
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof address.sun_path) {
    if (fd >= 0) ::close(fd);
    result.exit_code = kExitFailed;
    result.error = "socket path too long: " + socket_path;
    return result;
  }
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (fd >= 0) set_socket_timeouts(fd, remaining_ms(start, timeout));
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int error = errno;
    if (fd >= 0) ::close(fd);
    if (error == EAGAIN || error == EINPROGRESS) return timed_out("connecting to");
    result.exit_code = error == EACCES || error == EPERM ? kExitPermission : kExitNotRunning;
    result.error = error == EACCES || error == EPERM
                       ? "permission denied: cannot connect to " + socket_path
                       : "no supervisor is running (" + socket_path + ": " +
                             std::strerror(error) + ")";
    return result;
  }
  std::string text = json::dump(request) + "\n";
  for (std::size_t sent = 0; sent < text.size();) {
    set_socket_timeouts(fd, remaining_ms(start, timeout));
    ssize_t n = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ::close(fd);
      return timed_out("sending to");
    }
    if (n < 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string reply;
  char buffer[8192];
  for (bool line_ended = false; !line_ended;) {
    pollfd wait{fd, POLLIN, 0};
    int ready = ::poll(&wait, 1, remaining_ms(start, timeout));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0 || (ready < 0 && expired(start, timeout))) {
      ::close(fd);
      return timed_out("waiting for its answer on");
    }
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    line_ended = std::memchr(buffer, '\n', static_cast<std::size_t>(n)) != nullptr;
    reply.append(buffer, static_cast<std::size_t>(n));
    if (!line_ended && reply.size() > kMaxReplyLine) {
      ::close(fd);
      result.exit_code = kExitFailed;
      result.error = "the answer on " + socket_path + " exceeds " +
                     std::to_string(kMaxReplyLine >> 20) + " MiB without ending its line: " +
                     "not a deployctl supervisor, or a broken one";
      return result;
    }
  }
  json::ParseError error;
  auto response = json::parse(reply.substr(0, reply.find('\n')), &error);
  if (on_line && response && json::as_bool(json::get(*response, "ok"))) {
    follow_lines(fd, reply.substr(reply.find('\n') + 1), on_line);
  }
  ::close(fd);
  if (!response) {
    result.exit_code = kExitFailed;
    result.unanswered = reply.empty();
    result.error = reply.empty() ? "the supervisor closed the connection without answering"
                                 : "malformed response from the supervisor: " + error.message;
    return result;
  }
  result.response = std::move(*response);
  if (!json::as_bool(json::get(result.response, "ok"))) {
    auto* message = json::find(result.response, "error");
    auto* code = json::find(result.response, "exit");
    result.exit_code = code ? static_cast<int>(json::as_int(*code, kExitFailed)) : kExitFailed;
    result.error = message ? json::as_string(*message) : "request failed";
  }
  return result;
}

}  // namespace deployctl
