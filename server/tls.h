// TLS for deploy-server: the OpenSSL server context (TLS 1.2 and 1.3, ALPN http/1.1, session
// cache and tickets, forward-secret AEAD ciphers only). The pure pieces are in tls_policy.h.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "tls_policy.h"

namespace deployctl::server {

// Loads the files into a server context; nullptr with *error ("tls: <file>: <reason>") when a
// file is missing, unreadable, not PEM, or the key does not belong to the certificate.
std::unique_ptr<boost::asio::ssl::context> make_tls_context(const TlsFiles& files,
                                                            std::string* error);

}  // namespace deployctl::server
