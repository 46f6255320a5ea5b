// The top-level [metrics] table: where the supervisor serves GET /metrics (docs/metrics.md).
#include "listen_address.h"
#include "spec_fields.h"

namespace deployctl::detail {

void read_metrics(TableReader& root, const std::vector<ServiceSpec>& services,
                  MetricsSpec* metrics) {
  const toml::table* table =
      root.subtable("metrics", "a table such as [metrics] with listen = \"127.0.0.1:9464\"");
  if (!table) return;
  TableReader reader(*table, root.key_path("metrics"), root.diag(), {"listen"});
  std::string error;
  metrics->listen = parse_listen_address(MetricsSpec::kDefaultListen, 1, &error);
  auto text = reader.string("listen");
  if (!text) return;
  std::optional<ListenAddress> address = parse_listen_address(*text, 1, &error);
  if (!address) {
    reader.error_at("listen", "invalid listen address " + quote(*text) + ": " + error +
                                  " (expected \"HOST:PORT\" such as \"127.0.0.1:9464\")");
    return;
  }
  for (const auto& service : services) {
    for (const auto& taken : service.listen) {
      if (taken.host == address->host && taken.port == address->port) {
        reader.error_at("listen", quote(*text) + " is already a listen address of service " +
                                      quote(service.name) + "; choose another port");
        return;
      }
    }
  }
  metrics->listen = std::move(address);
}

}  // namespace deployctl::detail
