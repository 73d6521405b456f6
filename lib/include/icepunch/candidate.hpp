#pragma once

#include <icepunch/export.hpp>
#include <icepunch/result.hpp>

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace icepunch {

enum class CandidateType { Host, ServerReflexive, PeerReflexive, Relayed };
enum class Transport { Udp, Tcp };
// RFC 6544 tcptype; None for UDP candidates.
enum class TcpType { None, Active, Passive, SimultaneousOpen };

// "host", "srflx", "prflx", "relay" (the RFC 8839 tokens).
ICEPUNCH_EXPORT std::string_view toString(CandidateType type);
ICEPUNCH_EXPORT std::string_view toString(Transport transport);
ICEPUNCH_EXPORT std::string_view toString(TcpType tcpType);
ICEPUNCH_EXPORT std::ostream& operator<<(std::ostream& os, CandidateType type);
ICEPUNCH_EXPORT std::ostream& operator<<(std::ostream& os, Transport transport);
ICEPUNCH_EXPORT std::ostream& operator<<(std::ostream& os, TcpType tcpType);

// Whether a path through candidates of this type is direct (host, srflx, prflx) or relayed.
inline bool isRelayed(CandidateType type) {
    return type == CandidateType::Relayed;
}

// One ICE candidate: the value of an RFC 8839 "a=candidate:" attribute.
struct ICEPUNCH_EXPORT Candidate {
    std::string foundation;
    uint32_t component = 1;
    Transport transport = Transport::Udp;
    uint32_t priority = 0;
    std::string address; // IPv4 or IPv6 literal, or a hostname (e.g. mDNS ".local"), kept as given
    uint16_t port = 0;
    CandidateType type = CandidateType::Host;
    std::optional<std::string> relatedAddress;
    std::optional<uint16_t> relatedPort;
    TcpType tcpType = TcpType::None;
    // Extension attributes in input order (e.g. {"generation","0"}, {"network-id","1"}).
    std::vector<std::pair<std::string, std::string>> extensions;

    // Accepts "candidate:..." with or without a leading "a=" (and trailing CR/LF).
    static Result<Candidate> parse(std::string_view text);
    // Formats as "candidate:..." (no "a=" prefix).
    std::string toString() const;
    // Address and port as "ip:port", IPv6 in brackets.
    std::string endpoint() const;
    bool isIpv6() const;

    bool operator==(const Candidate&) const = default;
};

ICEPUNCH_EXPORT std::ostream& operator<<(std::ostream& os, const Candidate& candidate);

} // namespace icepunch
