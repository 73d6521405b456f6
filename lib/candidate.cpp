#include <icepunch/candidate.hpp>

#include "parse_util.hpp"

#include <ostream>

namespace icepunch {

namespace {

using detail::quote;

constexpr std::size_t kMaxFoundation = 32;

Error fail(const std::string& what) {
    return Error{"candidate: " + what};
}

std::string at(std::size_t index) {
    return " at token " + std::to_string(index + 1);
}

// Control bytes (tabs included) never belong inside an SDP token, and would not survive a
// format/parse round trip.
bool hasControlByte(std::string_view token) {
    for (char c : token) {
        auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) {
            return true;
        }
    }
    return false;
}

std::optional<std::string> checkAddress(std::string_view text) {
    if (!text.empty() && text.front() == '[') {
        return "must not be in brackets";
    }
    if (!detail::classifyAddress(text)) {
        return "is not an IPv4 or IPv6 address or a hostname";
    }
    return std::nullopt;
}

} // namespace

std::string_view toString(CandidateType type) {
    switch (type) {
    case CandidateType::Host:
        return "host";
    case CandidateType::ServerReflexive:
        return "srflx";
    case CandidateType::PeerReflexive:
        return "prflx";
    case CandidateType::Relayed:
        return "relay";
    }
    return "unknown";
}

std::string_view toString(Transport transport) {
    switch (transport) {
    case Transport::Udp:
        return "UDP";
    case Transport::Tcp:
        return "TCP";
    }
    return "unknown";
}

std::string_view toString(TcpType tcpType) {
    switch (tcpType) {
    case TcpType::None:
        return "none";
    case TcpType::Active:
        return "active";
    case TcpType::Passive:
        return "passive";
    case TcpType::SimultaneousOpen:
        return "so";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& os, CandidateType type) {
    return os << toString(type);
}
std::ostream& operator<<(std::ostream& os, Transport transport) {
    return os << toString(transport);
}
std::ostream& operator<<(std::ostream& os, TcpType tcpType) {
    return os << toString(tcpType);
}

Result<Candidate> Candidate::parse(std::string_view text) {
    std::string_view line = detail::trimWhitespace(text);
    if (line.starts_with("a=")) {
        line.remove_prefix(2);
    }
    constexpr std::string_view kPrefix = "candidate:";
    if (!line.starts_with(kPrefix)) {
        return fail("does not start with \"candidate:\" in " + quote(line));
    }
    line.remove_prefix(kPrefix.size());
    if (line.empty() || line.front() == ' ') {
        return fail("missing foundation right after \"candidate:\"");
    }

    const std::vector<std::string_view> tokens = detail::splitTokens(line);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (hasControlByte(tokens[i])) {
            return fail("control character in " + quote(tokens[i]) + at(i) +
                        " (tokens are separated by spaces)");
        }
    }
    static constexpr const char* kFieldNames[] = {"foundation", "component id",       "transport",
                                                  "priority",   "connection address", "port",
                                                  "\"typ\"",    "candidate type"};
    if (tokens.size() < std::size(kFieldNames)) {
        return fail("missing " + std::string(kFieldNames[tokens.size()]) + " (token " +
                    std::to_string(tokens.size() + 1) + ")");
    }

    Candidate c;
    std::string_view foundation = tokens[0];
    if (foundation.size() > kMaxFoundation) {
        return fail("foundation " + quote(foundation) + at(0) + " is too long (" +
                    std::to_string(foundation.size()) + " chars, max 32)");
    }
    if (auto bad = detail::findNonIceChar(foundation)) {
        return fail("foundation " + quote(foundation) + at(0) + " has invalid character " +
                    quote(foundation.substr(*bad, 1)) + " (expected ALPHA, DIGIT, '+' or '/')");
    }
    c.foundation = std::string(foundation);

    auto component = detail::parseDecimal(tokens[1], 1, 256, 3);
    if (!component) {
        return fail("invalid component id " + quote(tokens[1]) + at(1) + " (expected 1..256)");
    }
    c.component = static_cast<uint32_t>(*component);

    if (detail::equalsIgnoreCase(tokens[2], "udp")) {
        c.transport = Transport::Udp;
    } else if (detail::equalsIgnoreCase(tokens[2], "tcp")) {
        c.transport = Transport::Tcp;
    } else {
        return fail("unsupported transport " + quote(tokens[2]) + at(2) + " (expected UDP or TCP)");
    }

    auto priority = detail::parseDecimal(tokens[3], 1, UINT32_MAX, 10);
    if (!priority) {
        return fail("invalid priority " + quote(tokens[3]) + at(3) + " (expected 1..4294967295)");
    }
    c.priority = static_cast<uint32_t>(*priority);

    if (auto problem = checkAddress(tokens[4])) {
        return fail("connection address " + quote(tokens[4]) + at(4) + " " + *problem);
    }
    c.address = std::string(tokens[4]);

    auto port = detail::parseDecimal(tokens[5], 0, 65535, 5);
    if (!port) {
        return fail("invalid port " + quote(tokens[5]) + at(5) + " (expected 0..65535)");
    }
    c.port = static_cast<uint16_t>(*port);

    if (tokens[6] != "typ") {
        return fail("expected \"typ\"" + at(6) + ", got " + quote(tokens[6]));
    }
    if (tokens[7] == "host") {
        c.type = CandidateType::Host;
    } else if (tokens[7] == "srflx") {
        c.type = CandidateType::ServerReflexive;
    } else if (tokens[7] == "prflx") {
        c.type = CandidateType::PeerReflexive;
    } else if (tokens[7] == "relay") {
        c.type = CandidateType::Relayed;
    } else {
        return fail("unknown candidate type " + quote(tokens[7]) + at(7) +
                    " (expected host, srflx, prflx or relay)");
    }

    // After the type come name/value pairs; raddr, rport and tcptype are taken in any order.
    bool sawTcpType = false;
    for (std::size_t i = 8; i < tokens.size(); i += 2) {
        std::string_view name = tokens[i];
        if (i + 1 >= tokens.size()) {
            return fail("attribute " + quote(name) + at(i) + " has no value");
        }
        std::string_view value = tokens[i + 1];
        if (name == "raddr") {
            if (c.relatedAddress) {
                return fail("duplicate raddr" + at(i));
            }
            if (auto problem = checkAddress(value)) {
                return fail("related address " + quote(value) + at(i + 1) + " " + *problem);
            }
            c.relatedAddress = std::string(value);
        } else if (name == "rport") {
            if (c.relatedPort) {
                return fail("duplicate rport" + at(i));
            }
            auto relatedPort = detail::parseDecimal(value, 0, 65535, 5);
            if (!relatedPort) {
                return fail("invalid rport " + quote(value) + at(i + 1) + " (expected 0..65535)");
            }
            c.relatedPort = static_cast<uint16_t>(*relatedPort);
        } else if (name == "tcptype") {
            if (sawTcpType) {
                return fail("duplicate tcptype" + at(i));
            }
            sawTcpType = true;
            if (value == "active") {
                c.tcpType = TcpType::Active;
            } else if (value == "passive") {
                c.tcpType = TcpType::Passive;
            } else if (value == "so") {
                c.tcpType = TcpType::SimultaneousOpen;
            } else {
                return fail("invalid tcptype " + quote(value) + at(i + 1) +
                            " (expected active, passive or so)");
            }
        } else {
            c.extensions.emplace_back(std::string(name), std::string(value));
        }
    }

    if (c.relatedAddress && !c.relatedPort) {
        return fail("raddr without rport");
    }
    if (c.relatedPort && !c.relatedAddress) {
        return fail("rport without raddr");
    }
    if (c.transport == Transport::Tcp && c.tcpType == TcpType::None) {
        return fail("TCP candidate without tcptype (RFC 6544 requires it)");
    }
    if (c.transport == Transport::Udp && c.tcpType != TcpType::None) {
        return fail("tcptype on a UDP candidate");
    }
    // Active TCP candidates never listen, so their port carries no meaning (RFC 6544 sends 9;
    // some stacks send 0); anywhere else port 0 cannot be reached.
    if (c.port == 0 && c.tcpType != TcpType::Active) {
        return fail("port 0" + at(5) + " is only allowed for TCP active candidates");
    }
    return c;
}

std::string Candidate::toString() const {
    std::string out = "candidate:";
    out += foundation;
    out += ' ';
    out += std::to_string(component);
    out += ' ';
    out += icepunch::toString(transport);
    out += ' ';
    out += std::to_string(priority);
    out += ' ';
    out += address;
    out += ' ';
    out += std::to_string(port);
    out += " typ ";
    out += icepunch::toString(type);
    if (relatedAddress) {
        out += " raddr ";
        out += *relatedAddress;
    }
    if (relatedPort) {
        out += " rport ";
        out += std::to_string(*relatedPort);
    }
    if (tcpType != TcpType::None) {
        out += " tcptype ";
        out += icepunch::toString(tcpType);
    }
    for (const auto& [name, value] : extensions) {
        out += ' ';
        out += name;
        out += ' ';
        out += value;
    }
    return out;
}

std::string Candidate::endpoint() const {
    if (isIpv6()) {
        return "[" + address + "]:" + std::to_string(port);
    }
    return address + ":" + std::to_string(port);
}

bool Candidate::isIpv6() const {
    return address.find(':') != std::string::npos;
}

std::ostream& operator<<(std::ostream& os, const Candidate& candidate) {
    return os << candidate.toString();
}

} // namespace icepunch
