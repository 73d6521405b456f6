#include <icepunch/security.hpp>

#include "parse_util.hpp"

#include <array>
#include <utility>

namespace icepunch {

std::string_view toString(DtlsSetup setup) {
    switch (setup) {
    case DtlsSetup::ActPass:
        return "actpass";
    case DtlsSetup::Active:
        return "active";
    case DtlsSetup::Passive:
        return "passive";
    }
    return "actpass";
}

std::optional<DtlsSetup> parseDtlsSetup(std::string_view text) {
    text = detail::trimWhitespace(text);
    for (auto setup : {DtlsSetup::ActPass, DtlsSetup::Active, DtlsSetup::Passive}) {
        if (detail::equalsIgnoreCase(text, toString(setup))) {
            return setup;
        }
    }
    return std::nullopt; // "holdconn" (RFC 4145) and anything else: not a DTLS role
}

namespace {

// RFC 8122 hash-func names we can verify, with their digest sizes.
constexpr std::array<std::pair<std::string_view, std::size_t>, 5> kHashes{{
    {"sha-1", 20},
    {"sha-224", 28},
    {"sha-256", 32},
    {"sha-384", 48},
    {"sha-512", 64},
}};

int hexValue(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

} // namespace

Result<Fingerprint> Fingerprint::parse(std::string_view text) {
    auto tokens = detail::splitTokens(detail::trimWhitespace(text));
    if (tokens.size() != 2) {
        return Error{"fingerprint " + detail::quote(text) +
                         ": expected \"<hash> <hex pairs>\", e.g. \"sha-256 AB:CD:...\"",
                     ErrorCode::Malformed};
    }
    Fingerprint fp;
    fp.algorithm = detail::toLower(tokens[0]);
    std::size_t size = 0;
    for (auto [name, digest] : kHashes) {
        if (fp.algorithm == name) {
            size = digest;
        }
    }
    if (size == 0) {
        return Error{"fingerprint hash " + detail::quote(tokens[0]) +
                         " is not supported (sha-1, sha-224, sha-256, sha-384, sha-512)",
                     ErrorCode::Malformed};
    }
    std::string_view hex = tokens[1];
    if (hex.size() != size * 3 - 1) {
        return Error{"fingerprint " + detail::quote(hex) + ": a " + fp.algorithm + " value is " +
                         std::to_string(size) + " hex pairs separated by colons",
                     ErrorCode::Malformed};
    }
    constexpr char kDigits[] = "0123456789ABCDEF";
    for (std::size_t i = 0; i < size; ++i) {
        int high = hexValue(hex[i * 3]);
        int low = hexValue(hex[i * 3 + 1]);
        if (high < 0 || low < 0 || (i + 1 < size && hex[i * 3 + 2] != ':')) {
            return Error{"fingerprint " + detail::quote(hex) +
                             ": not hex pairs separated by colons",
                         ErrorCode::Malformed};
        }
        if (i) {
            fp.value += ':';
        }
        fp.value += kDigits[high];
        fp.value += kDigits[low];
    }
    return fp;
}

std::string Fingerprint::toString() const {
    return algorithm + " " + value;
}

// RFC 7983 section 7: 0-3 STUN, 16-19 ZRTP, 20-63 DTLS, 64-79 TURN channel, 128-191 RTP/RTCP.
PacketKind classifyPacket(std::byte first) {
    auto b = std::to_integer<unsigned>(first);
    if (b <= 3) {
        return PacketKind::Stun;
    }
    if (b >= 20 && b <= 63) {
        return PacketKind::Dtls;
    }
    if (b >= 128 && b <= 191) {
        return PacketKind::Rtp;
    }
    return PacketKind::Other;
}

} // namespace icepunch
