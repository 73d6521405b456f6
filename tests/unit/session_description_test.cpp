#include <icepunch/session_description.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <string>

namespace icepunch {
namespace {

using ::testing::HasSubstr;

constexpr const char* kPwd = "asd88fgpdd777uzjYhagZg"; // 22 chars, the minimum

SessionDescription parseOk(std::string_view text) {
    auto result = SessionDescription::parse(text);
    EXPECT_TRUE(result.ok()) << text << "\n -> " << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : SessionDescription{};
}

void expectRoundTrip(const SessionDescription& sd) {
    auto again = SessionDescription::parse(sd.toString());
    ASSERT_TRUE(again.ok()) << sd.toString() << "\n -> " << again.error().message;
    EXPECT_EQ(*again, sd) << sd.toString() << "\n vs\n" << again->toString();
}

TEST(SessionDescriptionTest, ChromeOfferMediaSection) {
    const char* sdp = "v=0\r\n"
                      "o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
                      "s=-\r\n"
                      "t=0 0\r\n"
                      "a=group:BUNDLE 0\r\n"
                      "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
                      "c=IN IP4 0.0.0.0\r\n"
                      "a=candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host "
                      "generation 0 ufrag EsAw network-id 1\r\n"
                      "a=candidate:842163049 1 udp 1677729535 93.184.216.34 59148 typ srflx raddr "
                      "0.0.0.0 rport 0 generation 0 ufrag EsAw network-id 1 network-cost 10\r\n"
                      "a=candidate:3885250869 1 tcp 1518280447 192.168.0.196 9 typ host tcptype "
                      "active generation 0 network-id 1 network-cost 10\r\n"
                      "a=ice-ufrag:EsAw\r\n"
                      "a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
                      "a=ice-options:trickle\r\n"
                      "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:"
                      "81:8F:C1:A8:69:1A:6F:03:D6:E2:1B:9E:6A:1C:60:2B\r\n"
                      "a=setup:actpass\r\n"
                      "a=mid:0\r\n"
                      "a=sctp-port:5000\r\n";
    SessionDescription sd = parseOk(sdp);
    EXPECT_EQ(sd.ufrag, "EsAw");
    EXPECT_EQ(sd.pwd, "P2uYro0UCOQ4zxjKXaWCBui1");
    EXPECT_EQ(sd.options, std::vector<std::string>{"trickle"});
    EXPECT_TRUE(sd.trickle());
    ASSERT_EQ(sd.candidates.size(), 3u);
    EXPECT_EQ(sd.candidates[1].type, CandidateType::ServerReflexive);
    EXPECT_EQ(sd.candidates[2].tcpType, TcpType::Active);
    EXPECT_FALSE(sd.endOfCandidates);
    ASSERT_EQ(sd.fingerprints.size(), 1u);
    EXPECT_EQ(sd.setup, DtlsSetup::ActPass);
    EXPECT_TRUE(sd.skipped.empty());
    expectRoundTrip(sd);
}

TEST(SessionDescriptionTest, FirefoxWithEndOfCandidatesAndIpv6) {
    const char* sdp =
        "m=audio 9 UDP/TLS/RTP/SAVPF 109\r\n"
        "a=candidate:0 1 UDP 2122252543 9b36eaac-bb2e-49bb-bb78-21c41c499900.local 59411 typ "
        "host\r\n"
        "a=candidate:1 1 UDP 2122187007 2001:db8::5 60001 typ host\r\n"
        "a=candidate:2 1 TCP 2105524479 192.168.1.20 9 typ host tcptype active\r\n"
        "a=candidate:3 1 UDP 92217087 198.51.100.20 55000 typ relay raddr 198.51.100.20 rport "
        "55000\r\n"
        "a=end-of-candidates\r\n"
        "a=ice-pwd:b7ab8a0bc8b8b6a1e5c9e0c1a1d9d8f2\r\n"
        "a=ice-ufrag:1d4f9c2e\r\n"
        "a=mid:0\r\n"
        "a=rtpmap:109 opus/48000/2\r\n";
    SessionDescription sd = parseOk(sdp);
    EXPECT_EQ(sd.ufrag, "1d4f9c2e");
    ASSERT_EQ(sd.candidates.size(), 4u);
    EXPECT_TRUE(sd.candidates[1].isIpv6());
    EXPECT_TRUE(sd.endOfCandidates);
    EXPECT_FALSE(sd.trickle());
    expectRoundTrip(sd);
}

TEST(SessionDescriptionTest, LibniceStyleLfOnlyWithoutPrefix) {
    SessionDescription sd = parseOk(
        "ice-ufrag:Xy7q\n"
        "ice-pwd:0123456789abcdefghijkl+/\n"
        "\n"
        "candidate:1 1 UDP 2013266431 192.168.1.10 46404 typ host\n"
        "candidate:2 1 UDP 1677721855 203.0.113.5 46404 typ srflx raddr 192.168.1.10 rport 46404\n"
        "end-of-candidates\n");
    EXPECT_EQ(sd.pwd, "0123456789abcdefghijkl+/");
    EXPECT_EQ(sd.candidates.size(), 2u);
    EXPECT_TRUE(sd.endOfCandidates);
    expectRoundTrip(sd);
}

TEST(SessionDescriptionTest, ToStringIsCanonical) {
    SessionDescription sd;
    sd.ufrag = "abcd";
    sd.pwd = kPwd;
    sd.options = {"trickle", "ice2"};
    sd.candidates.push_back(*Candidate::parse("candidate:1 1 UDP 1 10.0.0.1 5000 typ host"));
    sd.endOfCandidates = true;
    EXPECT_EQ(sd.toString(), "a=ice-ufrag:abcd\r\n"
                             "a=ice-pwd:asd88fgpdd777uzjYhagZg\r\n"
                             "a=ice-options:trickle ice2\r\n"
                             "a=candidate:1 1 UDP 1 10.0.0.1 5000 typ host\r\n"
                             "a=end-of-candidates\r\n");
    expectRoundTrip(sd);
    sd.options.clear();
    EXPECT_EQ(sd.toString().find("ice-options"), std::string::npos);
    expectRoundTrip(sd);
}

TEST(SessionDescriptionTest, IgnoresIceLiteRemoteCandidatesAndRepeatedSameCredentials) {
    SessionDescription sd = parseOk(
        std::string("a=ice-lite\r\na=ice-ufrag:abcd\r\na=ice-pwd:") + kPwd +
        "\r\na=remote-candidates:1 192.0.2.3 45664\r\na=ice-ufrag:abcd\r\na=ice-options:trickle "
        "renomination\r\na=end-of-candidates\r\na=end-of-candidates\r\n   \r\n");
    EXPECT_EQ(sd.options, (std::vector<std::string>{"trickle", "renomination"}));
    EXPECT_TRUE(sd.candidates.empty());
    expectRoundTrip(sd);
}

TEST(SessionDescriptionTest, LongestCredentials) {
    SessionDescription sd =
        parseOk("a=ice-ufrag:" + std::string(256, 'u') + "\na=ice-pwd:" + std::string(256, 'p'));
    EXPECT_EQ(sd.ufrag.size(), 256u);
    expectRoundTrip(sd);
}

struct Malformed {
    std::string input;
    const char* errorContains;
};

// Shows the input, not the bytes of the struct, when a case fails.
void PrintTo(const Malformed& m, std::ostream* os) {
    *os << '"' << m.input << '"';
}

class MalformedSessionDescriptionTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedSessionDescriptionTest, IsRejectedWithMessage) {
    const Malformed& m = GetParam();
    auto result = SessionDescription::parse(m.input);
    ASSERT_FALSE(result.ok()) << "accepted: " << m.input;
    EXPECT_THAT(result.error().message, HasSubstr(m.errorContains));
}

const std::string kUfragLine = "a=ice-ufrag:abcd\r\n";
const std::string kPwdLine = std::string("a=ice-pwd:") + kPwd + "\r\n";
const std::string kCreds = kUfragLine + kPwdLine;
const std::string kHost = "a=candidate:1 1 UDP 1 10.0.0.1 5000 typ host\r\n";

const Malformed kMalformedDescriptions[] = {
    {"", "missing a=ice-ufrag"},
    {"\r\n\r\n", "missing a=ice-ufrag"},
    {"v=0\r\nm=audio 9 RTP/AVP 0\r\n", "missing a=ice-ufrag"},
    {kPwdLine, "missing a=ice-ufrag"},
    {kUfragLine, "missing a=ice-pwd"},
    {kUfragLine + kHost, "missing a=ice-pwd"},
    {"a=ice-ufrag:abc\r\n" + kPwdLine, "line 1: ice-ufrag too short (3 chars, need 4..256)"},
    {"a=ice-ufrag:\r\n" + kPwdLine, "line 1: ice-ufrag too short (0 chars"},
    {"a=ice-ufrag\r\n" + kPwdLine, "line 1: ice-ufrag without value"},
    {"a=ice-ufrag:" + std::string(257, 'a') + "\r\n" + kPwdLine,
     "line 1: ice-ufrag too long (257 chars"},
    {"a=ice-ufrag:ab-cd\r\n" + kPwdLine, "line 1: ice-ufrag has invalid character \"-\""},
    {"a=ice-ufrag:ab cd\r\n" + kPwdLine, "ice-ufrag has invalid character \" \" at position 3"},
    {"a=ice-ufrag: abcd\r\n" + kPwdLine, "line 1: ice-ufrag has invalid character"},
    {"a=ice-ufrag:ab\xc3\xa9"
     "cd\r\n" +
         kPwdLine,
     "invalid character \"\\xc3\""},
    {kUfragLine + "\r\na=ice-pwd:short1234567\r\n",
     "line 3: ice-pwd too short (12 chars, need 22..256)"},
    {kUfragLine + "a=ice-pwd:" + std::string(257, 'p') + "\r\n", "line 2: ice-pwd too long"},
    {kUfragLine + "a=ice-pwd:asd88fgpdd777uzjYhagZ=\r\n", "line 2: ice-pwd has invalid character"},
    {kUfragLine + "a=ice-pwd\r\n", "line 2: ice-pwd without value"},
    {kCreds + "a=ice-ufrag:efgh\r\n", "line 3: ice-ufrag \"efgh\" differs from \"abcd\" on line 1"},
    {kCreds + "a=ice-pwd:zzzzzzzzzzzzzzzzzzzzzzzz\r\n", "line 3: ice-pwd \"zzzz"},
    {kCreds + "a=ice-options:\r\n", "line 3: ice-options without any option"},
    {kCreds + "a=ice-options\r\n", "line 3: ice-options without any option"},
    {kCreds + "a=ice-options:trickle\x01\r\n", "line 3: invalid ice-options tag"},
    {kCreds + "a=ice-options:trickle\tice2\r\n", "invalid ice-options tag \"trickle\\x09ice2\""},
    {kCreds + "a=end-of-candidates:now\r\n", "line 3: end-of-candidates takes no value"},
    {"a=ice-ufrag:abcd\na=ice-pwd:" + std::string(kPwd) + "\n\n\n\na=ice-ufrag:dcba\n",
     "line 6: ice-ufrag"},
};

INSTANTIATE_TEST_SUITE_P(Rejects, MalformedSessionDescriptionTest,
                         ::testing::ValuesIn(kMalformedDescriptions));

// An unusable candidate line is skipped with its reason (RFC 8839: ignore what is not understood);
// the credentials and every good candidate around it are kept.
class SkippedCandidateLineTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(SkippedCandidateLineTest, IsSkippedWithReasonAndTheRestIsKept) {
    const Malformed& m = GetParam();
    const std::string good = "a=candidate:9 1 UDP 99 10.0.0.9 9999 typ host\r\n";
    auto result = SessionDescription::parse(m.input + good);
    ASSERT_TRUE(result.ok()) << result.error().message;
    EXPECT_EQ(result->ufrag, "abcd");
    bool afterEnd = m.input.find("end-of-candidates") != std::string::npos;
    ASSERT_EQ(result->skipped.size(), afterEnd ? 2u : 1u) << m.input;
    EXPECT_THAT(result->skipped[0].reason, HasSubstr(m.errorContains));
    EXPECT_FALSE(result->skipped[0].line.empty());
    bool goodKept = false;
    for (const auto& c : result->candidates) {
        goodKept = goodKept || c.port == 9999;
    }
    EXPECT_EQ(goodKept, !afterEnd); // after a=end-of-candidates the good line is skipped too
}

const Malformed kSkippedCandidateLines[] = {
    {kCreds + "a=end-of-candidates\r\n" + kHost, "candidate after a=end-of-candidates on line 3"},
    {kCreds + "a=candidate:1 1 UDP 1 10.0.0.1 70000 typ host\r\n",
     "candidate: invalid port \"70000\" at token 6"},
    {kCreds + kHost + "a=candidate:\r\n", "candidate: missing foundation"},
    {kCreds + "candidate:1 1 TCP 1 10.0.0.1 5000 typ host\n", "TCP candidate without tcptype"},
    {kCreds + "a=candidate:1 1 UDP 1 10.0.0.1 5000 typ host tcptype so\r\n",
     "candidate: tcptype on a UDP candidate"},
    {kCreds + "a=candidate:1 1 QUIC 1 10.0.0.1 5000 typ host\r\n", "unsupported transport"},
    {kCreds + "a=candidate:1 1 UDP 1 ::ffff:1.2.3 5000 typ host\r\n", "connection address"},
    {kCreds + "a=candidate:1 1 UDP 1 10.0.0.1 5000 typ srflx raddr\r\n", "has no value"},
    {kCreds + "v=0\nm=audio 1 RTP/AVP 0\na=candidate:1 1 UDP 1 10.0.0.1 5000 typ\n",
     "candidate: missing candidate type"},
    {kCreds + "a=candidate:1 1 UDP 1 10.0.0.1 5000 typ host\x7f\r\n", "control character"},
    {kCreds + "a=candidate:1 1 ssltcp 1 10.0.0.1 443 typ host\r\n", "unsupported transport"},
    {kCreds + "a=candidate:1 1 UDP 1 10.0.0.1 5000 typ magic\r\n", "candidate"},
    {kCreds + "a=candidate:1 1 UDP 1 " + std::string(5000, '1') + " 5000 typ host\r\n",
     "over the limit of 4096 (kMaxDescriptionLineLength)"},
};

INSTANTIATE_TEST_SUITE_P(Skips, SkippedCandidateLineTest,
                         ::testing::ValuesIn(kSkippedCandidateLines));

TEST(SessionDescriptionLimits, MoreCandidatesThanTheLimitAreSkippedAndCounted) {
    std::string text = kCreds;
    for (std::size_t i = 0; i < kMaxRemoteCandidates + 5; ++i) {
        text += "a=candidate:" + std::to_string(i) + " 1 UDP 1 10.0.0.1 " +
                std::to_string(1000 + i) + " typ host\r\n";
    }
    auto result = SessionDescription::parse(text);
    ASSERT_TRUE(result.ok()) << result.error().message;
    EXPECT_EQ(result->candidates.size(), kMaxRemoteCandidates);
    ASSERT_EQ(result->skipped.size(), 5u);
    EXPECT_THAT(result->skipped[0].reason, HasSubstr("kMaxRemoteCandidates"));
}

TEST(SessionDescriptionLimits, ATextOverTheSizeLimitIsRefusedNamingTheLimit) {
    std::string text = kCreds + std::string(kMaxDescriptionBytes, 'x');
    auto result = SessionDescription::parse(text);
    ASSERT_FALSE(result.ok());
    EXPECT_THAT(result.error().message, HasSubstr("kMaxDescriptionBytes"));
}

TEST(SessionDescriptionLimits, ABrowserMdnsHostCandidateParsesAndKeepsItsName) {
    auto result = SessionDescription::parse(
        kCreds +
        "a=candidate:1 1 udp 2122260223 4f4d7b2a-6e1a-4c4e-9d1b-0a5b6c7d8e9f.local "
        "54321 typ host generation 0\r\n" +
        kHost);
    ASSERT_TRUE(result.ok()) << result.error().message;
    ASSERT_EQ(result->candidates.size(), 2u);
    EXPECT_EQ(result->candidates[0].address, "4f4d7b2a-6e1a-4c4e-9d1b-0a5b6c7d8e9f.local");
    EXPECT_TRUE(result->skipped.empty());
}

constexpr const char* kSha256 =
    "sha-256 D1:2C:BE:AD:C4:F6:64:5C:25:16:11:9C:AF:E7:0F:73:79:36:4E:9C:1E:15:54:39:0C:06:8B:"
    "ED:96:86:00:39";

TEST(SessionDescriptionDtls, FingerprintAndSetupAsBrowsersWriteThem) {
    auto result = SessionDescription::parse(kCreds + "a=fingerprint:" + kSha256 +
                                            "\r\na=setup:actpass\r\n" + kHost);
    ASSERT_TRUE(result.ok()) << result.error().message;
    ASSERT_EQ(result->fingerprints.size(), 1u);
    EXPECT_EQ(result->fingerprints[0].algorithm, "sha-256");
    EXPECT_EQ(result->fingerprints[0].value.substr(0, 8), "D1:2C:BE");
    EXPECT_EQ(result->setup, DtlsSetup::ActPass);
    // Round trip through text.
    auto again = SessionDescription::parse(result->toString());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *result);
    EXPECT_THAT(result->toString(), HasSubstr(std::string("a=fingerprint:") + kSha256 + "\r\n"));
}

TEST(SessionDescriptionDtls, LowerCaseHexAndUpperCaseHashAreNormalised) {
    auto fp =
        Fingerprint::parse("SHA-1 4a:ad:b9:b1:3f:82:18:3b:54:02:12:df:3e:5d:49:6b:19:e5:7c:ab");
    ASSERT_TRUE(fp.ok()) << fp.error().message;
    EXPECT_EQ(fp->algorithm, "sha-1");
    EXPECT_EQ(fp->value, "4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB");
}

TEST(SessionDescriptionDtls, MalformedFingerprintsAreSkippedWithTheirReason) {
    for (const char* bad : {"sha-256", "md5 AB:CD", "sha-256 AB:CD", "sha-256 ZZ",
                            "sha-256 D1-2C-BE-AD-C4-F6-64-5C-25-16-11-9C-AF-E7-0F-73-79-36-4E-9C-"
                            "1E-15-54-39-0C-06-8B-ED-96-86-00-39",
                            "sha-256 D1:2C:BE:AD:C4:F6:64:5C:25:16:11:9C:AF:E7:0F:73:79:36:4E:9C:"
                            "1E:15:54:39:0C:06:8B:ED:96:86:00:39 extra"}) {
        auto result = SessionDescription::parse(kCreds + "a=fingerprint:" + bad + "\r\n" +
                                                "a=fingerprint:" + kSha256 + "\r\n" + kHost);
        ASSERT_TRUE(result.ok()) << bad << ": " << result.error().message;
        EXPECT_EQ(result->fingerprints.size(), 1u) << bad;
        ASSERT_EQ(result->skipped.size(), 1u) << bad;
        EXPECT_THAT(result->skipped[0].reason, HasSubstr("fingerprint")) << bad;
    }
}

TEST(SessionDescriptionDtls, UnknownOrConflictingSetupIsSkipped) {
    auto result = SessionDescription::parse(kCreds +
                                            "a=setup:holdconn\r\na=setup:active\r\n"
                                            "a=setup:passive\r\n" +
                                            kHost);
    ASSERT_TRUE(result.ok()) << result.error().message;
    EXPECT_EQ(result->setup, DtlsSetup::Active);
    ASSERT_EQ(result->skipped.size(), 2u);
    EXPECT_THAT(result->skipped[0].reason, HasSubstr("not a DTLS role"));
    EXPECT_THAT(result->skipped[1].reason, HasSubstr("second, different"));
}

TEST(SessionDescriptionDtls, FirstBytesAreClassifiedPerRfc7983) {
    EXPECT_EQ(classifyPacket(std::byte{0}), PacketKind::Stun);
    EXPECT_EQ(classifyPacket(std::byte{3}), PacketKind::Stun);
    EXPECT_EQ(classifyPacket(std::byte{20}), PacketKind::Dtls);
    EXPECT_EQ(classifyPacket(std::byte{63}), PacketKind::Dtls);
    EXPECT_EQ(classifyPacket(std::byte{64}), PacketKind::Other); // TURN channel
    EXPECT_EQ(classifyPacket(std::byte{128}), PacketKind::Rtp);
    EXPECT_EQ(classifyPacket(std::byte{191}), PacketKind::Rtp);
    EXPECT_EQ(classifyPacket(std::byte{192}), PacketKind::Other);
    EXPECT_EQ(classifyPacket(std::byte{17}), PacketKind::Other); // ZRTP
}

} // namespace
} // namespace icepunch
