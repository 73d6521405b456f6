// DTLS over ICE between two agents on loopback: what an app sees with AgentConfig::security on.

#include "agent_harness.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <srtp2/srtp.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string_view>

using namespace icepunch;
using namespace icepunch::test;
using ::testing::HasSubstr;

namespace {

AgentConfig secureConfig(Role role) {
    auto config = loopbackConfig(role);
    config.security.enabled = true;
    return config;
}

// Gathers both, then hands each the other's whole description, through text, after `edit`.
bool exchangeDescriptions(
    PeerPair& peers,
    std::function<void(SessionDescription& toB, SessionDescription& toA)> edit = {}) {
    peers.a.agent->gather(peers.a.stream);
    peers.b.agent->gather(peers.b.stream);
    if (!peers.a.events->waitFor([&] { return peers.a.events->gatheringDone; }) ||
        !peers.b.events->waitFor([&] { return peers.b.events->gatheringDone; })) {
        return false;
    }
    auto da = SessionDescription::parse(
        peers.a.agent->localDescription(peers.a.stream).value().toString());
    auto db = SessionDescription::parse(
        peers.b.agent->localDescription(peers.b.stream).value().toString());
    if (!da || !db) {
        return false;
    }
    if (edit) {
        edit(*da, *db);
    }
    return peers.a.agent->setRemoteDescription(peers.a.stream, *db).ok() &&
           peers.b.agent->setRemoteDescription(peers.b.stream, *da).ok();
}

std::string describeSecure(const RecordedEvents& e) {
    std::string out = "secured " + std::to_string(e.secured.size()) + ", failures:";
    for (const auto& f : e.insecure) {
        out += " [" + f + "]";
    }
    return out;
}

} // namespace

TEST(AgentDtls, TheDescriptionCarriesTheFingerprintAndSetup) {
    auto config = secureConfig(Role::Controlling);
    config.security.setup = DtlsSetup::Passive;
    Recorder events;
    auto agent = Agent::create(config, events.callbacks()).value();
    auto stream = agent->addStream(1).value();
    auto description = agent->localDescription(stream).value();
    ASSERT_EQ(description.fingerprints.size(), 1u);
    EXPECT_EQ(description.fingerprints[0].algorithm, "sha-256");
    EXPECT_EQ(description.setup, DtlsSetup::Passive);
    EXPECT_THAT(description.toString(), HasSubstr("a=setup:passive\r\n"));
    // Another agent, another certificate.
    auto other = Agent::create(secureConfig(Role::Controlled), events.callbacks()).value();
    auto otherStream = other->addStream(1).value();
    EXPECT_NE(other->localDescription(otherStream).value().fingerprints, description.fingerprints);
}

TEST(AgentDtls, SecureConnectVerifiesBothSidesAndEncryptsTheData) {
    PeerPair peers(secureConfig(Role::Controlling), secureConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    ASSERT_TRUE(peers.a.events->waitSecure()) << describeSecure(peers.a.events->snapshot());
    ASSERT_TRUE(peers.b.events->waitSecure()) << describeSecure(peers.b.events->snapshot());
    auto a = peers.a.events->snapshot();
    auto b = peers.b.events->snapshot();
    ASSERT_EQ(a.secured.size(), 1u);
    EXPECT_EQ(a.secured[0].version, "1.2");
    EXPECT_FALSE(a.secured[0].cipher.empty());
    EXPECT_TRUE(a.secured[0].peerFingerprintVerified);
    // Both actpass: the ICE-controlled side is the DTLS client.
    EXPECT_FALSE(a.secured[0].dtlsClient);
    EXPECT_TRUE(b.secured[0].dtlsClient);
    EXPECT_EQ(a.secured[0].peerFingerprint,
              peers.b.agent->localDescription(peers.b.stream).value().fingerprints[0]);
    ASSERT_TRUE(a.secured[0].srtp);
    EXPECT_EQ(a.secured[0].srtp->profile, "SRTP_AEAD_AES_128_GCM");
    EXPECT_EQ(a.secured[0].srtp->localKey, b.secured[0].srtp->remoteKey);

    peers.b.events->keepPayloads = true;
    // At most 32 unanswered: 1,000-byte datagrams overflow loopback's socket buffer at ~90.
    ASSERT_TRUE(exchange(peers.a, peers.b, 200, 1000, 32))
        << "B received " << peers.b.events->snapshot().received;
    ASSERT_TRUE(exchange(peers.b, peers.a, 200, 1000, 32))
        << "A received " << peers.a.events->snapshot().received << ", B sent "
        << peers.b.agent->stats(peers.b.stream, 1).value().packetsSent << ", A got packets "
        << peers.a.agent->stats(peers.a.stream, 1).value().packetsReceived;
    auto last = peers.b.events->snapshot().payloads.back(); // decrypted as sent
    ASSERT_EQ(last.size(), 1000u);
    EXPECT_EQ(last.substr(4), std::string(996, 'x'));
    // The largest datagram a record carries goes; one byte more is refused, not cut.
    std::string big(16384, 'x');
    EXPECT_TRUE(peers.a.agent->send(peers.a.stream, 1, big));
    auto tooBig = peers.a.agent->send(peers.a.stream, 1, big + "x");
    ASSERT_FALSE(tooBig);
    EXPECT_EQ(tooBig.error().code, ErrorCode::TooLarge);
}

TEST(AgentDtls, ExplicitSetupMakesTheControllingSideTheClient) {
    auto ca = secureConfig(Role::Controlling);
    ca.security.setup = DtlsSetup::Active;
    PeerPair peers(ca, secureConfig(Role::Controlled));
    ASSERT_TRUE(exchangeDescriptions(peers));
    ASSERT_TRUE(peers.a.events->waitSecure()) << describeSecure(peers.a.events->snapshot());
    ASSERT_TRUE(peers.b.events->waitSecure()) << describeSecure(peers.b.events->snapshot());
    EXPECT_TRUE(peers.a.events->snapshot().secured[0].dtlsClient);
    EXPECT_FALSE(peers.b.events->snapshot().secured[0].dtlsClient);
    ASSERT_TRUE(exchange(peers.a, peers.b, 20, 100));
}

TEST(AgentDtls, AFingerprintMismatchIsASecureFailureAndNoDataFlows) {
    PeerPair peers(secureConfig(Role::Controlling), secureConfig(Role::Controlled));
    auto stranger = Agent::create(secureConfig(Role::Controlling), {}).value();
    auto strangerStream = stranger->addStream(1).value();
    auto strangerPrint = stranger->localDescription(strangerStream).value().fingerprints;
    // B is told A has the stranger's certificate (a man in the middle would look like this).
    ASSERT_TRUE(exchangeDescriptions(peers, [&](SessionDescription& toB, SessionDescription&) {
        toB.fingerprints = strangerPrint;
    }));
    ASSERT_TRUE(peers.waitConnected()); // ICE itself works
    ASSERT_TRUE(peers.b.events->waitFor([&] { return !peers.b.events->insecure.empty(); }));
    ASSERT_TRUE(peers.a.events->waitFor([&] { return !peers.a.events->insecure.empty(); }, 20s))
        << "A never said its DTLS session failed";
    auto a = peers.a.events->snapshot();
    auto b = peers.b.events->snapshot();
    EXPECT_THAT(b.insecure[0], HasSubstr("does not match the fingerprint")) << b.insecure[0];
    EXPECT_THAT(a.insecure[0], HasSubstr("the peer refused our certificate")) << a.insecure[0];
    EXPECT_TRUE(a.secured.empty());
    EXPECT_TRUE(b.secured.empty());
    auto sent = peers.a.agent->send(peers.a.stream, 1, "secret");
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code, ErrorCode::NotSecure);
    EXPECT_THAT(sent.error().message, HasSubstr("no secure session"));
    EXPECT_FALSE(peers.b.agent->send(peers.b.stream, 1, "secret"));
    EXPECT_EQ(a.received, 0u);
    EXPECT_EQ(b.received, 0u);
}

TEST(AgentDtls, APeerWithoutAFingerprintGetsNothing) {
    PeerPair peers(loopbackConfig(Role::Controlling), secureConfig(Role::Controlled));
    ASSERT_TRUE(exchangeDescriptions(peers));
    ASSERT_TRUE(peers.waitConnected());
    ASSERT_TRUE(peers.b.events->waitFor([&] { return !peers.b.events->insecure.empty(); }));
    EXPECT_THAT(peers.b.events->snapshot().insecure[0], HasSubstr("no usable a=fingerprint"));
    // A sends plaintext: B delivers none of it.
    for (int i = 0; i < 20; ++i) {
        ASSERT_TRUE(peers.a.agent->send(peers.a.stream, 1, "plain"));
    }
    ASSERT_FALSE(peers.b.agent->send(peers.b.stream, 1, "plain"));
    ASSERT_TRUE(exchange(peers.a, peers.a, 0, 1)); // no-op barrier
    EXPECT_EQ(peers.b.events->snapshot().received, 0u);
    EXPECT_EQ(peers.a.events->snapshot().received, 0u);
}

TEST(AgentDtls, BothSidesActiveIsAClearFailure) {
    auto ca = secureConfig(Role::Controlling);
    auto cb = secureConfig(Role::Controlled);
    ca.security.setup = cb.security.setup = DtlsSetup::Active;
    PeerPair peers(ca, cb);
    ASSERT_TRUE(exchangeDescriptions(peers));
    ASSERT_TRUE(peers.a.events->waitFor([&] { return !peers.a.events->insecure.empty(); }));
    EXPECT_THAT(peers.a.events->snapshot().insecure[0], HasSubstr("both sides are DTLS active"));
}

TEST(AgentDtls, AnIceRestartKeepsTheDtlsAssociation) {
    PeerPair peers(secureConfig(Role::Controlling), secureConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.a.events->waitSecure());
    ASSERT_TRUE(peers.b.events->waitSecure());
    auto before = peers.a.events->snapshot().pair;
    ASSERT_TRUE(peers.a.agent->restart(peers.a.stream));
    ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->pairs.size() >= 2; }));
    ASSERT_TRUE(exchange(peers.a, peers.b, 100, 200));
    ASSERT_TRUE(exchange(peers.b, peers.a, 100, 200));
    auto a = peers.a.events->snapshot();
    auto b = peers.b.events->snapshot();
    EXPECT_NE(a.pair->local.port, before->local.port); // a new path
    EXPECT_EQ(a.secured.size(), 1u) << "a second handshake";
    EXPECT_EQ(b.secured.size(), 1u) << "a second handshake";
    EXPECT_TRUE(a.insecure.empty()) << describeSecure(a);
    EXPECT_TRUE(b.insecure.empty()) << describeSecure(b);
}

// The peer's description names another certificate mid-call (a swapped certificate): another
// certificate is another association (RFC 8842), so this one ends, cleanly, on both sides.
TEST(AgentDtls, ANewFingerprintMidCallEndsTheSessionOnBothSides) {
    PeerPair peers(secureConfig(Role::Controlling), secureConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.a.events->waitSecure());
    ASSERT_TRUE(peers.b.events->waitSecure());
    auto description = peers.a.agent->localDescription(peers.a.stream).value();
    auto stranger = Agent::create(secureConfig(Role::Controlling), {}).value();
    auto strangerStream = stranger->addStream(1).value();
    description.fingerprints = stranger->localDescription(strangerStream).value().fingerprints;
    ASSERT_TRUE(peers.b.agent->setRemoteDescription(peers.b.stream, description));
    ASSERT_TRUE(peers.b.events->waitFor([&] { return !peers.b.events->insecure.empty(); }));
    EXPECT_THAT(peers.b.events->snapshot().insecure[0],
                HasSubstr("changed its certificate fingerprint"));
    ASSERT_TRUE(peers.a.events->waitFor([&] { return !peers.a.events->insecure.empty(); }));
    EXPECT_THAT(peers.a.events->snapshot().insecure[0], HasSubstr("close_notify"));
    EXPECT_FALSE(peers.a.agent->send(peers.a.stream, 1, "after"));
    EXPECT_FALSE(peers.b.agent->send(peers.b.stream, 1, "after"));
    EXPECT_NE(peers.b.agent->state(peers.b.stream, 1), ComponentState::Failed); // ICE stays up
}

// The first connection comes through a restart's session (promoted, not connected the usual
// way): the handshake must start all the same.
TEST(AgentDtls, AFirstConnectionThroughARestartIsSecuredToo) {
    // icepunch's own lines (restarts, promotions, DTLS), printed if the test fails.
    auto lines = std::make_shared<std::pair<std::mutex, std::string>>();
    setLogHandler(
        [lines](LogLevel, std::string_view category, std::string_view message) {
            if (category == "icepunch") {
                std::lock_guard lock(lines->first);
                lines->second.append(message).append("\n");
            }
        },
        LogLevel::Info);
    struct RestoreLog {
        ~RestoreLog() { setLogHandler({}); }
    } restoreLog;
    auto logged = [lines] {
        std::lock_guard lock(lines->first);
        return lines->second;
    };
    PeerPair peers(secureConfig(Role::Controlling), secureConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.a.agent->restart(peers.a.stream));
    ASSERT_TRUE(peers.a.events->waitSecure()) << describeSecure(peers.a.events->snapshot());
    ASSERT_TRUE(peers.b.events->waitSecure()) << describeSecure(peers.b.events->snapshot());
    ASSERT_TRUE(exchange(peers.a, peers.b, 20, 100))
        << "A:\n"
        << describe(peers.a.events->snapshot()) << "\nB:\n"
        << describe(peers.b.events->snapshot()) << "\nlog:\n"
        << logged();
    ASSERT_TRUE(exchange(peers.b, peers.a, 20, 100))
        << "A:\n"
        << describe(peers.a.events->snapshot()) << "\nB:\n"
        << describe(peers.b.events->snapshot()) << "\nlog:\n"
        << logged();
}

// ICE may connect before the fingerprint arrives (a description written in pieces): the
// handshake waits for it rather than failing.
TEST(AgentDtls, AFingerprintThatComesAfterTheCredentialsIsWaitedFor) {
    PeerPair peers(secureConfig(Role::Controlling), secureConfig(Role::Controlled));
    SessionDescription late;
    ASSERT_TRUE(exchangeDescriptions(peers, [&](SessionDescription& toB, SessionDescription&) {
        late = toB;
        toB.fingerprints.clear();
        toB.setup.reset();
    }));
    ASSERT_TRUE(peers.waitConnected());
    late.candidates.clear();
    ASSERT_TRUE(peers.b.agent->setRemoteDescription(peers.b.stream, late));
    ASSERT_TRUE(peers.a.events->waitSecure()) << describeSecure(peers.a.events->snapshot());
    ASSERT_TRUE(peers.b.events->waitSecure()) << describeSecure(peers.b.events->snapshot());
    ASSERT_TRUE(exchange(peers.a, peers.b, 20, 100));
}

TEST(AgentDtls, ClosingOneSideSendsCloseNotify) {
    PeerPair peers(secureConfig(Role::Controlling), secureConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.a.events->waitSecure());
    ASSERT_TRUE(peers.b.events->waitSecure());
    peers.a.destroyAgent();
    ASSERT_TRUE(peers.b.events->waitFor([&] { return !peers.b.events->insecure.empty(); }));
    EXPECT_THAT(peers.b.events->snapshot().insecure[0], HasSubstr("close_notify"));
    auto sent = peers.b.agent->send(peers.b.stream, 1, "anyone?");
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code, ErrorCode::NotSecure);
}

// What an app does with DTLS-SRTP: libsrtp keyed with the exported keys protects an RTP packet
// on one side, it travels beside DTLS (RFC 7983), and the other side's libsrtp unprotects it.
TEST(AgentDtls, SrtpKeyedFromDtlsCarriesRtpThatTheOtherSideUnprotects) {
    ASSERT_EQ(srtp_init(), srtp_err_status_ok);
    for (const char* profile : {"SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"}) {
        auto ca = secureConfig(Role::Controlling);
        auto cb = secureConfig(Role::Controlled);
        ca.security.srtpProfiles = {profile};
        PeerPair peers(ca, cb);
        peers.startTrickle();
        ASSERT_TRUE(peers.a.events->waitSecure());
        ASSERT_TRUE(peers.b.events->waitSecure());
        auto keysA = *peers.a.events->snapshot().secured[0].srtp;
        auto keysB = *peers.b.events->snapshot().secured[0].srtp;
        ASSERT_EQ(keysA.profile, profile);

        auto session = [&](const std::vector<std::byte>& key, const std::vector<std::byte>& salt,
                           bool outbound) {
            srtp_policy_t policy;
            std::memset(&policy, 0, sizeof policy);
            if (std::string(profile) == "SRTP_AEAD_AES_128_GCM") {
                srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp);
                srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp);
            } else {
                srtp_crypto_policy_set_rtp_default(&policy.rtp);
                srtp_crypto_policy_set_rtcp_default(&policy.rtcp);
            }
            std::vector<unsigned char> master;
            for (auto b : key) {
                master.push_back(static_cast<unsigned char>(b));
            }
            for (auto b : salt) {
                master.push_back(static_cast<unsigned char>(b));
            }
            policy.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
            policy.key = master.data();
            policy.window_size = 128;
            srtp_t s = nullptr;
            EXPECT_EQ(srtp_create(&s, &policy), srtp_err_status_ok);
            return s;
        };
        srtp_t sender = session(keysA.localKey, keysA.localSalt, true);
        srtp_t receiver = session(keysB.remoteKey, keysB.remoteSalt, false);

        // RTP: V=2, PT 96, seq 1, ts 160, SSRC 0x11223344, a 20-byte payload.
        unsigned char packet[12 + 20 + SRTP_MAX_TRAILER_LEN] = {0x80, 96,  0,    1,    0,    0,
                                                                0,    160, 0x11, 0x22, 0x33, 0x44};
        std::memcpy(packet + 12, "twenty bytes of talk", 20);
        int length = 32;
        ASSERT_EQ(srtp_protect(sender, packet, &length), srtp_err_status_ok);
        EXPECT_GT(length, 32);
        auto wire =
            std::span(reinterpret_cast<const std::byte*>(packet), static_cast<size_t>(length));
        ASSERT_TRUE(peers.a.agent->sendMedia(peers.a.stream, 1, wire));
        ASSERT_TRUE(peers.b.events->waitFor([&] { return !peers.b.events->media.empty(); }));
        auto got = peers.b.events->snapshot().media[0];
        ASSERT_EQ(got.size(), static_cast<size_t>(length)); // as it came
        int gotLength = static_cast<int>(got.size());
        ASSERT_EQ(srtp_unprotect(receiver, got.data(), &gotLength), srtp_err_status_ok) << profile;
        ASSERT_EQ(gotLength, 32);
        EXPECT_EQ(std::memcmp(reinterpret_cast<char*>(got.data()) + 12, "twenty bytes of talk", 20),
                  0);
        EXPECT_EQ(peers.b.events->snapshot().received, 0u); // not mistaken for DTLS data
        srtp_dealloc(sender);
        srtp_dealloc(receiver);
    }
    // No profile negotiated: no keys, so no media beside DTLS (it would go in the clear).
    {
        auto ca = secureConfig(Role::Controlling);
        ca.security.srtpProfiles.clear();
        PeerPair plain(ca, secureConfig(Role::Controlled));
        plain.startTrickle();
        ASSERT_TRUE(plain.a.events->waitSecure());
        EXPECT_FALSE(plain.a.events->snapshot().secured[0].srtp);
        auto media = plain.a.agent->sendMedia(plain.a.stream, 1,
                                              std::vector<std::byte>(20, std::byte{0x80}));
        ASSERT_FALSE(media);
        EXPECT_EQ(media.error().code, ErrorCode::NotSecure);
    }
    // Not RTP: refused.
    PeerPair peers(secureConfig(Role::Controlling), secureConfig(Role::Controlled));
    auto notRtp = peers.a.agent->sendMedia(peers.a.stream, 1,
                                           std::vector<std::byte>{std::byte{23}, std::byte{1}});
    ASSERT_FALSE(notRtp);
    EXPECT_EQ(notRtp.error().code, ErrorCode::InvalidArgument);
    srtp_shutdown();
}
