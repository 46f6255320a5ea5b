#include "dbus_api.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <sdbus-c++/sdbus-c++.h>
#include <spdlog/spdlog.h>

#include "dbus_protocol.h"

namespace deployctl {

namespace asio = boost::asio;

namespace {

const std::string kInterface(dbus::kInterface);
constexpr int kMaxMessagesPerTurn = 64;  // then let the rest of the loop run

std::uint32_t total(const std::vector<ServiceCounts>& services, std::uint32_t ServiceCounts::*field) {
  std::uint32_t sum = 0;
  for (const auto& service : services) sum += service.*field;
  return sum;
}

std::map<std::string, std::uint32_t> by_service(const std::vector<ServiceCounts>& services,
                                                std::uint32_t ServiceCounts::*field) {
  std::map<std::string, std::uint32_t> counts;
  for (const auto& service : services) counts[service.name] = service.*field;
  return counts;
}

}  // namespace

DbusApi::DbusApi(asio::io_context& io, std::string deployment, ManagementServer::Handler handler)
    : io_(io),
      deployment_(std::move(deployment)),
      bus_name_(dbus::bus_name(deployment_)),
      handler_(std::move(handler)),
      timeout_(io),
      alive_(std::make_shared<DbusApi*>(this)) {}

DbusApi::~DbusApi() {
  alive_.reset();
  pending_.clear();  // unanswered calls hold messages of the connection: gone first
  object_.reset();
  bus_fd_.reset();
  connection_.reset();
}

std::unique_ptr<DbusApi> DbusApi::open(asio::io_context& io, Bus bus,
                                       const std::string& deployment,
                                       ManagementServer::Handler handler, std::string* error) {
  std::unique_ptr<DbusApi> api(new DbusApi(io, deployment, std::move(handler)));
  try {
    api->connect(bus);
  } catch (const sdbus::Error& failure) {
    *error = failure.getMessage() + " (" + failure.getName() + ")";
    return nullptr;
  }
  if (!api->bus_fd_) {
    *error = std::string("cannot watch the bus connection: ") + std::strerror(errno);
    return nullptr;
  }
  api->pump();
  return api;
}

// The object is exported before the name is requested: a client that sees the name can call.
void DbusApi::connect(Bus bus) {
  connection_ = bus == Bus::system ? sdbus::createSystemBusConnection()
                                   : sdbus::createSessionBusConnection();
  export_object();
  connection_->requestName(bus_name_);
  const int fd = fcntl(connection_->getEventLoopPollData().fd, F_DUPFD_CLOEXEC, 3);
  if (fd >= 0) bus_fd_ = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
}

void DbusApi::export_object() {
  object_ = sdbus::createObject(*connection_, dbus::object_path(deployment_));
  object_->registerMethod("Status").onInterface(kInterface).withOutputParamNames("status")
      .implementedAs([this](sdbus::Result<std::string>&& result) {
        call(std::move(result), dbus::status_request(), [](auto& done, const json::Value& reply) {
          const json::Value* status = json::find(reply, "status");
          done.returnResults(status ? json::dump(*status) : std::string("{}"));
        });
      });
  auto no_results = [](auto& done, const json::Value&) { done.returnResults(); };
  object_->registerMethod("Scale").onInterface(kInterface).withInputParamNames("counts")
      .implementedAs([this, no_results](sdbus::Result<>&& result,
                                        std::map<std::string, std::uint32_t> counts) {
        call(std::move(result), dbus::scale_request(counts), no_results);
      });
  object_->registerMethod("Restart").onInterface(kInterface).withInputParamNames("services")
      .implementedAs([this, no_results](sdbus::Result<>&& result, std::vector<std::string> names) {
        call(std::move(result), dbus::restart_request(names), no_results);
      });
  object_->registerMethod("Reload").onInterface(kInterface).withInputParamNames("file")
      .implementedAs([this, no_results](sdbus::Result<>&& result, std::string file) {
        call(std::move(result), dbus::reload_request(file), no_results);
      });
  auto renewing = [](auto& done, const json::Value& reply) {  // the services lego runs for
    std::vector<std::string> names;
    if (const json::Value* list = json::find(reply, "services"); list && list->is_array()) {
      for (const auto& item : json::as_array(*list)) names.push_back(json::as_string(item));
    }
    done.returnResults(names);
  };
  object_->registerMethod("Renew").onInterface(kInterface).withInputParamNames("services")
      .withOutputParamNames("services")
      .implementedAs([this, renewing](sdbus::Result<std::vector<std::string>>&& result,
                                      std::vector<std::string> names) {
        call(std::move(result), dbus::renew_request(names), renewing);
      });
  object_->registerMethod("Down").onInterface(kInterface)
      .implementedAs([this, no_results](sdbus::Result<>&& result) {
        call(std::move(result), dbus::down_request(), no_results);
      });
  object_->registerSignal("ReplicaStateChanged").onInterface(kInterface)
      .withParameters<std::string, std::string, std::string, std::string>(
          "replica", "old_state", "new_state", "reason");
  object_->registerSignal("Event").onInterface(kInterface)
      .withParameters<std::uint64_t, std::int64_t, std::string, std::string, std::string,
                      std::string, std::vector<std::string>>(
          "seq", "time_ms", "kind", "service", "replica", "message", "lines");
  object_->registerProperty("Name").onInterface(kInterface)
      .withGetter([this] { return deployment_; })
      .withUpdateBehavior(sdbus::Flags::CONST_PROPERTY_VALUE);
  object_->registerProperty("State").onInterface(kInterface)
      .withGetter([this] { return snapshot_.state; });
  object_->registerProperty("DesiredReplicas").onInterface(kInterface)
      .withGetter([this] { return total(snapshot_.services, &ServiceCounts::desired); });
  object_->registerProperty("ReadyReplicas").onInterface(kInterface)
      .withGetter([this] { return total(snapshot_.services, &ServiceCounts::ready); });
  object_->registerProperty("DesiredByService").onInterface(kInterface)
      .withGetter([this] { return by_service(snapshot_.services, &ServiceCounts::desired); });
  object_->registerProperty("ReadyByService").onInterface(kInterface)
      .withGetter([this] { return by_service(snapshot_.services, &ServiceCounts::ready); });
  object_->finishRegistration();
}

// The call is answered when the supervisor replies, possibly long after this returns.
template <typename Result, typename Completer>
void DbusApi::call(Result&& result, json::Value request, Completer complete) {
  const std::uint64_t id = next_call_++;
  auto shared = std::make_shared<std::decay_t<Result>>(std::move(result));
  pending_[id] = [shared, complete](const json::Value& response) {
    if (auto error = dbus::error_reply(response)) {
      shared->returnError(sdbus::Error(error->name, error->message));
    } else {
      complete(*shared, response);
    }
  };
  handler_(request, [alive = std::weak_ptr<DbusApi*>(alive_), id](const json::Value& response) {
    if (auto self = alive.lock()) (*self)->finish_call(id, response);
  });
}

void DbusApi::finish_call(std::uint64_t id, const json::Value& response) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  auto answer = std::move(it->second);
  pending_.erase(it);
  if (failed_) return;
  try {
    answer(response);
  } catch (const sdbus::Error& failure) {
    spdlog::warn("D-Bus: cannot send a reply: {}", failure.getMessage());
  }
  pump_soon();
}

void DbusApi::event(const DeploymentEvent& event) {
  if (failed_) return;
  try {
    object_->emitSignal("Event").onInterface(kInterface)
        .withArguments(event.seq, event.time_ms, event.kind, event.service, event.replica,
                       event.message, event.lines);
  } catch (const sdbus::Error& failure) {
    fail("cannot emit Event: " + failure.getMessage());
    return;
  }
  pump_soon();
}

void DbusApi::replica_state_changed(const std::string& replica, std::string_view old_state,
                                    std::string_view new_state, const std::string& reason) {
  if (failed_) return;
  try {
    object_->emitSignal("ReplicaStateChanged").onInterface(kInterface)
        .withArguments(replica, std::string(old_state), std::string(new_state), reason);
  } catch (const sdbus::Error& failure) {
    fail("cannot emit ReplicaStateChanged: " + failure.getMessage());
    return;
  }
  pump_soon();
}

void DbusApi::publish(const DbusSnapshot& snapshot) {
  if (snapshot == snapshot_) return;
  std::vector<std::string> changed;
  if (snapshot.state != snapshot_.state) changed.push_back("State");
  for (auto [field, total_name, map_name] :
       {std::tuple{&ServiceCounts::desired, "DesiredReplicas", "DesiredByService"},
        std::tuple{&ServiceCounts::ready, "ReadyReplicas", "ReadyByService"}}) {
    if (total(snapshot.services, field) != total(snapshot_.services, field)) {
      changed.push_back(total_name);
    }
    if (by_service(snapshot.services, field) != by_service(snapshot_.services, field)) {
      changed.push_back(map_name);
    }
  }
  snapshot_ = snapshot;
  if (failed_ || changed.empty()) return;
  try {
    object_->emitPropertiesChangedSignal(kInterface, changed);
  } catch (const sdbus::Error& failure) {
    fail("cannot emit PropertiesChanged: " + failure.getMessage());
    return;
  }
  pump_soon();
}

// ---- the bus connection on the Asio loop ------------------------------------------------------

void DbusApi::pump() {
  pump_posted_ = false;
  if (failed_) return;
  try {
    int processed = 0;
    while (processed < kMaxMessagesPerTurn && connection_->processPendingRequest()) ++processed;
    if (processed == kMaxMessagesPerTurn) {
      pump_soon();
    } else {
      wait_for_bus();
    }
  } catch (const sdbus::Error& failure) {
    fail(failure.getMessage());
  }
}

void DbusApi::pump_soon() {
  if (pump_posted_ || failed_) return;
  pump_posted_ = true;
  asio::post(io_, [alive = std::weak_ptr<DbusApi*>(alive_)] {
    if (auto self = alive.lock()) (*self)->pump();
  });
}

// Waits for what sd-bus asked for; the first of them to happen pumps again.
void DbusApi::wait_for_bus() {
  const auto poll_data = connection_->getEventLoopPollData();
  const auto generation = ++wait_generation_;
  boost::system::error_code ignored;
  bus_fd_->cancel(ignored);
  timeout_.cancel();
  auto on_event = [alive = std::weak_ptr<DbusApi*>(alive_), generation](
                      boost::system::error_code ec) {
    auto self = alive.lock();
    if (!self || ec == asio::error::operation_aborted) return;
    if (generation == (*self)->wait_generation_) (*self)->pump();
  };
  if (poll_data.events & POLLIN) {
    bus_fd_->async_wait(asio::posix::stream_descriptor::wait_read, on_event);
  }
  if (poll_data.events & POLLOUT) {
    bus_fd_->async_wait(asio::posix::stream_descriptor::wait_write, on_event);
  }
  if (poll_data.timeout_usec != std::numeric_limits<std::uint64_t>::max()) {
    // sd-bus gives an absolute CLOCK_MONOTONIC time, the clock of steady_clock on Linux.
    timeout_.expires_at(std::chrono::steady_clock::time_point(
        std::chrono::microseconds(poll_data.timeout_usec)));
    timeout_.async_wait(on_event);
  }
}

void DbusApi::fail(const std::string& what) {
  if (failed_) return;
  failed_ = true;
  spdlog::warn("D-Bus: {}; the D-Bus API of {} is off from now on", what, deployment_);
  boost::system::error_code ignored;
  bus_fd_->cancel(ignored);
  timeout_.cancel();
}

}  // namespace deployctl
