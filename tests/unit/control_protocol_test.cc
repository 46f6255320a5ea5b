#include <doctest/doctest.h>

#include "control_protocol.h"

using namespace deployctl::control;

TEST_CASE("control: decodes the worker's messages") {
  auto ready = decode("READY=1\n");
  REQUIRE(ready.message);
  CHECK(ready.message->ready);

  auto pong = decode("PONG=42\nREQUESTS=1000\nINFLIGHT=3");
  REQUIRE(pong.message);
  CHECK(pong.message->pong == 42u);
  CHECK(pong.message->requests == 1000u);
  CHECK(pong.message->inflight == 3u);
  CHECK_FALSE(pong.message->ready);

  auto status = decode("STATUS=warming up: 3/4 caches\nWATCHDOG=1\n");
  REQUIRE(status.message);
  CHECK(status.message->status == "warming up: 3/4 caches");
  CHECK(status.message->watchdog);
}

TEST_CASE("control: unknown keys are ignored, so either side can grow") {
  auto decoded = decode("X_FUTURE=whatever\nREADY=1\n");
  REQUIRE(decoded.message);
  CHECK(decoded.message->ready);
}

TEST_CASE("control: malformed messages are errors with a reason") {
  for (const char* bad : {"no equals sign", "READY=1\n\x01\x02", "lower=1", "=1", "PONG=abc",
                          "PONG=-1", "PONG=", "STATUS=bell\x07"}) {
    auto decoded = decode(bad);
    CHECK_MESSAGE(!decoded.message, bad);
    CHECK_FALSE(decoded.error.empty());
  }
  std::string oversized(kMaxMessage + 1, 'A');
  oversized[0] = 'X';
  oversized[1] = '=';
  CHECK_FALSE(decode(oversized).message);
  CHECK(decode(oversized).error.find("exceeds") != std::string::npos);
}

TEST_CASE("control: what the supervisor sends round-trips") {
  CHECK(decode(encode_ping(7)).message->ping == 7u);
  CHECK(decode(encode_drain()).message->drain);
  auto pong = decode(encode_pong(9, 100, 2)).message;
  CHECK(pong->pong == 9u);
  CHECK(pong->requests == 100u);
  CHECK(pong->inflight == 2u);
}
