#include "impl/mdns_message.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstddef>

namespace icepunch::impl {

namespace {

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeAaaa = 28;
constexpr uint16_t kClassIn = 1;
constexpr uint16_t kClassTopBit = 0x8000; // QU in a question, cache-flush in a record
constexpr uint16_t kFlagResponse = 0x8000;
constexpr std::size_t kHeaderSize = 12;
constexpr std::size_t kMaxNameOctets = 255; // RFC 1035 3.1, length octets and the root included
constexpr std::size_t kMaxLabelOctets = 63;

uint8_t asciiLower(uint8_t c) {
    return c >= 'A' && c <= 'Z' ? static_cast<uint8_t>(c - 'A' + 'a') : c;
}

// The name as it may appear in a message: a peer's candidate can carry any bytes.
std::string printable(std::string_view text) {
    constexpr std::size_t kMax = 80;
    std::string out;
    for (char c : text.substr(0, kMax)) {
        auto u = static_cast<unsigned char>(c);
        out += u < 0x20 || u == 0x7f ? '?' : c;
    }
    if (text.size() > kMax) {
        out += "...";
    }
    return out;
}

// The uncompressed wire form of a valid mDNS name, as written (case kept).
Result<std::vector<uint8_t>> encodeName(std::string_view name) {
    auto invalid = [&](const std::string& why) {
        // Appended, not "lit" + std::string&&: g++ 12 -O3 warns (-Wrestrict) on that falsely.
        std::string message = "\"";
        message += printable(name);
        message += "\" is not an mDNS name: ";
        message += why;
        return Error{std::move(message), ErrorCode::InvalidArgument};
    };
    std::string_view rest = name;
    if (!rest.empty() && rest.back() == '.') {
        rest.remove_suffix(1);
    }
    std::vector<uint8_t> wire;
    std::string_view lastLabel;
    std::size_t labels = 0;
    while (true) {
        std::size_t dot = rest.find('.');
        std::string_view label = rest.substr(0, dot);
        if (label.empty()) {
            return invalid("it has an empty label");
        }
        if (label.size() > kMaxLabelOctets) {
            return invalid("a label is longer than 63 octets");
        }
        for (char c : label) {
            auto u = static_cast<unsigned char>(c);
            if (u <= 0x20 || u == 0x7f) {
                return invalid("it contains a space or a control character");
            }
        }
        wire.push_back(static_cast<uint8_t>(label.size()));
        wire.insert(wire.end(), label.begin(), label.end());
        lastLabel = label;
        ++labels;
        if (dot == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(dot + 1);
    }
    wire.push_back(0);
    if (wire.size() > kMaxNameOctets) {
        return invalid("it is longer than 255 octets");
    }
    auto isLocal = lastLabel.size() == 5 &&
                   std::equal(lastLabel.begin(), lastLabel.end(), "local", [](char a, char b) {
                       return asciiLower(static_cast<uint8_t>(a)) == static_cast<uint8_t>(b);
                   });
    if (!isLocal || labels < 2) {
        return invalid("it does not end in \".local\" (RFC 6762)");
    }
    return wire;
}

uint16_t read16(std::span<const uint8_t> p, std::size_t at) {
    return static_cast<uint16_t>(p[at] << 8 | p[at + 1]);
}

uint32_t read32(std::span<const uint8_t> p, std::size_t at) {
    return uint32_t(read16(p, at)) << 16 | read16(p, at + 2);
}

Error malformed(const std::string& why) {
    return Error{"malformed mDNS packet: " + why, ErrorCode::Malformed};
}

// Reads the name at `offset` into `wire` (uncompressed, lowercased) and moves `offset` past it
// (past its first compression pointer). Every pointer must point before the part of the name it
// is in, so the walk always ends; empty error text on success.
std::string readName(std::span<const uint8_t> p, std::size_t& offset, std::vector<uint8_t>& wire) {
    wire.clear();
    std::size_t pos = offset;
    std::size_t limit = offset;
    bool jumped = false;
    while (true) {
        if (pos >= p.size()) {
            return "a name runs past the end of the packet";
        }
        uint8_t length = p[pos];
        if ((length & 0xC0) == 0xC0) {
            if (pos + 1 >= p.size()) {
                return "a compression pointer is cut off";
            }
            std::size_t target = std::size_t(length & 0x3F) << 8 | p[pos + 1];
            if (target >= limit) {
                return "a compression pointer points forward (a loop or past the name)";
            }
            if (target < kHeaderSize) {
                return "a compression pointer points into the header";
            }
            if (!jumped) {
                offset = pos + 2;
                jumped = true;
            }
            pos = limit = target;
            continue;
        }
        if ((length & 0xC0) != 0) {
            return "a label has a reserved type";
        }
        if (length == 0) {
            wire.push_back(0);
            if (!jumped) {
                offset = pos + 1;
            }
            return {};
        }
        if (pos + 1 + length > p.size()) {
            return "a label runs past the end of the packet";
        }
        if (wire.size() + 1 + length + 1 > kMaxNameOctets) {
            return "a name is longer than 255 octets";
        }
        wire.push_back(length);
        for (std::size_t i = pos + 1; i <= pos + length; ++i) {
            wire.push_back(asciiLower(p[i]));
        }
        pos += 1 + length;
    }
}

} // namespace

Status validateMdnsName(std::string_view name) {
    auto wire = encodeName(name);
    if (!wire) {
        return wire.error();
    }
    return {};
}

std::vector<uint8_t> buildMdnsQuery(std::string_view name, uint16_t id) {
    auto wire = encodeName(name);
    if (!wire) {
        return {};
    }
    std::vector<uint8_t> query = {
        static_cast<uint8_t>(id >> 8),
        static_cast<uint8_t>(id),
        0,
        0, // id, flags: a query
        0,
        2,
        0,
        0,
        0,
        0,
        0,
        0, // two questions
    };
    auto question = [&](uint16_t type) {
        query.push_back(static_cast<uint8_t>(type >> 8));
        query.push_back(static_cast<uint8_t>(type));
        query.push_back(static_cast<uint8_t>((kClassIn | kClassTopBit) >> 8));
        query.push_back(static_cast<uint8_t>(kClassIn));
    };
    query.insert(query.end(), wire->begin(), wire->end());
    question(kTypeA);
    query.push_back(0xC0); // the same name again: a pointer to the first question's
    query.push_back(static_cast<uint8_t>(kHeaderSize));
    question(kTypeAaaa);
    return query;
}

Result<std::vector<std::string>> parseMdnsAnswers(std::span<const uint8_t> packet,
                                                  std::string_view name) {
    auto wanted = encodeName(name);
    if (!wanted) {
        return wanted.error();
    }
    std::transform(wanted->begin(), wanted->end(), wanted->begin(), asciiLower);
    if (packet.size() < kHeaderSize) {
        return malformed("shorter than a DNS header (" + std::to_string(packet.size()) +
                         " of 12 octets)");
    }
    uint16_t flags = read16(packet, 2);
    bool response = (flags & kFlagResponse) != 0;
    unsigned opcode = (flags >> 11) & 0xF;
    unsigned rcode = flags & 0xF;
    if (!response || opcode != 0 || rcode != 0) {
        return std::vector<std::string>{};
    }
    std::size_t questions = read16(packet, 4);
    std::size_t answers = read16(packet, 6);
    std::size_t authorities = read16(packet, 8);
    std::size_t additionals = read16(packet, 10);

    std::size_t pos = kHeaderSize;
    std::vector<uint8_t> owner;
    for (std::size_t i = 0; i < questions; ++i) {
        if (auto why = readName(packet, pos, owner); !why.empty()) {
            return malformed(why);
        }
        if (pos + 4 > packet.size()) {
            return malformed("a question is cut off");
        }
        pos += 4;
    }

    std::vector<std::string> addresses;
    std::size_t records = answers + authorities + additionals;
    for (std::size_t i = 0; i < records; ++i) {
        if (auto why = readName(packet, pos, owner); !why.empty()) {
            return malformed(why);
        }
        if (pos + 10 > packet.size()) {
            return malformed("a resource record is cut off");
        }
        uint16_t type = read16(packet, pos);
        uint16_t rclass = read16(packet, pos + 2) & ~kClassTopBit; // the cache-flush bit
        uint32_t ttl = read32(packet, pos + 4);
        std::size_t rdlength = read16(packet, pos + 8);
        pos += 10;
        if (pos + rdlength > packet.size()) {
            return malformed("a record's data runs past the end of the packet");
        }
        bool address = rclass == kClassIn && (type == kTypeA || type == kTypeAaaa);
        std::size_t expected = type == kTypeA ? 4 : 16;
        if (address && rdlength != expected) {
            return malformed(std::string(type == kTypeA ? "an A" : "an AAAA") + " record has " +
                             std::to_string(rdlength) + " octets of data, not " +
                             std::to_string(expected));
        }
        bool authority = i >= answers && i < answers + authorities; // probes' proposed records
        if (address && !authority && ttl != 0 && owner == *wanted) {
            char text[INET6_ADDRSTRLEN] = {};
            inet_ntop(type == kTypeA ? AF_INET : AF_INET6, packet.data() + pos, text, sizeof text);
            if (std::find(addresses.begin(), addresses.end(), text) == addresses.end()) {
                addresses.emplace_back(text);
            }
        }
        pos += rdlength;
    }
    return addresses;
}

} // namespace icepunch::impl
