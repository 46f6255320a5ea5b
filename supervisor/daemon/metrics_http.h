// GET /metrics over HTTP/1.x on the spec's [metrics] listen address (edge), on the daemon's
// loop. Bounded: a request head of at most kMaxRequestBytes, kMaxConnections at once (more are
// answered 503 and closed), and kTimeout for the whole exchange (a client that never sends its
// request or never reads the response is closed). One request per connection. Nothing runs on
// the loop unless a client connects: the exposition is rendered per request.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "asio.h"
#include "spec.h"

namespace deployctl {

// Pure: the status code for a request head (the request line and headers, up to the blank
// line): 200 for GET /metrics (a query string is ignored), 404 for another path, 405 for
// another method, 400 for anything that is not an HTTP/1.x request line.
int metrics_request_status(std::string_view head);

class MetricsHttpServer {
 public:
  using Render = std::function<std::string()>;  // the exposition text, on the loop

  static constexpr std::size_t kMaxRequestBytes = 8 * 1024;
  static constexpr int kMaxConnections = 32;
  static constexpr std::chrono::seconds kTimeout{5};

  MetricsHttpServer(boost::asio::io_context& io, Render render);
  ~MetricsHttpServer();

  // Binds and listens (SO_REUSEADDR, close-on-exec). False with *error ("cannot serve metrics
  // on 127.0.0.1:9464: Address already in use") if it cannot.
  bool listen(const ListenAddress& address, std::string* error);
  void close();

 private:
  class Session;
  void accept();

  std::shared_ptr<const Render> render_;  // shared with sessions that outlive a close()
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_timer_;
  std::shared_ptr<int> sessions_ = std::make_shared<int>(0);
};

}  // namespace deployctl
