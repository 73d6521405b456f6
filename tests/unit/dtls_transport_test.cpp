// The DTLS transport without sockets: two transports wired to each other in memory, with loss
// and a third party where a test wants them. Retransmission timers are real (OpenSSL reads the
// clock itself); the pump waits for the next deadline, never longer.

#include "impl/dtls_transport.hpp"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <random>
#include <string>
#include <thread>

using namespace icepunch;
using namespace icepunch::impl;
using namespace std::chrono_literals;

namespace {

std::vector<std::byte> bytes(std::string_view text) {
    auto* p = reinterpret_cast<const std::byte*>(text.data());
    return {p, p + text.size()};
}

std::string text(const std::vector<std::byte>& data) {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
}

struct Side {
    std::shared_ptr<DtlsCertificate> certificate = DtlsCertificate::generate().value();
    std::unique_ptr<DtlsTransport> transport;
    std::vector<std::string> received;
    std::vector<std::vector<std::byte>> sent; // every datagram it put on the path
};

// Two transports and the path between them.
struct Link {
    Side client, server;
    std::deque<std::pair<bool, std::vector<std::byte>>> inFlight; // (to the server?, datagram)
    std::function<bool()> drop = [] {
        return false;
    };

    explicit Link(std::function<void(DtlsTransport::Config&, bool client)> tweak = {}) {
        auto make = [&](Side& self, Side& peer, bool isClient) {
            DtlsTransport::Config config;
            config.client = isClient;
            config.certificate = self.certificate;
            config.peerFingerprints = {peer.certificate->fingerprint()};
            config.srtpProfiles = {"SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"};
            if (tweak) {
                tweak(config, isClient);
            }
            self.transport = DtlsTransport::create(config).value();
        };
        make(client, server, true);
        make(server, client, false);
    }

    void take(Side& from, DtlsTransport::Output& out) {
        bool toServer = &from == &client;
        for (auto& d : out.send) {
            from.sent.push_back(d);
            inFlight.emplace_back(toServer, std::move(d));
        }
        for (auto& d : out.received) {
            from.received.push_back(text(d));
        }
    }

    void start() {
        DtlsTransport::Output a, b;
        client.transport->start(a);
        server.transport->start(b);
        take(client, a);
        take(server, b);
    }

    void deliver(Side& to, std::span<const std::byte> datagram) {
        DtlsTransport::Output out;
        to.transport->receive(datagram, out);
        take(to, out);
    }

    void write(Side& from, std::string_view data) {
        DtlsTransport::Output out;
        ASSERT_TRUE(from.transport->write(bytes(data), out));
        take(from, out);
    }

    // Moves datagrams (losing some) and fires timers until `done` or the deadline.
    bool pump(std::function<bool()> done, std::chrono::milliseconds limit = 20s) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) {
                return false;
            }
            if (!inFlight.empty()) {
                auto [toServer, datagram] = std::move(inFlight.front());
                inFlight.pop_front();
                if (!drop()) {
                    deliver(toServer ? server : client, datagram);
                }
                continue;
            }
            // Nothing on the path: wait for the earlier retransmission deadline.
            auto next = std::optional<std::chrono::milliseconds>{};
            for (Side* s : {&client, &server}) {
                if (auto t = s->transport->timeout(); t && (!next || *t < *next)) {
                    next = t;
                }
            }
            if (!next) {
                return done();
            }
            std::this_thread::sleep_for(*next);
            for (Side* s : {&client, &server}) {
                if (auto t = s->transport->timeout(); t && *t == 0ms) {
                    DtlsTransport::Output out;
                    s->transport->handleTimeout(out);
                    take(*s, out);
                }
            }
        }
        return true;
    }

    bool connected() const {
        return client.transport->state() == DtlsTransport::State::Connected &&
               server.transport->state() == DtlsTransport::State::Connected;
    }
};

} // namespace

TEST(DtlsTransport, HandshakeVerifiesBothFingerprintsAndCarriesData) {
    Link link;
    link.start();
    ASSERT_TRUE(link.pump([&] { return link.connected(); }))
        << link.client.transport->error() << " / " << link.server.transport->error();
    const auto& c = link.client.transport->info();
    const auto& s = link.server.transport->info();
    EXPECT_EQ(c.version, "1.2");
    EXPECT_FALSE(c.cipher.empty());
    EXPECT_EQ(c.cipher, s.cipher);
    EXPECT_TRUE(c.dtlsClient);
    EXPECT_FALSE(s.dtlsClient);
    EXPECT_TRUE(c.peerFingerprintVerified);
    EXPECT_EQ(c.peerFingerprint, link.server.certificate->fingerprint());
    EXPECT_EQ(s.peerFingerprint, link.client.certificate->fingerprint());
    // Every handshake datagram fits the path MTU.
    for (const auto& d : link.client.sent) {
        EXPECT_LE(d.size(), 1200u);
    }
    for (const auto& d : link.server.sent) {
        EXPECT_LE(d.size(), 1200u);
    }
    link.write(link.client, "hello");
    link.write(link.server, "world");
    ASSERT_TRUE(
        link.pump([&] { return !link.client.received.empty() && !link.server.received.empty(); }));
    EXPECT_EQ(link.server.received, std::vector<std::string>{"hello"});
    EXPECT_EQ(link.client.received, std::vector<std::string>{"world"});
    // Records are encrypted: the plaintext is nowhere in what went on the path.
    for (const auto& d : link.client.sent) {
        EXPECT_EQ(text(d).find("hello"), std::string::npos);
    }
}

TEST(DtlsTransport, SrtpKeysMirrorEachOtherInTheRfc5764Layout) {
    Link link;
    link.start();
    ASSERT_TRUE(link.pump([&] { return link.connected(); }));
    const auto& c = link.client.transport->info().srtp;
    const auto& s = link.server.transport->info().srtp;
    ASSERT_TRUE(c && s);
    EXPECT_EQ(c->profile, "SRTP_AEAD_AES_128_GCM"); // the first we prefer
    EXPECT_EQ(c->keyingMaterial, s->keyingMaterial);
    EXPECT_EQ(c->keyingMaterial.size(), 2u * (16 + 12));
    EXPECT_EQ(c->localKey, s->remoteKey);
    EXPECT_EQ(c->localSalt, s->remoteSalt);
    EXPECT_EQ(c->remoteKey, s->localKey);
    EXPECT_NE(c->localKey, c->remoteKey);
    // client key first, then server key, client salt, server salt
    EXPECT_TRUE(std::equal(c->localKey.begin(), c->localKey.end(), c->keyingMaterial.begin()));
    EXPECT_TRUE(std::equal(s->localSalt.begin(), s->localSalt.end(),
                           c->keyingMaterial.begin() + 2 * 16 + 12));
}

TEST(DtlsTransport, TheProfileBothSidesHaveIsChosen) {
    Link link([](DtlsTransport::Config& config, bool client) {
        if (!client) {
            config.srtpProfiles = {"SRTP_AES128_CM_SHA1_80"};
        }
    });
    link.start();
    ASSERT_TRUE(link.pump([&] { return link.connected(); }));
    ASSERT_TRUE(link.client.transport->info().srtp);
    EXPECT_EQ(link.client.transport->info().srtp->profile, "SRTP_AES128_CM_SHA1_80");
    EXPECT_EQ(link.client.transport->info().srtp->localSalt.size(), 14u);
}

TEST(DtlsTransport, AFingerprintMismatchFailsAndNoDataEverFlows) {
    auto stranger = DtlsCertificate::generate().value();
    Link link([&](DtlsTransport::Config& config, bool client) {
        if (client) {
            config.peerFingerprints = {stranger->fingerprint()};
        }
    });
    link.start();
    ASSERT_TRUE(link.pump([&] {
        return link.client.transport->state() == DtlsTransport::State::Failed &&
               link.server.transport->state() == DtlsTransport::State::Failed;
    })) << link.server.transport->error();
    EXPECT_NE(link.client.transport->error().find("fingerprint"), std::string::npos)
        << link.client.transport->error();
    DtlsTransport::Output out;
    EXPECT_FALSE(link.client.transport->write(bytes("secret"), out));
    EXPECT_FALSE(link.server.transport->write(bytes("secret"), out));
    EXPECT_TRUE(out.send.empty());
}

TEST(DtlsTransport, TheServerChecksTheClientsCertificateToo) {
    auto stranger = DtlsCertificate::generate().value();
    Link link([&](DtlsTransport::Config& config, bool client) {
        if (!client) {
            config.peerFingerprints = {stranger->fingerprint()};
        }
    });
    link.start();
    ASSERT_TRUE(link.pump([&] {
        return link.server.transport->state() == DtlsTransport::State::Failed &&
               link.client.transport->state() != DtlsTransport::State::Handshaking;
    }));
    EXPECT_NE(link.server.transport->error().find("fingerprint"), std::string::npos)
        << link.server.transport->error();
    EXPECT_NE(link.client.transport->state(), DtlsTransport::State::Connected);
}

TEST(DtlsTransport, HandshakeCompletesUnderTwentyPercentLossBothWays) {
    for (unsigned seed = 1; seed <= 5; ++seed) {
        Link link;
        std::mt19937 random(seed);
        link.drop = [&] {
            return std::uniform_int_distribution<int>(0, 99)(random) < 20;
        };
        link.start();
        ASSERT_TRUE(link.pump([&] { return link.connected(); }))
            << "seed " << seed << ": " << link.client.transport->error() << " / "
            << link.server.transport->error();
    }
}

TEST(DtlsTransport, GarbageTruncatedForgedAndReplayedRecordsLeaveTheSessionUp) {
    Link link;
    link.start();
    ASSERT_TRUE(link.pump([&] { return link.connected(); }));
    link.write(link.client, "once");
    auto record = link.inFlight.back().second;
    ASSERT_TRUE(link.pump([&] { return link.server.received.size() == 1; }));
    // A replay of it, a truncated copy, a bit-flipped copy and noise with a DTLS first byte.
    link.deliver(link.server, record);
    link.deliver(link.server, std::span(record).first(record.size() / 2));
    auto forged = record;
    forged.back() ^= std::byte{1};
    link.deliver(link.server, forged);
    std::mt19937 random(7);
    for (int i = 0; i < 200; ++i) {
        std::vector<std::byte> noise(1 + random() % 300);
        for (auto& b : noise) {
            b = std::byte(random());
        }
        noise[0] = std::byte(20 + random() % 44);
        link.deliver(link.server, noise);
    }
    link.deliver(link.server, std::vector<std::byte>{std::byte{23}});
    EXPECT_EQ(link.server.received, std::vector<std::string>{"once"});
    EXPECT_EQ(link.server.transport->state(), DtlsTransport::State::Connected)
        << link.server.transport->error();
    link.write(link.client, "twice");
    ASSERT_TRUE(link.pump([&] { return link.server.received.size() == 2; }));
    EXPECT_EQ(link.server.received.back(), "twice");
}

TEST(DtlsTransport, AThirdPartysClientHellosAfterTheHandshakeChangeNothing) {
    Link link;
    link.start();
    ASSERT_TRUE(link.pump([&] { return link.connected(); }));
    for (int i = 0; i < 50; ++i) {
        DtlsTransport::Config config;
        config.client = true;
        config.certificate = DtlsCertificate::generate().value();
        config.peerFingerprints = {link.server.certificate->fingerprint()};
        auto intruder = DtlsTransport::create(config).value();
        DtlsTransport::Output hello;
        intruder->start(hello);
        ASSERT_FALSE(hello.send.empty());
        for (auto& d : hello.send) {
            link.deliver(link.server, d);
        }
    }
    EXPECT_EQ(link.server.transport->state(), DtlsTransport::State::Connected)
        << link.server.transport->error();
    link.write(link.client, "still here");
    link.write(link.server, "and here");
    ASSERT_TRUE(
        link.pump([&] { return !link.server.received.empty() && !link.client.received.empty(); }));
    EXPECT_EQ(link.server.received.back(), "still here");
}

TEST(DtlsTransport, CloseNotifyEndsThePeersSession) {
    Link link;
    link.start();
    ASSERT_TRUE(link.pump([&] { return link.connected(); }));
    DtlsTransport::Output out;
    link.client.transport->close(out);
    ASSERT_FALSE(out.send.empty());
    link.take(link.client, out);
    ASSERT_TRUE(
        link.pump([&] { return link.server.transport->state() == DtlsTransport::State::Closed; }));
    EXPECT_NE(link.server.transport->error().find("close_notify"), std::string::npos);
}

TEST(DtlsTransport, NoAnswerEndsInAFailureThatSaysWhy) {
    Link link([](DtlsTransport::Config& config, bool) { config.handshakeTimeout = 600ms; });
    link.drop = [] {
        return true;
    };
    link.start();
    ASSERT_TRUE(
        link.pump([&] { return link.client.transport->state() == DtlsTransport::State::Failed; }));
    EXPECT_NE(link.client.transport->error().find("no DTLS handshake within 600 ms"),
              std::string::npos)
        << link.client.transport->error();
    // Retransmitted meanwhile: 200 ms, then 400 ms.
    EXPECT_GE(link.client.sent.size(), 2u);
}

TEST(DtlsTransport, WriteRefusesBeforeTheHandshakeAndOverTheRecordLimit) {
    Link link;
    DtlsTransport::Output out;
    auto early = link.client.transport->write(bytes("early"), out);
    ASSERT_FALSE(early);
    EXPECT_EQ(early.error().code, ErrorCode::NotConnected);
    link.start();
    ASSERT_TRUE(link.pump([&] { return link.connected(); }));
    std::vector<std::byte> big(kMaxDtlsPlaintext + 1);
    auto tooBig = link.client.transport->write(big, out);
    ASSERT_FALSE(tooBig);
    EXPECT_EQ(tooBig.error().code, ErrorCode::TooLarge);
    big.resize(kMaxDtlsPlaintext);
    EXPECT_TRUE(link.client.transport->write(big, out));
}

namespace {

std::string pemOf(X509* x509) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, x509);
    char* data = nullptr;
    long size = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<size_t>(size));
    BIO_free(bio);
    return pem;
}

std::string pemOf(EVP_PKEY* key) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long size = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<size_t>(size));
    BIO_free(bio);
    return pem;
}

} // namespace

TEST(DtlsCertificate, AnAppsPemCertificateIsUsedAndBadOnesAreRefused) {
    auto made = DtlsCertificate::generate().value();
    auto other = DtlsCertificate::generate().value();
    auto loaded = DtlsCertificate::fromPem(pemOf(made->x509()), pemOf(made->key()));
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ((*loaded)->fingerprint(), made->fingerprint());
    EXPECT_EQ(made->fingerprint().algorithm, "sha-256");
    EXPECT_EQ(made->fingerprint().value.size(), 32u * 3 - 1);

    auto garbage = DtlsCertificate::fromPem("not a certificate", pemOf(made->key()));
    ASSERT_FALSE(garbage);
    EXPECT_EQ(garbage.error().code, ErrorCode::InvalidArgument);
    auto noKey = DtlsCertificate::fromPem(pemOf(made->x509()), "-----BEGIN PRIVATE KEY-----\nAA\n");
    ASSERT_FALSE(noKey);
    auto wrongKey = DtlsCertificate::fromPem(pemOf(made->x509()), pemOf(other->key()));
    ASSERT_FALSE(wrongKey);
    EXPECT_NE(wrongKey.error().message.find("does not belong"), std::string::npos);
}
