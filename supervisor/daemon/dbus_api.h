// The deployment's D-Bus object (org.deployctl.Supervisor1, see dbus_protocol.h): a thin
// sdbus-c++ adapter. Method calls become the management requests of commands.h and go to the
// supervisor's request handler; its reply completes the D-Bus call, so long operations never
// block. The bus connection is served by the caller's Asio loop: no thread of its own.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "asio.h"
#include "events.h"
#include "json.h"
#include "management.h"

namespace sdbus {
class IConnection;
class IObject;
}  // namespace sdbus

namespace deployctl {

struct ServiceCounts {
  std::string name;
  std::uint32_t desired = 0;
  std::uint32_t ready = 0;
  bool operator==(const ServiceCounts&) const = default;
};

// What the properties show.
struct DbusSnapshot {
  std::string state;  // starting | running | stopping
  std::vector<ServiceCounts> services;
  bool operator==(const DbusSnapshot&) const = default;
};

class DbusApi {
 public:
  enum class Bus { system, session };

  // Connects to `bus` (address from DBUS_SYSTEM_BUS_ADDRESS / DBUS_SESSION_BUS_ADDRESS or the
  // default), owns the deployment's well-known name and exports its object. Returns nullptr
  // with *error when no bus is reachable or the name cannot be owned. Not thread-safe: every
  // call, and every `handler` call, happens on `io`'s thread.
  static std::unique_ptr<DbusApi> open(boost::asio::io_context& io, Bus bus,
                                       const std::string& deployment,
                                       ManagementServer::Handler handler, std::string* error);
  ~DbusApi();
  DbusApi(const DbusApi&) = delete;
  DbusApi& operator=(const DbusApi&) = delete;

  const std::string& bus_name() const { return bus_name_; }

  // Emits ReplicaStateChanged.
  void replica_state_changed(const std::string& replica, std::string_view old_state,
                             std::string_view new_state, const std::string& reason);
  // Emits Event for one event of the event stream (events.h).
  void event(const DeploymentEvent& event);
  // Updates the properties; emits PropertiesChanged for those that differ.
  void publish(const DbusSnapshot& snapshot);

 private:
  DbusApi(boost::asio::io_context& io, std::string deployment, ManagementServer::Handler handler);
  void connect(Bus bus);  // throws sdbus::Error
  void export_object();
  template <typename Result, typename Completer>
  void call(Result&& result, json::Value request, Completer complete);
  void finish_call(std::uint64_t id, const json::Value& response);

  // The Asio side of the bus connection: process what is pending, then wait for what
  // sd-bus asks for (readable, writable, a deadline).
  void pump();
  void pump_soon();
  void wait_for_bus();
  void fail(const std::string& what);

  boost::asio::io_context& io_;
  std::string deployment_;
  std::string bus_name_;
  ManagementServer::Handler handler_;
  std::unique_ptr<sdbus::IConnection> connection_;
  std::unique_ptr<sdbus::IObject> object_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> bus_fd_;  // a dup: sd-bus keeps its own
  boost::asio::steady_timer timeout_;
  std::uint64_t wait_generation_ = 0;  // handlers of older waits are stale
  bool pump_posted_ = false;
  bool failed_ = false;
  DbusSnapshot snapshot_;
  // Calls waiting for the supervisor's reply, by id; destroyed before the connection.
  std::map<std::uint64_t, std::function<void(const json::Value&)>> pending_;
  std::uint64_t next_call_ = 0;
  std::shared_ptr<DbusApi*> alive_;  // replies hold a weak_ptr: no-ops once this is gone
};

}  // namespace deployctl
