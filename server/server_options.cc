#include "server_options.h"

#include <charconv>

namespace deployctl::server {
namespace {

// A whole decimal number in [min, max], nothing else.
std::optional<int> parse_int_in(std::string_view text, int min, int max) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < min ||
      value > max) {
    return std::nullopt;
  }
  return value;
}

// Bytes for --debug-leak-per-request: 1 .. 64 MiB.
std::optional<std::uint64_t> parse_leak_bytes(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < 1 ||
      value > 64 * 1024 * 1024) {
    return std::nullopt;
  }
  return value;
}

// Splits "--name=value" into name and value; a bare "--name" has no value.
struct Flag {
  std::string_view name;
  std::optional<std::string_view> value;
};

Flag split_flag(std::string_view arg) {
  std::size_t eq = arg.find('=');
  if (!arg.starts_with("--") || eq == std::string_view::npos) return {arg, std::nullopt};
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

}  // namespace

std::optional<ListenAddress> parse_listen_flag(std::string_view text, std::string* error) {
  std::string reason;
  auto address = parse_listen_address(text, 0, &reason);
  if (!address) *error = "--listen " + std::string(text) + ": " + reason;
  return address;
}

OptionsResult parse_options(std::span<const std::string_view> args) {
  OptionsResult result;
  Options& options = result.options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    Flag flag = split_flag(args[i]);
    auto take_value = [&]() -> std::optional<std::string_view> {
      if (flag.value) return flag.value;
      if (i + 1 < args.size()) return args[++i];
      result.error = std::string(flag.name) + " needs a value";
      return std::nullopt;
    };
    bool takes_value = flag.name == "--listen" || flag.name == "--root" ||
                       flag.name == "--idle-timeout" || flag.name == "--drain-grace" ||
                       flag.name == "--debug-leak-per-request" || flag.name == "--tls-cert" ||
                       flag.name == "--tls-key" || flag.name == "--handshake-timeout" ||
                       flag.name == "--redirect-https";
    if (!takes_value && flag.value) {
      result.error = std::string(flag.name) + " takes no value";
    } else if (flag.name == "--help" || flag.name == "-h") {
      options.help = true;
    } else if (flag.name == "--version") {
      options.version = true;
    } else if (flag.name == "--debug-endpoints") {
      options.debug_endpoints = true;
    } else if (flag.name == "--listen") {
      if (auto text = take_value()) {
        if (auto address = parse_listen_flag(*text, &result.error)) {
          options.listen.push_back(*address);
        }
      }
    } else if (flag.name == "--idle-timeout") {
      if (auto text = take_value()) {
        auto seconds = parse_int_in(*text, 1, 86400);
        if (!seconds) result.error = "--idle-timeout takes whole seconds from 1 to 86400";
        options.idle_timeout_seconds = seconds.value_or(0);
      }
    } else if (flag.name == "--drain-grace") {
      if (auto text = take_value()) {
        auto ms = parse_int_in(*text, 0, 60000);
        if (!ms) result.error = "--drain-grace takes whole milliseconds from 0 to 60000";
        options.drain_grace_ms = ms.value_or(0);
      }
    } else if (flag.name == "--debug-leak-per-request") {
      if (auto text = take_value()) {
        auto bytes = parse_leak_bytes(*text);
        if (!bytes) result.error = "--debug-leak-per-request takes bytes from 1 to 67108864";
        options.leak_per_request = bytes.value_or(0);
      }
    } else if (flag.name == "--tls-cert" || flag.name == "--tls-key") {
      if (auto text = take_value()) {
        if (text->empty()) result.error = std::string(flag.name) + " needs a file";
        (flag.name == "--tls-cert" ? options.tls_cert : options.tls_key) = std::string(*text);
      }
    } else if (flag.name == "--handshake-timeout") {
      if (auto text = take_value()) {
        auto seconds = parse_int_in(*text, 1, 600);
        if (!seconds) result.error = "--handshake-timeout takes whole seconds from 1 to 600";
        options.handshake_timeout_seconds = seconds.value_or(0);
      }
    } else if (flag.name == "--redirect-https") {
      if (auto text = take_value()) {
        auto port = parse_int_in(*text, 1, 65535);
        if (!port) result.error = "--redirect-https takes the HTTPS port, 1 to 65535";
        options.redirect_https_port = port;
      }
    } else if (flag.name == "--root") {
      if (auto text = take_value()) {
        if (text->empty()) result.error = "--root needs a directory";
        options.root = std::string(*text);
      }
    } else {
      result.error = "unknown argument '" + std::string(args[i]) + "'";
    }
    if (!result.error.empty()) return result;
  }
  if (options.listen.empty()) {
    options.listen.push_back(*parse_listen_flag(kDefaultListen, &result.error));
  }
  return result;
}

std::string usage_text() {
  return "usage: deploy-server [--listen HOST:PORT]... [--root DIR] [--idle-timeout SECONDS]\n"
         "                     [--drain-grace MS] [--tls-cert FILE --tls-key FILE]\n"
         "                     [--handshake-timeout S] [--debug-endpoints]\n"
         "                     [--debug-leak-per-request BYTES] [--redirect-https PORT]\n"
         "\n"
         "A small, fast HTTP/1.1 server; the reference worker of deployctl.\n"
         "\n"
         "  --listen HOST:PORT  address to listen on (repeatable; default 127.0.0.1:8000);\n"
         "                      HOST is numeric IPv4, [IPv6] or localhost. Ignored when\n"
         "                      sockets are inherited via LISTEN_FDS/LISTEN_PID.\n"
         "  --root DIR          serve static files from DIR (GET / serves DIR/index.html)\n"
         "  --idle-timeout S    close keep-alive connections idle for S seconds (default 60)\n"
         "  --drain-grace MS    when draining, an idle keep-alive connection may still send\n"
         "                      one request (answered with Connection: close) for MS\n"
         "                      milliseconds before it is closed (default 250)\n"
         "  --tls-cert FILE     serve HTTPS on every listener: PEM certificate chain\n"
         "  --tls-key FILE      and its PEM private key (both or neither; default\n"
         "                      DEPLOYCTL_TLS_CERT / DEPLOYCTL_TLS_KEY). TLS 1.2 and 1.3,\n"
         "                      ALPN http/1.1, session resumption\n"
         "  --handshake-timeout S  close TLS connections not through the handshake in S\n"
         "                      seconds (default 10)\n"
         "  --redirect-https PORT  answer every request with 308 to https://HOST:PORT (path and\n"
         "                      query kept; no :PORT for 443), except GET/HEAD of\n"
         "                      /.well-known/acme-challenge/*, served from --root (HTTP-01)\n"
         "  --debug-endpoints   enable GET /sleep/<ms> (at most 10000), for tests\n"
         "  --debug-leak-per-request BYTES\n"
         "                      keep BYTES of touched memory per request, never freed:\n"
         "                      a leaking server, for memory-limit tests\n"
         "  --help, --version\n"
         "\n"
         "Routes: GET /healthz, GET /whoami, GET /, static files. HEAD works everywhere.\n"
         "Environment: DEPLOYCTL_CONTROL_FD (worker control protocol), NOTIFY_SOCKET,\n"
         "LISTEN_FDS/LISTEN_PID, DEPLOYCTL_SERVICE, DEPLOYCTL_REPLICA,\n"
         "DEPLOYCTL_TLS_CERT/DEPLOYCTL_TLS_KEY, DEPLOYCTL_TLS_TICKET_KEY (an 80-byte session\n"
         "ticket key file shared by replicas, so sessions resume on any of them).\n"
         "SIGTERM/SIGINT drain gracefully; a second one exits at once.\n";
}

}  // namespace deployctl::server
