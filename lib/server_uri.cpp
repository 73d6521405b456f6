#include <icepunch/server_uri.hpp>

#include "parse_util.hpp"

#include <ostream>

namespace icepunch {

namespace {

using detail::quote;

Error fail(std::string_view uri, const std::string& what) {
    return Error{"server URI " + quote(uri) + ": " + what};
}

std::string_view schemeName(UriScheme scheme) {
    switch (scheme) {
    case UriScheme::Stun:
        return "stun";
    case UriScheme::Stuns:
        return "stuns";
    case UriScheme::Turn:
        return "turn";
    case UriScheme::Turns:
        return "turns";
    }
    return "unknown";
}

} // namespace

Result<ServerUri> ServerUri::parse(std::string_view text) {
    const std::string_view uri = detail::trimWhitespace(text);
    if (uri.empty()) {
        return Error{"server URI is empty"};
    }

    ServerUri result;
    std::size_t colon = uri.find(':');
    if (colon == std::string_view::npos) {
        return fail(uri, "missing scheme (expected stun:, stuns:, turn: or turns:)");
    }
    std::string_view scheme = uri.substr(0, colon);
    if (detail::equalsIgnoreCase(scheme, "stun")) {
        result.scheme = UriScheme::Stun;
    } else if (detail::equalsIgnoreCase(scheme, "stuns")) {
        result.scheme = UriScheme::Stuns;
    } else if (detail::equalsIgnoreCase(scheme, "turn")) {
        result.scheme = UriScheme::Turn;
    } else if (detail::equalsIgnoreCase(scheme, "turns")) {
        result.scheme = UriScheme::Turns;
    } else {
        return fail(uri, "unsupported scheme " + quote(scheme) +
                             " (expected stun, stuns, turn or turns)");
    }
    std::string_view rest = uri.substr(colon + 1);

    if (rest.starts_with("//")) {
        return fail(uri, "\"//\" is not part of STUN/TURN URIs (write " +
                             std::string(schemeName(result.scheme)) + ":host[:port])");
    }
    if (rest.find('#') != std::string_view::npos) {
        return fail(uri, "fragments (\"#...\") are not allowed");
    }
    std::string_view query;
    bool hasQuery = false;
    if (std::size_t question = rest.find('?'); question != std::string_view::npos) {
        query = rest.substr(question + 1);
        rest = rest.substr(0, question);
        hasQuery = true;
    }
    if (rest.find('@') != std::string_view::npos) {
        return fail(uri, "user info (\"user@\") is not allowed; give TURN credentials in the "
                         "configuration, not in the URI");
    }
    if (rest.find('/') != std::string_view::npos) {
        return fail(uri, "a path (\"/...\") is not allowed");
    }

    std::string_view host;
    std::string_view portText;
    bool hasPort = false;
    if (rest.starts_with("[")) {
        std::size_t close = rest.find(']');
        if (close == std::string_view::npos) {
            return fail(uri, "IPv6 literal without closing \"]\"");
        }
        host = rest.substr(1, close - 1);
        if (!detail::isIpv6Literal(host)) {
            return fail(uri, "invalid IPv6 literal " + quote(host));
        }
        std::string_view after = rest.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                return fail(uri, "unexpected " + quote(after) + " after \"]\"");
            }
            portText = after.substr(1);
            hasPort = true;
        }
    } else {
        std::size_t portColon = rest.find(':');
        host = rest.substr(0, portColon);
        if (portColon != std::string_view::npos) {
            portText = rest.substr(portColon + 1);
            hasPort = true;
            if (portText.find(':') != std::string_view::npos) {
                return fail(uri, "an IPv6 literal must be in brackets, e.g. stun:[2001:db8::1]");
            }
        }
        if (host.empty()) {
            return fail(uri, "missing host");
        }
        if (detail::looksLikeIpv4(host)) {
            if (!detail::isIpv4Literal(host)) {
                return fail(uri, "invalid IPv4 address " + quote(host));
            }
        } else if (!detail::isHostname(host)) {
            return fail(uri, "invalid host name " + quote(host) +
                                 " (expected letters, digits, '-' and '.')");
        }
    }
    result.host = std::string(host);

    if (hasPort) {
        auto port = detail::parseDecimal(portText, 1, 65535, 5);
        if (!port) {
            return fail(uri, "invalid port " + quote(portText) + " (expected 1..65535)");
        }
        result.port = static_cast<uint16_t>(*port);
    } else {
        result.port = defaultPort(result.scheme);
    }

    if (hasQuery) {
        if (!result.isTurn()) {
            return fail(uri, "stun: and stuns: URIs take no query (\"?...\")");
        }
        std::size_t equals = query.find('=');
        std::string_view key = query.substr(0, equals);
        if (equals == std::string_view::npos || !detail::equalsIgnoreCase(key, "transport")) {
            return fail(uri, "unsupported query " + quote(query) +
                                 " (only ?transport=udp or ?transport=tcp)");
        }
        std::string_view value = query.substr(equals + 1);
        if (detail::equalsIgnoreCase(value, "udp")) {
            result.transport = Transport::Udp;
        } else if (detail::equalsIgnoreCase(value, "tcp")) {
            result.transport = Transport::Tcp;
        } else {
            return fail(uri, "unsupported transport " + quote(value) + " (expected udp or tcp)");
        }
    }
    return result;
}

std::string ServerUri::toString() const {
    std::string out(schemeName(scheme));
    out += ':';
    out += isIpv6Literal() ? "[" + host + "]" : host;
    out += ':';
    out += std::to_string(port);
    if (transport) {
        out += *transport == Transport::Udp ? "?transport=udp" : "?transport=tcp";
    }
    return out;
}

bool ServerUri::isIpv6Literal() const {
    return host.find(':') != std::string::npos;
}

Transport ServerUri::effectiveTransport() const {
    if (transport) {
        return *transport;
    }
    return isSecure() ? Transport::Tcp : Transport::Udp;
}

uint16_t ServerUri::defaultPort(UriScheme scheme) {
    return scheme == UriScheme::Stuns || scheme == UriScheme::Turns ? 5349 : 3478;
}

std::ostream& operator<<(std::ostream& os, const ServerUri& uri) {
    return os << uri.toString();
}

} // namespace icepunch
