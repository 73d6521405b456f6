#pragma once

#include <icepunch/candidate.hpp>
#include <icepunch/export.hpp>
#include <icepunch/result.hpp>

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

namespace icepunch {

enum class UriScheme { Stun, Stuns, Turn, Turns };

// A STUN (RFC 7064) or TURN (RFC 7065) server URI:
//   stun:host[:port]  stuns:host[:port]  turn:host[:port][?transport=udp|tcp]  turns:...
// host is a hostname, an IPv4 literal or an IPv6 literal in brackets (stored without them).
struct ICEPUNCH_EXPORT ServerUri {
    UriScheme scheme = UriScheme::Stun;
    std::string host;
    uint16_t port = 0;                  // the explicit port, or the scheme's default
    std::optional<Transport> transport; // only from ?transport= on turn/turns

    static Result<ServerUri> parse(std::string_view text);
    std::string toString() const;

    bool isTurn() const { return scheme == UriScheme::Turn || scheme == UriScheme::Turns; }
    bool isSecure() const { return scheme == UriScheme::Stuns || scheme == UriScheme::Turns; }
    bool isIpv6Literal() const;
    // The transport to reach the server: the explicit one, else UDP for stun/turn, TCP for
    // stuns/turns (TLS over TCP).
    Transport effectiveTransport() const;
    // 3478 for stun/turn, 5349 for stuns/turns.
    static uint16_t defaultPort(UriScheme scheme);

    bool operator==(const ServerUri&) const = default;
};

ICEPUNCH_EXPORT std::ostream& operator<<(std::ostream& os, const ServerUri& uri);

} // namespace icepunch
