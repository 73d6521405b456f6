#include <icepunch/server_uri.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <sstream>
#include <string>

namespace icepunch {
namespace {

using ::testing::HasSubstr;

ServerUri parseOk(std::string_view text) {
    auto result = ServerUri::parse(text);
    EXPECT_TRUE(result.ok()) << text << "\n -> " << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : ServerUri{};
}

void expectRoundTrip(const ServerUri& uri) {
    auto again = ServerUri::parse(uri.toString());
    ASSERT_TRUE(again.ok()) << uri.toString() << "\n -> " << again.error().message;
    EXPECT_EQ(*again, uri) << uri.toString() << " vs " << again->toString();
}

TEST(ServerUriTest, StunWithDefaultPort) {
    ServerUri uri = parseOk("stun:stun.l.google.com");
    EXPECT_EQ(uri.scheme, UriScheme::Stun);
    EXPECT_EQ(uri.host, "stun.l.google.com");
    EXPECT_EQ(uri.port, 3478);
    EXPECT_FALSE(uri.transport);
    EXPECT_FALSE(uri.isTurn());
    EXPECT_FALSE(uri.isSecure());
    EXPECT_FALSE(uri.isIpv6Literal());
    EXPECT_EQ(uri.effectiveTransport(), Transport::Udp);
    EXPECT_EQ(uri.toString(), "stun:stun.l.google.com:3478");
    expectRoundTrip(uri);
}

TEST(ServerUriTest, StunWithPort) {
    ServerUri uri = parseOk("stun:stun.l.google.com:19302");
    EXPECT_EQ(uri.port, 19302);
    expectRoundTrip(uri);
}

TEST(ServerUriTest, StunsDefaultsToTls) {
    ServerUri uri = parseOk("stuns:stun.example.org");
    EXPECT_EQ(uri.scheme, UriScheme::Stuns);
    EXPECT_EQ(uri.port, 5349);
    EXPECT_TRUE(uri.isSecure());
    EXPECT_EQ(uri.effectiveTransport(), Transport::Tcp);
    expectRoundTrip(uri);
}

TEST(ServerUriTest, TurnWithTransport) {
    ServerUri udp = parseOk("turn:turn.example.org:3478?transport=udp");
    EXPECT_TRUE(udp.isTurn());
    EXPECT_EQ(udp.transport, Transport::Udp);
    EXPECT_EQ(udp.toString(), "turn:turn.example.org:3478?transport=udp");
    expectRoundTrip(udp);

    ServerUri tcp = parseOk("turn:192.0.2.10?transport=tcp");
    EXPECT_EQ(tcp.host, "192.0.2.10");
    EXPECT_EQ(tcp.port, 3478);
    EXPECT_EQ(tcp.effectiveTransport(), Transport::Tcp);
    EXPECT_EQ(tcp.toString(), "turn:192.0.2.10:3478?transport=tcp");
    expectRoundTrip(tcp);
}

TEST(ServerUriTest, TurnsVariants) {
    ServerUri tls = parseOk("turns:turn.example.org");
    EXPECT_EQ(tls.port, 5349);
    EXPECT_EQ(tls.effectiveTransport(), Transport::Tcp);
    expectRoundTrip(tls);

    // turns over UDP is DTLS: accepted, and the explicit transport wins.
    ServerUri dtls = parseOk("turns:turn.example.org:443?transport=udp");
    EXPECT_EQ(dtls.effectiveTransport(), Transport::Udp);
    EXPECT_TRUE(dtls.isSecure());
    expectRoundTrip(dtls);
}

TEST(ServerUriTest, Ipv6Literal) {
    ServerUri uri = parseOk("turn:[2001:db8::1]:3479?transport=tcp");
    EXPECT_EQ(uri.host, "2001:db8::1");
    EXPECT_TRUE(uri.isIpv6Literal());
    EXPECT_EQ(uri.port, 3479);
    EXPECT_EQ(uri.toString(), "turn:[2001:db8::1]:3479?transport=tcp");
    expectRoundTrip(uri);

    ServerUri noPort = parseOk("stun:[::1]");
    EXPECT_EQ(noPort.host, "::1");
    EXPECT_EQ(noPort.port, 3478);
    EXPECT_EQ(noPort.toString(), "stun:[::1]:3478");
    expectRoundTrip(noPort);
}

TEST(ServerUriTest, CaseInsensitiveSchemeAndQueryTrimmedInput) {
    ServerUri uri = parseOk("  TURN:Turn.Example.ORG:80?Transport=TCP\n");
    EXPECT_EQ(uri.scheme, UriScheme::Turn);
    EXPECT_EQ(uri.host, "Turn.Example.ORG");
    EXPECT_EQ(uri.transport, Transport::Tcp);
    EXPECT_EQ(uri.toString(), "turn:Turn.Example.ORG:80?transport=tcp");
    expectRoundTrip(uri);
    EXPECT_EQ(parseOk("StUnS:localhost").scheme, UriScheme::Stuns);
}

TEST(ServerUriTest, PortBounds) {
    EXPECT_EQ(parseOk("stun:localhost:1").port, 1);
    EXPECT_EQ(parseOk("stun:localhost:65535").port, 65535);
}

TEST(ServerUriTest, DefaultPortsAndStreaming) {
    EXPECT_EQ(ServerUri::defaultPort(UriScheme::Stun), 3478);
    EXPECT_EQ(ServerUri::defaultPort(UriScheme::Turn), 3478);
    EXPECT_EQ(ServerUri::defaultPort(UriScheme::Stuns), 5349);
    EXPECT_EQ(ServerUri::defaultPort(UriScheme::Turns), 5349);
    std::ostringstream os;
    os << parseOk("turns:relay.example.net:443?transport=tcp");
    EXPECT_EQ(os.str(), "turns:relay.example.net:443?transport=tcp");
}

struct Malformed {
    const char* input;
    const char* errorContains;
};

// Shows the input, not the bytes of the struct, when a case fails.
void PrintTo(const Malformed& m, std::ostream* os) {
    *os << '"' << m.input << '"';
}

class MalformedServerUriTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedServerUriTest, IsRejectedWithMessage) {
    const Malformed& m = GetParam();
    auto result = ServerUri::parse(m.input);
    ASSERT_FALSE(result.ok()) << "accepted: " << m.input;
    EXPECT_THAT(result.error().message, HasSubstr(m.errorContains));
}

const Malformed kMalformedUris[] = {
    {"", "server URI is empty"},
    {"   ", "server URI is empty"},
    {"stun.example.org", "missing scheme"},
    {"http://example.org", "unsupported scheme \"http\""},
    {"stunx:example.org", "unsupported scheme \"stunx\""},
    {":example.org", "unsupported scheme \"\""},
    {"stun://stun.example.org", "\"//\" is not part of STUN/TURN URIs"},
    {"stun:", "missing host"},
    {"stun::3478", "missing host"},
    {"turn:?transport=udp", "missing host"},
    {"turn:user@turn.example.org", "user info (\"user@\") is not allowed"},
    {"turn:user:pass@turn.example.org:3478", "user info"},
    {"stun:stun.example.org/path", "a path (\"/...\") is not allowed"},
    {"stun:stun.example.org#frag", "fragments"},
    {"stun:2001:db8::1", "an IPv6 literal must be in brackets"},
    {"stun:::1", "must be in brackets"},
    {"stun:[2001:db8::1", "IPv6 literal without closing \"]\""},
    {"stun:[2001:db8::zz]", "invalid IPv6 literal \"2001:db8::zz\""},
    {"stun:[1.2.3.4]", "invalid IPv6 literal"},
    {"stun:[::1]x", "unexpected \"x\" after \"]\""},
    {"stun:[::1]:", "invalid port \"\""},
    {"stun:256.1.1.1", "invalid IPv4 address \"256.1.1.1\""},
    {"stun:1.2.3", "invalid IPv4 address"},
    {"stun:bad_host.example", "invalid host name \"bad_host.example\""},
    {"stun:-bad.example", "invalid host name"},
    {"stun:a..b", "invalid host name"},
    {"stun:host%20name", "invalid host name"},
    {"stun:exa mple.org", "invalid host name"},
    {"stun:example.org:", "invalid port \"\" (expected 1..65535)"},
    {"stun:example.org:0", "invalid port \"0\""},
    {"stun:example.org:65536", "invalid port \"65536\""},
    {"stun:example.org:34x", "invalid port \"34x\""},
    {"stun:example.org:+3478", "invalid port"},
    {"stun:example.org:0000003478", "invalid port"},
    {"stun:example.org?transport=udp", "stun: and stuns: URIs take no query"},
    {"stuns:example.org?transport=tcp", "take no query"},
    {"turn:example.org?", "unsupported query \"\""},
    {"turn:example.org?transport", "unsupported query \"transport\""},
    {"turn:example.org?proto=udp", "unsupported query \"proto=udp\""},
    {"turn:example.org?transport=sctp", "unsupported transport \"sctp\" (expected udp or tcp)"},
    {"turn:example.org?transport=udp&foo=bar", "unsupported transport \"udp&foo=bar\""},
    {"turn:example.org?transport=", "unsupported transport \"\""},
};

INSTANTIATE_TEST_SUITE_P(Rejects, MalformedServerUriTest, ::testing::ValuesIn(kMalformedUris));

} // namespace
} // namespace icepunch
