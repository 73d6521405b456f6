#pragma once

// A local plain-TCP endpoint bridged to a TURN server over TLS (OpenSSL), so that libnice's
// TURN-over-TCP (whose "TLS" relay type does no TLS in RFC 5245 mode) reaches a turns: server
// with its certificate verified. No GLib: one thread per bridge runs a poll() loop.

#include <icepunch/config.hpp>
#include <icepunch/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace icepunch::impl {

struct TlsBridgeOptions {
    std::string serverAddress; // resolved IP literal of the TURN server
    uint16_t serverPort = 5349;
    // SNI (hostnames only) and the name the certificate must match (hostname or IP literal);
    // tls.serverName overrides it, and with both empty the certificate must match serverAddress.
    std::string serverName;
    TlsOptions tls;
    // For the TCP connect and the TLS handshake together.
    std::chrono::milliseconds handshakeTimeout{5000};
    // Called on the bridge thread, once per failed or server-closed connection, with the reason
    // in words ("TLS certificate rejected: ...", "connection refused (server ...)", ...).
    std::function<void(const std::string& error)> onError;
};

class TlsBridge {
public:
    // Listens on a loopback TCP port chosen by the OS (127.0.0.1, or ::1 for an IPv6 server).
    // Fails for a bad server address, an unreadable CA file or a malformed pin.
    static Result<std::unique_ptr<TlsBridge>> start(TlsBridgeOptions options);

    // Closes the listener and every connection and joins the thread (without waiting for peers).
    ~TlsBridge();

    TlsBridge(const TlsBridge&) = delete;
    TlsBridge& operator=(const TlsBridge&) = delete;

    uint16_t localPort() const;
    std::string localAddress() const; // "127.0.0.1" or "::1"

private:
    struct Impl;
    explicit TlsBridge(std::unique_ptr<Impl> impl);

    std::unique_ptr<Impl> impl_;
};

} // namespace icepunch::impl
