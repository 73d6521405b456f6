// libFuzzer target: datagrams with a DTLS first byte (RFC 7983), as anyone on the path can send
// them, into a connected session, a server waiting for its ClientHello and a client waiting for
// the answer. Nothing may crash, and the connected session must stay up and keep working.
#include "impl/dtls_transport.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

using namespace icepunch;
using namespace icepunch::impl;

namespace {

struct Pair {
    std::unique_ptr<DtlsTransport> client, server;
};

std::unique_ptr<DtlsTransport> make(bool client, const std::shared_ptr<DtlsCertificate>& self,
                                    const std::shared_ptr<DtlsCertificate>& peer) {
    DtlsTransport::Config config;
    config.client = client;
    config.certificate = self;
    config.peerFingerprints = {peer->fingerprint()};
    config.srtpProfiles = {"SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"};
    return DtlsTransport::create(config).value();
}

// Handshakes in memory, no loss: every flight is answered at once.
Pair connectedPair(const std::shared_ptr<DtlsCertificate>& c,
                   const std::shared_ptr<DtlsCertificate>& s) {
    Pair p{make(true, c, s), make(false, s, c)};
    DtlsTransport::Output out;
    p.client->start(out);
    for (int round = 0; round < 10 && !out.send.empty(); ++round) {
        DtlsTransport::Output next;
        bool toServer = round % 2 == 0;
        for (auto& d : out.send) {
            (toServer ? p.server : p.client)->receive(d, next);
        }
        out = std::move(next);
    }
    if (p.client->state() != DtlsTransport::State::Connected ||
        p.server->state() != DtlsTransport::State::Connected) {
        std::abort();
    }
    return p;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static auto clientCert = DtlsCertificate::generate().value();
    static auto serverCert = DtlsCertificate::generate().value();
    static Pair pair = connectedPair(clientCert, serverCert);
    auto datagram = std::span(reinterpret_cast<const std::byte*>(data), size);
    if (size == 0) {
        return 0;
    }
    DtlsTransport::Output out;
    pair.server->receive(datagram, out);
    // Nothing forged gets through as data, and the session stays up.
    if (!out.received.empty() || pair.server->state() != DtlsTransport::State::Connected) {
        std::abort();
    }
    // A server waiting for its first ClientHello, and a client waiting for the server's.
    auto server = make(false, serverCert, clientCert);
    server->receive(datagram, out);
    auto client = make(true, clientCert, serverCert);
    DtlsTransport::Output hello;
    client->start(hello);
    client->receive(datagram, out);
    return 0;
}
