#include <icepunch/candidate.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <sstream>
#include <string>

namespace icepunch {
namespace {

using ::testing::HasSubstr;

Candidate parseOk(std::string_view text) {
    auto result = Candidate::parse(text);
    EXPECT_TRUE(result.ok()) << text << "\n -> " << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : Candidate{};
}

void expectRoundTrip(const Candidate& c) {
    auto again = Candidate::parse(c.toString());
    ASSERT_TRUE(again.ok()) << c.toString() << "\n -> " << again.error().message;
    EXPECT_EQ(*again, c) << c.toString() << "\n vs " << again->toString();
}

TEST(CandidateTest, LibniceHostUdp) {
    Candidate c = parseOk("a=candidate:1 1 UDP 2013266431 192.168.1.10 46404 typ host\r\n");
    EXPECT_EQ(c.foundation, "1");
    EXPECT_EQ(c.component, 1u);
    EXPECT_EQ(c.transport, Transport::Udp);
    EXPECT_EQ(c.priority, 2013266431u);
    EXPECT_EQ(c.address, "192.168.1.10");
    EXPECT_EQ(c.port, 46404);
    EXPECT_EQ(c.type, CandidateType::Host);
    EXPECT_FALSE(c.relatedAddress);
    EXPECT_FALSE(c.relatedPort);
    EXPECT_EQ(c.tcpType, TcpType::None);
    EXPECT_TRUE(c.extensions.empty());
    EXPECT_EQ(c.endpoint(), "192.168.1.10:46404");
    EXPECT_FALSE(c.isIpv6());
    EXPECT_EQ(c.toString(), "candidate:1 1 UDP 2013266431 192.168.1.10 46404 typ host");
    expectRoundTrip(c);
}

TEST(CandidateTest, LibniceSrflxWithRelatedAddress) {
    Candidate c = parseOk("a=candidate:2 1 UDP 1677721855 203.0.113.5 46404 typ srflx raddr "
                          "192.168.1.10 rport 46404");
    EXPECT_EQ(c.type, CandidateType::ServerReflexive);
    EXPECT_EQ(c.relatedAddress, "192.168.1.10");
    EXPECT_EQ(c.relatedPort, 46404);
    expectRoundTrip(c);
}

TEST(CandidateTest, LibniceTcpActiveAndPassive) {
    Candidate active =
        parseOk("a=candidate:3 1 TCP 1015022079 192.168.1.10 9 typ host tcptype active");
    EXPECT_EQ(active.transport, Transport::Tcp);
    EXPECT_EQ(active.tcpType, TcpType::Active);
    EXPECT_EQ(active.port, 9);
    expectRoundTrip(active);

    Candidate passive =
        parseOk("a=candidate:4 1 TCP 1010827775 192.168.1.10 44617 typ host tcptype passive");
    EXPECT_EQ(passive.tcpType, TcpType::Passive);
    expectRoundTrip(passive);
}

TEST(CandidateTest, TcpSimultaneousOpen) {
    Candidate c = parseOk("candidate:5 1 TCP 1006633471 10.0.0.2 50123 typ host tcptype so");
    EXPECT_EQ(c.tcpType, TcpType::SimultaneousOpen);
    EXPECT_EQ(c.toString(), "candidate:5 1 TCP 1006633471 10.0.0.2 50123 typ host tcptype so");
    expectRoundTrip(c);
}

TEST(CandidateTest, TcpActivePortZeroAccepted) {
    Candidate c = parseOk("candidate:6 1 TCP 1015022079 192.168.1.10 0 typ host tcptype active");
    EXPECT_EQ(c.port, 0);
    expectRoundTrip(c);
}

TEST(CandidateTest, LibniceRelay) {
    Candidate c = parseOk(
        "candidate:7 1 UDP 16777215 198.51.100.7 50000 typ relay raddr 203.0.113.5 rport 46404");
    EXPECT_EQ(c.type, CandidateType::Relayed);
    EXPECT_TRUE(isRelayed(c.type));
    expectRoundTrip(c);
}

TEST(CandidateTest, ChromeSrflxWithExtensions) {
    Candidate c = parseOk("candidate:842163049 1 udp 1677729535 93.184.216.34 59148 typ srflx "
                          "raddr 0.0.0.0 rport 0 generation 0 ufrag sK8G network-id 1 "
                          "network-cost 10");
    EXPECT_EQ(c.foundation, "842163049");
    EXPECT_EQ(c.transport, Transport::Udp);
    EXPECT_EQ(c.relatedAddress, "0.0.0.0");
    EXPECT_EQ(c.relatedPort, 0);
    using Ext = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(
        c.extensions,
        (Ext{{"generation", "0"}, {"ufrag", "sK8G"}, {"network-id", "1"}, {"network-cost", "10"}}));
    EXPECT_EQ(c.toString(), "candidate:842163049 1 UDP 1677729535 93.184.216.34 59148 typ srflx "
                            "raddr 0.0.0.0 rport 0 generation 0 ufrag sK8G network-id 1 "
                            "network-cost 10");
    expectRoundTrip(c);
}

TEST(CandidateTest, ChromeTcpActive) {
    Candidate c = parseOk("candidate:3885250869 1 tcp 1518280447 192.168.1.5 9 typ host tcptype "
                          "active generation 0 network-id 1 network-cost 10");
    EXPECT_EQ(c.transport, Transport::Tcp);
    EXPECT_EQ(c.tcpType, TcpType::Active);
    EXPECT_EQ(c.extensions.size(), 3u);
    expectRoundTrip(c);
}

TEST(CandidateTest, ChromeIpv6Host) {
    Candidate c = parseOk("candidate:2999745851 1 udp 2122262783 2001:db8:85a3::8a2e:370:7334 "
                          "58481 typ host generation 0 ufrag EsAw network-id 2 network-cost 10");
    EXPECT_TRUE(c.isIpv6());
    EXPECT_EQ(c.address, "2001:db8:85a3::8a2e:370:7334");
    EXPECT_EQ(c.endpoint(), "[2001:db8:85a3::8a2e:370:7334]:58481");
    expectRoundTrip(c);
}

TEST(CandidateTest, ChromeMdnsHost) {
    Candidate c = parseOk("candidate:2462343291 1 udp 2113937151 "
                          "a1b2c3d4-e5f6-4a5b-8c9d-0e1f2a3b4c5d.local 54321 typ host generation 0 "
                          "ufrag EsAw network-cost 999");
    EXPECT_EQ(c.address, "a1b2c3d4-e5f6-4a5b-8c9d-0e1f2a3b4c5d.local");
    EXPECT_FALSE(c.isIpv6());
    EXPECT_EQ(c.endpoint(), "a1b2c3d4-e5f6-4a5b-8c9d-0e1f2a3b4c5d.local:54321");
    expectRoundTrip(c);
}

TEST(CandidateTest, FirefoxCandidates) {
    for (const char* line : {
             "candidate:0 1 UDP 2122252543 192.168.1.20 60000 typ host",
             "candidate:1 1 TCP 2105524479 192.168.1.20 9 typ host tcptype active",
             "candidate:2 1 UDP 1686052863 203.0.113.9 60000 typ srflx raddr 192.168.1.20 rport "
             "60000",
             "candidate:3 1 UDP 92217087 198.51.100.20 55000 typ relay raddr 198.51.100.20 rport "
             "55000",
             "candidate:0 2 UDP 2122252542 fd00::1234:5678 60001 typ host",
             "candidate:1 1 UDP 2122187007 9b36eaac-bb2e-49bb-bb78-21c41c499900.local 59411 typ "
             "host",
         }) {
        SCOPED_TRACE(line);
        expectRoundTrip(parseOk(line));
    }
}

TEST(CandidateTest, AioiceCandidates) {
    Candidate c = parseOk("candidate:6815297761f1b2e6c2e2d0f1a6a3ac4b 1 udp 2130706431 10.0.0.5 "
                          "50402 typ host");
    EXPECT_EQ(c.foundation.size(), 32u);
    expectRoundTrip(c);
    Candidate srflx = parseOk("candidate:a1ec1ab4d3c2e8e9a3f5bd3e4d7d2d01 1 udp 1694498815 "
                              "203.0.113.44 50402 typ srflx raddr 10.0.0.5 rport 50402");
    expectRoundTrip(srflx);
}

TEST(CandidateTest, PeerReflexiveAndOtherComponents) {
    Candidate c = parseOk(
        "candidate:x+/Y 256 UDP 4294967295 10.1.2.3 65535 typ prflx raddr 10.0.0.1 rport 1");
    EXPECT_EQ(c.type, CandidateType::PeerReflexive);
    EXPECT_EQ(c.component, 256u);
    EXPECT_EQ(c.priority, 4294967295u);
    EXPECT_EQ(c.port, 65535);
    expectRoundTrip(c);
}

TEST(CandidateTest, ToleratesSpacingAndLeadingZeros) {
    Candidate c = parseOk("  a=candidate:1  1   UDP 0100 192.168.1.10  080 typ  host \r\n");
    EXPECT_EQ(c.priority, 100u);
    EXPECT_EQ(c.port, 80);
    expectRoundTrip(c);
}

TEST(CandidateTest, TcptypeBeforeRelatedAddress) {
    Candidate c =
        parseOk("candidate:9 1 TCP 1518280447 203.0.113.5 40000 typ srflx tcptype passive "
                "raddr 10.0.0.5 rport 40000 generation 0");
    EXPECT_EQ(c.tcpType, TcpType::Passive);
    EXPECT_EQ(c.relatedPort, 40000);
    expectRoundTrip(c);
}

TEST(CandidateTest, EnumNames) {
    EXPECT_EQ(toString(CandidateType::Host), "host");
    EXPECT_EQ(toString(CandidateType::ServerReflexive), "srflx");
    EXPECT_EQ(toString(CandidateType::PeerReflexive), "prflx");
    EXPECT_EQ(toString(CandidateType::Relayed), "relay");
    EXPECT_EQ(toString(Transport::Udp), "UDP");
    EXPECT_EQ(toString(Transport::Tcp), "TCP");
    EXPECT_EQ(toString(TcpType::Active), "active");
    EXPECT_EQ(toString(TcpType::Passive), "passive");
    EXPECT_EQ(toString(TcpType::SimultaneousOpen), "so");
    std::ostringstream os;
    os << CandidateType::Relayed << ' ' << Transport::Tcp << ' ' << TcpType::SimultaneousOpen;
    EXPECT_EQ(os.str(), "relay TCP so");
    EXPECT_FALSE(isRelayed(CandidateType::ServerReflexive));
}

TEST(CandidateTest, StreamsAsSdpValue) {
    Candidate c = parseOk("candidate:1 1 UDP 2013266431 ::1 5 typ host");
    std::ostringstream os;
    os << c;
    EXPECT_EQ(os.str(), "candidate:1 1 UDP 2013266431 ::1 5 typ host");
    EXPECT_EQ(c.endpoint(), "[::1]:5");
}

struct Malformed {
    const char* input;
    const char* errorContains;
};

// Shows the input, not the bytes of the struct, when a case fails.
void PrintTo(const Malformed& m, std::ostream* os) {
    *os << '"' << m.input << '"';
}

class MalformedCandidateTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedCandidateTest, IsRejectedWithMessage) {
    const Malformed& m = GetParam();
    auto result = Candidate::parse(m.input);
    ASSERT_FALSE(result.ok()) << "accepted: " << m.input;
    EXPECT_THAT(result.error().message, HasSubstr(m.errorContains));
    EXPECT_THAT(result.error().message, HasSubstr("candidate: "));
}

const Malformed kMalformedCandidates[] = {
    {"", "does not start with \"candidate:\""},
    {"a=", "does not start with \"candidate:\""},
    {"1 1 UDP 2013266431 10.0.0.1 5000 typ host", "does not start with \"candidate:\""},
    {"a=cand:1 1 UDP 1 10.0.0.1 5000 typ host", "does not start with \"candidate:\""},
    {"candidate:", "missing foundation"},
    {"candidate: 1 1 UDP 1 10.0.0.1 5000 typ host", "missing foundation"},
    {"candidate:1", "missing component id (token 2)"},
    {"candidate:1 1 UDP 2013266431 10.0.0.1", "missing port (token 6)"},
    {"candidate:1 1 UDP 2013266431 10.0.0.1 5000", "missing \"typ\" (token 7)"},
    {"candidate:1 1 UDP 2013266431 10.0.0.1 5000 typ", "missing candidate type (token 8)"},
    {"candidate:123456789012345678901234567890123 1 UDP 1 10.0.0.1 5000 typ host",
     "foundation \"123456789012345678901234567890123\" at token 1 is too long (33 chars"},
    {"candidate:ab-c 1 UDP 1 10.0.0.1 5000 typ host", "invalid character \"-\""},
    {"candidate:1 0 UDP 1 10.0.0.1 5000 typ host", "invalid component id \"0\" at token 2"},
    {"candidate:1 257 UDP 1 10.0.0.1 5000 typ host", "invalid component id \"257\""},
    {"candidate:1 -1 UDP 1 10.0.0.1 5000 typ host", "invalid component id \"-1\""},
    {"candidate:1 x UDP 1 10.0.0.1 5000 typ host", "invalid component id \"x\""},
    {"candidate:1 1 SCTP 1 10.0.0.1 5000 typ host", "unsupported transport \"SCTP\" at token 3"},
    {"candidate:1 1 ssltcp 1 10.0.0.1 5000 typ host", "unsupported transport \"ssltcp\""},
    {"candidate:1 1 UDP 0 10.0.0.1 5000 typ host", "invalid priority \"0\" at token 4"},
    {"candidate:1 1 UDP 4294967296 10.0.0.1 5000 typ host", "invalid priority \"4294967296\""},
    {"candidate:1 1 UDP 99999999999999999999 10.0.0.1 5000 typ host", "invalid priority"},
    {"candidate:1 1 UDP +5 10.0.0.1 5000 typ host", "invalid priority \"+5\""},
    {"candidate:1 1 UDP 1 10.0.0.256 5000 typ host",
     "connection address \"10.0.0.256\" at token 5 is not"},
    {"candidate:1 1 UDP 1 [::1] 5000 typ host", "must not be in brackets"},
    {"candidate:1 1 UDP 1 2001:db8:::1 5000 typ host", "connection address \"2001:db8:::1\""},
    {"candidate:1 1 UDP 1 fe80::1%eth0 5000 typ host", "connection address \"fe80::1%eth0\""},
    {"candidate:1 1 UDP 1 bad_host.local 5000 typ host", "connection address \"bad_host.local\""},
    {"candidate:1 1 UDP 1 -x.local 5000 typ host", "connection address \"-x.local\""},
    {"candidate:1 1 UDP 1 10.0.0.1 70000 typ host",
     "invalid port \"70000\" at token 6 (expected 0..65535)"},
    {"candidate:1 1 UDP 1 10.0.0.1 5x typ host", "invalid port \"5x\""},
    {"candidate:1 1 UDP 1 10.0.0.1 0 typ host", "port 0 at token 6 is only allowed for TCP active"},
    {"candidate:1 1 TCP 1 10.0.0.1 0 typ host tcptype passive", "port 0"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 type host", "expected \"typ\" at token 7, got \"type\""},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ local", "unknown candidate type \"local\" at token 8"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ HOST", "unknown candidate type \"HOST\""},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ srflx raddr", "\"raddr\" at token 9 has no value"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ srflx raddr 10.0.0.2 generation 0",
     "raddr without rport"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ srflx rport 5000", "rport without raddr"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ srflx raddr 1.2.3 rport 5",
     "related address \"1.2.3\" at token 10"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ srflx raddr 1.2.3.4 rport 65536",
     "invalid rport \"65536\" at token 12"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ srflx raddr 1.2.3.4 rport 5 raddr 1.2.3.4",
     "duplicate raddr at token 13"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ srflx raddr 1.2.3.4 rport 5 rport 6",
     "duplicate rport"},
    {"candidate:1 1 TCP 1 10.0.0.1 5000 typ host", "TCP candidate without tcptype"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ host tcptype active", "tcptype on a UDP candidate"},
    {"candidate:1 1 TCP 1 10.0.0.1 5000 typ host tcptype server", "invalid tcptype \"server\""},
    {"candidate:1 1 TCP 1 10.0.0.1 5000 typ host tcptype so tcptype so", "duplicate tcptype"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ host generation", "\"generation\" at token 9 has no"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ host generation 0 network-id",
     "\"network-id\" at token 11 has no value"},
    {"candidate:1 1 UDP 1 10.0.0.1\t5000 typ host", "control character"},
    {"candidate:1 1 UDP 1 10.0.0.1 5000 typ host gen\x01 0", "control character in \"gen\\x01\""},
};

INSTANTIATE_TEST_SUITE_P(Rejects, MalformedCandidateTest,
                         ::testing::ValuesIn(kMalformedCandidates));

TEST(CandidateTest, EmbeddedNulIsRejected) {
    std::string text("candidate:1 1 UDP 1 10.0.0.1 5000 typ host", 42);
    text[25] = '\0';
    EXPECT_FALSE(Candidate::parse(text).ok());
}

} // namespace
} // namespace icepunch
