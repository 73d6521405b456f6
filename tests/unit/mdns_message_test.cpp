// mDNS query building and answer parsing (RFC 6762) for `.local` candidates: no sockets.
#include "impl/mdns_message.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace icepunch::impl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kName = "1f4712db-ea17-4bcf-a596-105139dfd8bf.local";

// A DNS message written field by field, so each test shows the bytes it sends.
class Packet {
public:
    Packet& u8(uint8_t v) {
        bytes_.push_back(v);
        return *this;
    }
    Packet& u16(uint16_t v) { return u8(static_cast<uint8_t>(v >> 8)).u8(static_cast<uint8_t>(v)); }
    Packet& u32(uint32_t v) {
        return u16(static_cast<uint16_t>(v >> 16)).u16(static_cast<uint16_t>(v));
    }
    // id 0, the given flags and section counts.
    Packet& header(uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns = 0, uint16_t ar = 0) {
        return u16(0).u16(flags).u16(qd).u16(an).u16(ns).u16(ar);
    }
    Packet& response(uint16_t qd, uint16_t an, uint16_t ns = 0, uint16_t ar = 0) {
        return header(0x8400, qd, an, ns, ar); // QR and AA, as responders send
    }
    // Labels only, ending with the root unless `root` is false (a pointer follows).
    Packet& name(const std::string& dotted, bool root = true) {
        std::size_t start = 0;
        while (start <= dotted.size()) {
            std::size_t dot = dotted.find('.', start);
            if (dot == std::string::npos) {
                dot = dotted.size();
            }
            u8(static_cast<uint8_t>(dot - start));
            bytes_.insert(bytes_.end(), dotted.begin() + static_cast<long>(start),
                          dotted.begin() + static_cast<long>(dot));
            start = dot + 1;
        }
        return root ? u8(0) : *this;
    }
    Packet& pointer(uint16_t offset) { return u16(static_cast<uint16_t>(0xC000 | offset)); }
    // Type, class, TTL and rdlength after an owner name already written.
    Packet& fixed(uint16_t type, uint16_t cls, uint32_t ttl, uint16_t rdlength) {
        return u16(type).u16(cls).u32(ttl).u16(rdlength);
    }
    Packet& a(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t cls = 0x8001,
              uint32_t ttl = 120) {
        return fixed(1, cls, ttl, 4).u8(a).u8(b).u8(c).u8(d);
    }
    Packet& aaaa(std::vector<uint8_t> address, uint16_t cls = 0x8001) {
        fixed(28, cls, 120, static_cast<uint16_t>(address.size()));
        bytes_.insert(bytes_.end(), address.begin(), address.end());
        return *this;
    }
    Packet& question(const std::string& dotted, uint16_t type = 1) {
        return name(dotted).u16(type).u16(0x0001);
    }
    std::size_t size() const { return bytes_.size(); }
    const std::vector<uint8_t>& bytes() const { return bytes_; }

private:
    std::vector<uint8_t> bytes_;
};

const std::vector<uint8_t> kV6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};

Result<std::vector<std::string>> parse(const Packet& packet, const std::string& name = kName) {
    return parseMdnsAnswers(packet.bytes(), name);
}

std::vector<std::string> addresses(const Packet& packet, const std::string& name = kName) {
    auto result = parse(packet, name);
    EXPECT_TRUE(result.ok()) << result.error().message;
    return result.ok() ? *result : std::vector<std::string>{};
}

TEST(MdnsMessage, QueryAsksForAAndAaaaWithTheQuBit) {
    auto query = buildMdnsQuery("Host-1.local", 0);
    Packet expected;
    expected.header(0x0000, 2, 0)
        .name("Host-1.local") // case kept on the wire
        .u16(1)
        .u16(0x8001) // A, IN with QU
        .pointer(12)
        .u16(28)
        .u16(0x8001); // AAAA, the same name
    EXPECT_EQ(query, expected.bytes());
}

TEST(MdnsMessage, QueryCarriesTheId) {
    auto query = buildMdnsQuery(kName, 0xBEEF);
    ASSERT_GE(query.size(), 12u);
    EXPECT_EQ(query[0], 0xBE);
    EXPECT_EQ(query[1], 0xEF);
}

TEST(MdnsMessage, QueryParsesBackAsNoAnswers) {
    // Our own query, looped back or seen from another querier: a query, not a response.
    auto query = buildMdnsQuery(kName, 7);
    ASSERT_FALSE(query.empty());
    auto result = parseMdnsAnswers(query, kName);
    ASSERT_TRUE(result.ok()) << result.error().message;
    EXPECT_THAT(*result, IsEmpty());
}

TEST(MdnsMessage, AnswerToTheQueryRoundTrips) {
    // A legacy unicast answer repeats the question; the answer's owner points at it.
    auto query = buildMdnsQuery(kName, 0x1234);
    std::vector<uint8_t> reply = query;
    reply[2] = 0x84; // QR, AA
    reply[7] = 1;    // one answer
    Packet record;
    record.pointer(12).a(192, 0, 2, 7);
    reply.insert(reply.end(), record.bytes().begin(), record.bytes().end());
    auto result = parseMdnsAnswers(reply, kName);
    ASSERT_TRUE(result.ok()) << result.error().message;
    EXPECT_THAT(*result, ElementsAre("192.0.2.7"));
}

TEST(MdnsMessage, ValidNames) {
    std::string label63(63, 'x');
    // 3 labels of 63 and one of 55, then "local": 4 * 64 - 8 + 6 + 1 = 255 octets.
    std::string longest =
        label63 + "." + label63 + "." + label63 + "." + std::string(55, 'y') + ".local";
    for (const std::string& name :
         {kName, std::string("a.local"), std::string("A.LOCAL"), std::string("a.b.Local."),
          label63 + ".local", longest, std::string("caf\xc3\xa9.local")}) {
        EXPECT_TRUE(validateMdnsName(name).ok()) << name;
        EXPECT_FALSE(buildMdnsQuery(name, 0).empty()) << name;
    }
}

TEST(MdnsMessage, InvalidNames) {
    std::string label63(63, 'x');
    std::string tooLong = label63 + "." + label63 + "." + label63 + "." + std::string(56, 'y') +
                          ".local"; // 256 octets
    for (const std::string& name :
         {std::string(), std::string("local"), std::string(".local"), std::string("a.local.."),
          std::string("a..local"), std::string("example.com"), std::string("a.localhost"),
          std::string("a.local.com"), std::string(64, 'x') + ".local", tooLong,
          std::string("a b.local"), std::string("a\nb.local"), std::string("a\0b.local", 9)}) {
        auto status = validateMdnsName(name);
        EXPECT_FALSE(status.ok()) << name;
        EXPECT_EQ(status.error().code, ErrorCode::InvalidArgument) << name;
        EXPECT_TRUE(buildMdnsQuery(name, 0).empty()) << name;
        auto parsed = parseMdnsAnswers(std::vector<uint8_t>(12, 0), name);
        ASSERT_FALSE(parsed.ok()) << name;
        EXPECT_EQ(parsed.error().code, ErrorCode::InvalidArgument);
    }
    auto status = validateMdnsName("host.example.com");
    EXPECT_THAT(status.error().message, HasSubstr("\"host.example.com\""));
    EXPECT_THAT(status.error().message, HasSubstr(".local"));
    // A peer's bytes never reach a message unescaped.
    EXPECT_THAT(validateMdnsName("a\x1b[2Jb.local").error().message, HasSubstr("a?[2Jb.local"));
}

TEST(MdnsMessage, AnswerAsBrowsersSend) {
    // No question, one A record with the cache-flush bit, as Chrome's responder answers.
    Packet packet;
    packet.response(0, 1).name(kName).a(192, 168, 1, 23);
    EXPECT_THAT(addresses(packet), ElementsAre("192.168.1.23"));
}

TEST(MdnsMessage, CompressedOwnerNames) {
    Packet packet;
    packet.response(1, 2).question(kName);
    packet.pointer(12).a(10, 0, 0, 1); // the whole name
    packet
        .name("1f4712db-ea17-4bcf-a596-105139dfd8bf", false) // a label, then "local" from
        .pointer(static_cast<uint16_t>(12 + 1 + 36))         // the question
        .a(10, 0, 0, 2);
    EXPECT_THAT(addresses(packet), ElementsAre("10.0.0.1", "10.0.0.2"));
}

TEST(MdnsMessage, PointerChainsAreFollowed) {
    Packet packet;
    packet.response(2, 1).question("local"); // offset 12: "local"
    std::size_t second = packet.size();
    packet.name("host", false).pointer(12).u16(1).u16(1); // "host" + -> "local"
    packet.pointer(static_cast<uint16_t>(second)).a(10, 1, 2, 3);
    EXPECT_THAT(addresses(packet, "host.local"), ElementsAre("10.1.2.3"));
}

TEST(MdnsMessage, AaaaInTheAdditionalSection) {
    Packet packet;
    packet.response(0, 1, 0, 1).name(kName).a(192, 0, 2, 1).pointer(12).aaaa(kV6);
    EXPECT_THAT(addresses(packet), ElementsAre("192.0.2.1", "2001:db8::1"));
}

TEST(MdnsMessage, NamesCompareWithoutCase) {
    Packet packet;
    packet.response(0, 1).name("1F4712DB-EA17-4BCF-A596-105139DFD8BF.LoCaL").a(192, 0, 2, 9);
    EXPECT_THAT(addresses(packet), ElementsAre("192.0.2.9"));
    EXPECT_THAT(addresses(packet, "1f4712db-EA17-4bcf-a596-105139dfd8bf.LOCAL."),
                ElementsAre("192.0.2.9"));
}

TEST(MdnsMessage, OtherNamesAreIgnored) {
    Packet packet;
    packet.response(0, 4)
        .name("other.local")
        .a(192, 0, 2, 1)
        .name("x" + kName) // a longer first label
        .a(192, 0, 2, 2)
        .name("sub." + kName)
        .a(192, 0, 2, 3)
        .name(kName)
        .a(192, 0, 2, 4);
    EXPECT_THAT(addresses(packet), ElementsAre("192.0.2.4"));
    EXPECT_THAT(addresses(packet, "missing.local"), IsEmpty());
}

TEST(MdnsMessage, OnlyAddressRecordsOfClassInCount) {
    Packet packet;
    packet.response(0, 4)
        .name(kName)
        .fixed(16, 0x8001, 120, 3) // TXT
        .u8(2)
        .u8('h')
        .u8('i')
        .pointer(12)
        .fixed(1, 0x0003, 120, 2) // CHAOS class: its A records are not addresses
        .u16(0x0A00)
        .pointer(12)
        .fixed(1, 0x00FF, 120, 4) // ANY class: not an IN record either
        .u32(0x0A000001)
        .pointer(12)
        .a(192, 0, 2, 5, 0x0001); // no cache-flush bit
    EXPECT_THAT(addresses(packet), ElementsAre("192.0.2.5"));
}

TEST(MdnsMessage, GoodbyeAndAuthorityRecordsAreLeftOut) {
    Packet packet;
    packet.response(0, 2, 1, 0)
        .name(kName)
        .a(192, 0, 2, 1, 0x8001, 0) // TTL 0: the address is going away
        .pointer(12)
        .a(192, 0, 2, 2)
        .pointer(12) // authority: a prober's proposed record, not an answer
        .a(192, 0, 2, 3);
    EXPECT_THAT(addresses(packet), ElementsAre("192.0.2.2"));
}

TEST(MdnsMessage, DuplicatesAreMerged) {
    Packet packet;
    packet.response(0, 2, 0, 2)
        .name(kName)
        .a(192, 0, 2, 1)
        .pointer(12)
        .aaaa(kV6)
        .pointer(12)
        .a(192, 0, 2, 1)
        .pointer(12)
        .aaaa(kV6);
    EXPECT_THAT(addresses(packet), ElementsAre("192.0.2.1", "2001:db8::1"));
}

TEST(MdnsMessage, QueriesAndErrorResponsesAreIgnored) {
    for (uint16_t flags : {0x0000, 0x0400, 0x8403, 0xA400 /* opcode 4 */}) {
        Packet packet;
        packet.header(flags, 0, 1).name(kName).a(192, 0, 2, 1);
        EXPECT_THAT(addresses(packet), IsEmpty()) << flags;
    }
}

TEST(MdnsMessage, TrailingBytesAreIgnored) {
    Packet packet;
    packet.response(0, 1).name(kName).a(192, 0, 2, 1).u32(0xDEADBEEF);
    EXPECT_THAT(addresses(packet), ElementsAre("192.0.2.1"));
}

TEST(MdnsMessage, EveryTruncationFailsCleanly) {
    Packet packet;
    packet.response(1, 1, 0, 1).question(kName).pointer(12).a(192, 0, 2, 1).pointer(12).aaaa(kV6);
    ASSERT_THAT(addresses(packet), ElementsAre("192.0.2.1", "2001:db8::1"));
    for (std::size_t n = 0; n < packet.size(); ++n) {
        std::vector<uint8_t> cut(packet.bytes().begin(),
                                 packet.bytes().begin() + static_cast<long>(n));
        auto result = parseMdnsAnswers(cut, kName);
        ASSERT_FALSE(result.ok()) << n;
        EXPECT_EQ(result.error().code, ErrorCode::Malformed) << n;
    }
}

struct MalformedCase {
    const char* what;
    Packet packet;
    const char* message; // part of the error message
};

std::vector<MalformedCase> malformedCases() {
    std::string label63(63, 'x');
    std::vector<MalformedCase> cases;
    auto add = [&](const char* what, Packet packet, const char* message) {
        cases.push_back({what, std::move(packet), message});
    };
    add("empty packet", Packet(), "shorter than a DNS header");
    add("truncated header", Packet().u16(0).u16(0x8400).u16(0).u16(1).u16(0).u8(0),
        "shorter than a DNS header");
    add("question count without a question", Packet().response(1, 0), "past the end");
    add("label running past the end", Packet().response(0, 1).u8(5).u8('a').u8('b'),
        "label runs past the end");
    add("name without its root label", Packet().response(0, 1).u8(1).u8('a'), "past the end");
    add("question cut after the name", Packet().response(1, 0).name(kName).u16(1),
        "question is cut off");
    add("answer count without an answer", Packet().response(0, 1), "past the end");
    add("record cut in its fixed part", Packet().response(0, 1).name(kName).u16(1).u16(1).u16(0),
        "record is cut off");
    add("rdlength past the end", Packet().response(0, 1).name(kName).fixed(1, 1, 120, 4).u16(0),
        "data runs past the end");
    add("rdlength past the end, other type",
        Packet().response(0, 1).name(kName).fixed(16, 1, 120, 300).u8(1), "data runs past the end");
    add("A record with rdlength 3",
        Packet().response(0, 1).name(kName).fixed(1, 0x8001, 120, 3).u8(1).u8(2).u8(3),
        "A record has 3 octets");
    add("A record with rdlength 16",
        Packet().response(0, 1).name(kName).fixed(1, 1, 120, 16).u32(1).u32(2).u32(3).u32(4),
        "A record has 16 octets");
    add("AAAA record with rdlength 4",
        Packet().response(0, 1).name(kName).fixed(28, 1, 120, 4).u32(0x0A000001),
        "AAAA record has 4 octets");
    add("bad A record of another name",
        Packet()
            .response(0, 2)
            .name("other.local")
            .fixed(1, 1, 120, 5)
            .u32(1)
            .u8(0)
            .name(kName)
            .a(192, 0, 2, 1),
        "A record has 5 octets");
    add("pointer to itself", Packet().response(0, 1).pointer(12).a(192, 0, 2, 1), "points forward");
    add("pointer loop through a label",
        Packet().response(1, 0).name("a", false).pointer(12).u16(1).u16(1), "points forward");
    add("two pointers pointing at each other",
        Packet().response(0, 2).pointer(14).pointer(12).a(192, 0, 2, 1), "points forward");
    add("pointer forward past the end", Packet().response(0, 1).pointer(0x3FFF).a(192, 0, 2, 1),
        "points forward");
    add("pointer forward inside the packet",
        Packet().response(0, 1).pointer(16).a(192, 0, 2, 1).name(kName), "points forward");
    add("pointer into the header",
        Packet().response(1, 1).question(kName).pointer(4).a(192, 0, 2, 1), "into the header");
    add("pointer cut off", Packet().response(0, 1).u8(0xC0), "pointer is cut off");
    add("reserved label type 0x40", Packet().response(0, 1).u8(0x41).u8('a').u8(0),
        "reserved type");
    add("reserved label type 0x80", Packet().response(0, 1).u8(0x81).u8('a').u8(0),
        "reserved type");
    add("name over 255 octets",
        Packet()
            .response(0, 1)
            .name(label63 + "." + label63 + "." + label63 + "." + label63 + ".local")
            .a(192, 0, 2, 1),
        "longer than 255");
    add("name over 255 octets through pointers",
        Packet()
            .response(1, 1)
            .question(label63 + "." + label63 + "." + label63 + ".local")
            .name(label63, false)
            .pointer(12)
            .a(192, 0, 2, 1),
        "longer than 255");
    add("counts far above the data",
        Packet().u16(0).u16(0x8400).u16(0xFFFF).u16(0xFFFF).u16(0xFFFF).u16(0xFFFF).question(kName),
        "past the end");
    return cases;
}

TEST(MdnsMessage, MalformedPacketsAreErrors) {
    auto cases = malformedCases();
    ASSERT_GE(cases.size(), 15u);
    for (const auto& c : cases) {
        auto result = parse(c.packet);
        ASSERT_FALSE(result.ok()) << c.what;
        EXPECT_EQ(result.error().code, ErrorCode::Malformed) << c.what;
        EXPECT_THAT(result.error().message, HasSubstr(c.message)) << c.what;
        EXPECT_THAT(result.error().message, HasSubstr("malformed mDNS packet")) << c.what;
    }
}

} // namespace
} // namespace icepunch::impl
