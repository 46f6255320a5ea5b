// The http probe's kept connection, pure half: the response head parser and the
// "reuse, reconnect or fail" state machine (core/http_probe_connection.h).
#include "http_probe_connection.h"

#include <doctest/doctest.h>

#include <string>

using namespace deployctl;
using State = ProbeConnectionPolicy::State;
using Start = ProbeConnectionPolicy::Start;
using AfterFailure = ProbeConnectionPolicy::AfterFailure;

namespace {

ResponseHead complete(std::string_view bytes) {
  const HeadParse parsed = parse_response_head(bytes);
  REQUIRE_MESSAGE(parsed.status == HeadStatus::complete, parsed.error);
  return parsed.head;
}

std::string error_of(std::string_view bytes) {
  const HeadParse parsed = parse_response_head(bytes);
  REQUIRE(parsed.status == HeadStatus::error);
  return parsed.error;
}

ResponseHead keep_alive_200() { return complete("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"); }

}  // namespace

TEST_CASE("http probe head: a Content-Length answer is framed and may be kept") {
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Pid: 7\r\n\r\n";
  const ResponseHead parsed = complete(head + "ok\n");
  CHECK(parsed.status == 200);
  CHECK(parsed.minor_version == 1);
  CHECK(parsed.keep_alive);
  CHECK(parsed.body == BodyFraming::length);
  CHECK(parsed.content_length == 3);
  CHECK(parsed.head_bytes == head.size());
  CHECK(reads_body(parsed));
}

TEST_CASE("http probe head: incomplete heads need more, in any piece") {
  const std::string whole = "HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n";
  for (std::size_t cut = 0; cut < whole.size(); ++cut) {
    CAPTURE(cut);
    CHECK(parse_response_head(whole.substr(0, cut)).status == HeadStatus::need_more);
  }
  CHECK(complete(whole).body == BodyFraming::none);
  CHECK(complete("HTTP/1.1 200 OK\nContent-Length: 0\n\n").head_bytes == 35);  // bare LF
}

TEST_CASE("http probe head: Connection and the version decide persistence") {
  CHECK_FALSE(
      complete("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
  CHECK_FALSE(complete("HTTP/1.1 200 OK\r\nconnection: Upgrade, CLOSE\r\n\r\n").keep_alive);
  CHECK_FALSE(complete("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
  CHECK(complete("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
            .keep_alive);
}

TEST_CASE("http probe head: body framing of chunked, unframed and bodiless answers") {
  const ResponseHead chunked =
      complete("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n");
  CHECK(chunked.body == BodyFraming::chunked);
  CHECK_FALSE(reads_body(chunked));
  CHECK(complete("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").body ==
        BodyFraming::until_close);
  CHECK(complete("HTTP/1.1 200 OK\r\n\r\n").body == BodyFraming::until_close);
  CHECK(complete("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").body ==
        BodyFraming::none);
  CHECK(complete("HTTP/1.1 100 Continue\r\n\r\n").body == BodyFraming::none);
  const ResponseHead big = complete("HTTP/1.1 200 OK\r\nContent-Length: 65537\r\n\r\n");
  CHECK(big.body == BodyFraming::length);
  CHECK_FALSE(reads_body(big));
}

TEST_CASE("http probe head: malformed heads fail with what was wrong") {
  CHECK(error_of("SSH-2.0-OpenSSH_9.2\x01\r\n") ==
        "not an HTTP/1.x status line: 'SSH-2.0-OpenSSH_9.2?'");
  CHECK(error_of("SSH-2") == "not an HTTP/1.x status line: 'SSH-2'");  // no line end needed
  CHECK(error_of("HTTP/1.1 20 OK\r\n\r\n") == "not an HTTP/1.x status line: 'HTTP/1.1 20 OK'");
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\n") ==
        "invalid Content-Length: 'Content-Length: 3x'");
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")
            .starts_with("invalid Content-Length"));
  CHECK(error_of("HTTP/1.1 200 OK\r\nno colon\r\n\r\n").starts_with("header line without"));
  CHECK(error_of("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n").starts_with("invalid header name"));
  CHECK(error_of("HTTP/1.1 200 OK\r\nA: b\r\n  folded\r\n\r\n").starts_with("folded"));
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 101; ++i) many += "X-" + std::to_string(i) + ": y\r\n";
  CHECK(error_of(many + "\r\n") == "more than 100 header lines");
}

TEST_CASE("http probe head: a head over the limit fails, with or without a line end") {
  CHECK(error_of("HTTP/1.1 200 OK\r\nX: " + std::string(17000, 'a')) ==
        "response head longer than 16384 bytes");
  CHECK(error_of("HTTP/1.1 200 OK\r\nX: " + std::string(17000, 'a') + "\r\n\r\n") ==
        "response head longer than 16384 bytes");
  CHECK(parse_response_head("HTTP/1.1 200 OK\r\nX: abcdefghi", 30).status == HeadStatus::need_more);
  CHECK(parse_response_head("HTTP/1.1 200 OK\r\nX: abcdefghij", 30).status == HeadStatus::error);
}

TEST_CASE("probe connection: the first check connects; a kept-alive answer keeps it") {
  ProbeConnectionPolicy policy;
  CHECK(policy.state() == State::none);
  CHECK(policy.begin_check(false) == Start::connect);
  CHECK(policy.state() == State::fresh);
  CHECK(policy.answered(keep_alive_200(), false));
  CHECK(policy.state() == State::idle);
  CHECK(policy.begin_check(true) == Start::send_on_kept);
  CHECK(policy.state() == State::reused);
  CHECK(policy.answered(keep_alive_200(), false));
  CHECK(policy.state() == State::idle);
}

TEST_CASE("probe connection: an idle connection seen closed is replaced before sending") {
  ProbeConnectionPolicy policy;
  policy.begin_check(false);
  policy.answered(keep_alive_200(), false);
  CHECK(policy.begin_check(false) == Start::connect);
  CHECK(policy.state() == State::fresh);
}

TEST_CASE("probe connection: closed while idle is a reconnect, once; then a failure") {
  ProbeConnectionPolicy policy;
  policy.begin_check(false);
  policy.answered(keep_alive_200(), false);
  REQUIRE(policy.begin_check(true) == Start::send_on_kept);
  // The server closed it just as the request went out: no answer byte.
  CHECK(policy.transport_failed(0) == AfterFailure::reconnect);
  CHECK(policy.state() == State::fresh);
  // The fresh connection dies too: that is the replica's failure.
  CHECK(policy.transport_failed(0) == AfterFailure::fail);
  CHECK(policy.state() == State::none);
}

TEST_CASE("probe connection: failures that are the replica's") {
  ProbeConnectionPolicy policy;
  SUBCASE("a fresh connection that dies after the request") {
    policy.begin_check(false);
    CHECK(policy.transport_failed(0) == AfterFailure::fail);
  }
  SUBCASE("a reused connection that dies inside the answer") {
    policy.begin_check(false);
    policy.answered(keep_alive_200(), false);
    policy.begin_check(true);
    CHECK(policy.transport_failed(12) == AfterFailure::fail);
  }
  CHECK(policy.state() == State::none);
  CHECK(policy.begin_check(true) == Start::connect);  // nothing kept to reuse
}

TEST_CASE("probe connection: answers that end the connection") {
  ProbeConnectionPolicy policy;
  auto after = [&](std::string_view head, bool leftover = false) {
    policy.begin_check(false);
    return policy.answered(complete(head), leftover);
  };
  CHECK_FALSE(after("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
  CHECK_FALSE(after("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
  CHECK_FALSE(after("HTTP/1.1 200 OK\r\n\r\n"));  // body until close
  CHECK_FALSE(after("HTTP/1.1 100 Continue\r\n\r\n"));
  CHECK_FALSE(after("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", /*leftover=*/true));
  CHECK(policy.state() == State::none);
  CHECK(after("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"));  // framed: still usable
  policy.closed();
  CHECK(policy.state() == State::none);
  CHECK(policy.begin_check(true) == Start::connect);
}
