#include "control_protocol.h"

#include <charconv>

namespace deployctl::control {
namespace {

bool valid_key(std::string_view key) {
  if (key.empty() || key.size() > 64) return false;
  for (char c : key) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

bool valid_value(std::string_view value) {
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

std::optional<std::uint64_t> parse_u64(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

}  // namespace

std::optional<Fields> split_fields(std::string_view datagram, std::string* error) {
  if (datagram.size() > kMaxMessage) {
    *error = "message of " + std::to_string(datagram.size()) + " bytes exceeds " +
             std::to_string(kMaxMessage);
    return std::nullopt;
  }
  Fields fields;
  while (!datagram.empty()) {
    auto newline = datagram.find('\n');
    std::string_view line = datagram.substr(0, newline);
    datagram = newline == std::string_view::npos ? std::string_view{} : datagram.substr(newline + 1);
    auto eq = line.find('=');
    if (eq == std::string_view::npos) {
      *error = "line without '='";
      return std::nullopt;
    }
    std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
    if (!valid_key(key)) {
      *error = "invalid key";
      return std::nullopt;
    }
    if (!valid_value(value)) {
      *error = "control character in value of " + std::string(key);
      return std::nullopt;
    }
    fields.emplace_back(key, value);
  }
  return fields;
}

DecodeResult decode(std::string_view datagram) {
  DecodeResult result;
  auto fields = split_fields(datagram, &result.error);
  if (!fields) return result;
  Message message;
  for (const auto& field : *fields) {
    const std::string& key = field.first;
    const std::string& value = field.second;
    auto number = [&](std::optional<std::uint64_t>& out) {
      out = parse_u64(value);
      if (!out) result.error = key + " is not a number";
    };
    if (key == "READY") message.ready = value == "1";
    else if (key == "WATCHDOG") message.watchdog = value == "1";
    else if (key == "STOPPING") message.stopping = value == "1";
    else if (key == "DRAIN") message.drain = value == "1";
    else if (key == "STATUS") message.status = value;
    else if (key == "PING") number(message.ping);
    else if (key == "PONG") number(message.pong);
    else if (key == "REQUESTS") number(message.requests);
    else if (key == "INFLIGHT") number(message.inflight);
    if (!result.error.empty()) return result;
  }
  result.message = std::move(message);
  return result;
}

std::string encode_ping(std::uint64_t seq) { return "PING=" + std::to_string(seq) + "\n"; }

std::string encode_drain() { return "DRAIN=1\n"; }

std::string encode_pong(std::uint64_t seq, std::uint64_t requests, std::uint64_t inflight) {
  return "PONG=" + std::to_string(seq) + "\nREQUESTS=" + std::to_string(requests) +
         "\nINFLIGHT=" + std::to_string(inflight) + "\n";
}

}  // namespace deployctl::control
