#include "metrics_http.h"

#include <spdlog/spdlog.h>

#include "metrics_text.h"

namespace deployctl {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

int metrics_request_status(std::string_view head) {
  const auto line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  const auto first_space = line.find(' ');
  const auto last_space = line.rfind(' ');
  if (first_space == std::string_view::npos || first_space == last_space) return 400;
  const std::string_view method = line.substr(0, first_space);
  std::string_view target = line.substr(first_space + 1, last_space - first_space - 1);
  const std::string_view version = line.substr(last_space + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return 400;
  if (method.empty() || target.empty() || target.front() != '/' ||
      target.find(' ') != std::string_view::npos) {
    return 400;
  }
  for (char c : method) {
    if (c < 'A' || c > 'Z') return 400;
  }
  if (method != "GET") return 405;
  target = target.substr(0, target.find('?'));
  return target == "/metrics" ? 200 : 404;
}

namespace {

std::string response(int status, std::string_view content_type, std::string_view body) {
  const char* reason = status == 200   ? "OK"
                       : status == 400 ? "Bad Request"
                       : status == 404 ? "Not Found"
                       : status == 405 ? "Method Not Allowed"
                       : status == 431 ? "Request Header Fields Too Large"
                                       : "Service Unavailable";
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
  out += "Content-Type: " + std::string(content_type) + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (status == 405) out += "Allow: GET\r\n";
  out += "Connection: close\r\n\r\n";
  out += body;
  return out;
}

}  // namespace

class MetricsHttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<int> sessions, std::shared_ptr<const Render> render)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        sessions_(std::move(sessions)),
        render_(std::move(render)) {
    ++*sessions_;
  }
  ~Session() { --*sessions_; }

  // Reads the request and answers it; `refused`: answers 503 at once (past kMaxConnections).
  void start(bool refused) {
    auto self = shared_from_this();
    timer_.expires_after(refused ? std::chrono::seconds(1) : kTimeout);
    timer_.async_wait([self](boost::system::error_code ec) {
      if (!ec) self->stop();
    });
    if (refused) {
      send(response(503, "text/plain", "too many concurrent scrapes\n"));
      return;
    }
    asio::async_read_until(
        socket_, asio::dynamic_buffer(buffer_, kMaxRequestBytes), "\r\n\r\n",
        [self](boost::system::error_code ec, std::size_t length) { self->on_head(ec, length); });
  }

 private:
  void on_head(boost::system::error_code ec, std::size_t length) {
    if (ec == asio::error::not_found) {  // kMaxRequestBytes without a blank line
      send(response(431, "text/plain", "request head too large\n"));
      return;
    }
    if (ec) {
      stop();
      return;
    }
    const int status = metrics_request_status(std::string_view(buffer_).substr(0, length));
    if (status == 200) {
      send(response(200, kMetricsContentType, (*render_)()));
    } else {
      send(
          response(status, "text/plain", status == 400 ? "malformed request\n" : "GET /metrics\n"));
    }
  }

  void send(std::string text) {
    out_ = std::move(text);
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_), [self](boost::system::error_code, std::size_t) {
      boost::system::error_code ignored;
      self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
      self->stop();
    });
  }

  void stop() {
    boost::system::error_code ignored;
    socket_.close(ignored);
    timer_.cancel();
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  std::shared_ptr<int> sessions_;
  std::shared_ptr<const Render> render_;
  std::string buffer_;
  std::string out_;
};

MetricsHttpServer::MetricsHttpServer(asio::io_context& io, Render render)
    : render_(std::make_shared<const Render>(std::move(render))),
      acceptor_(io),
      accept_timer_(io) {}

MetricsHttpServer::~MetricsHttpServer() { close(); }

bool MetricsHttpServer::listen(const ListenAddress& address, std::string* error) {
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(address.host, ec);
  const tcp::endpoint endpoint(ip, address.port);
  if (!ec) acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    *error = "cannot serve metrics on " + address.text + ": " + ec.message();
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    return false;
  }
  accept();
  return true;
}

void MetricsHttpServer::close() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  accept_timer_.cancel();
}

void MetricsHttpServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {  // out of fds or buffers: retrying at once would spin a core
      accept_timer_.expires_after(std::chrono::milliseconds(100));
      accept_timer_.async_wait([this](boost::system::error_code timer_ec) {
        if (!timer_ec && acceptor_.is_open()) accept();
      });
      return;
    }
    auto session = std::make_shared<Session>(std::move(socket), sessions_, render_);
    session->start(*sessions_ > kMaxConnections);
    accept();
  });
}

}  // namespace deployctl
