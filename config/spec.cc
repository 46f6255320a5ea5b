#include "spec.h"

#include <string_view>

namespace deployctl {

const ServiceSpec* Spec::find_service(std::string_view service_name) const {
  for (const ServiceSpec& service : services) {
    if (service.name == service_name) return &service;
  }
  return nullptr;
}

}  // namespace deployctl
