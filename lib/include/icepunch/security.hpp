#pragma once

#include <icepunch/export.hpp>
#include <icepunch/result.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace icepunch {

// a=setup (RFC 8842): which side opens the DTLS handshake. Active is the DTLS client, Passive
// the server; ActPass leaves it to the peer. When both say ActPass, the ICE-controlled side is
// the client.
enum class DtlsSetup { ActPass, Active, Passive };

ICEPUNCH_EXPORT std::string_view toString(DtlsSetup setup);
ICEPUNCH_EXPORT std::optional<DtlsSetup> parseDtlsSetup(std::string_view text);

// a=fingerprint (RFC 8122): a hash of the certificate a side will present in DTLS.
struct ICEPUNCH_EXPORT Fingerprint {
    std::string algorithm; // lower case: "sha-256" (also "sha-1", "sha-384", "sha-512")
    std::string value;     // upper-case hex pairs separated by colons: "AB:CD:..."

    // "sha-256 AB:CD:...". Hex digits in either case; the algorithm in any case.
    static Result<Fingerprint> parse(std::string_view text);
    std::string toString() const;

    bool operator==(const Fingerprint&) const = default;
};

// DTLS over the selected pair (RFC 5763/5764 as WebRTC does it).
struct SecurityConfig {
    // Off by default: an ICE library is embedded by apps that secure their media themselves
    // (SRTP keyed by their own DTLS, SDES or ZRTP) and talk to peers that speak plain ICE; turning
    // DTLS on silently would cut them off. When on there is no fallback: a peer without a
    // fingerprint, or with another one, gets no data at all.
    bool enabled = false;
    // PEM certificate and private key to present; both empty: an ECDSA P-256 self-signed
    // certificate is generated for the agent (valid 30 days).
    std::string certificatePem;
    std::string privateKeyPem;
    DtlsSetup setup = DtlsSetup::ActPass;
    // DTLS-SRTP (RFC 5764) profiles offered, in order of preference; empty offers none.
    std::vector<std::string> srtpProfiles = {"SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"};
    // Initial retransmission timeout of a handshake flight (doubles up to 3 s per RFC 6347).
    std::chrono::milliseconds handshakeRto{200};
    // From the first handshake flight to giving up, with a secureFailed event.
    std::chrono::milliseconds handshakeTimeout{15000};
};

// DTLS-SRTP keys for this side, from the keying material exported under
// "EXTRACTOR-dtls_srtp" (RFC 5764 section 4.2: client key, server key, client salt, server
// salt). Protect what you send with the local key and salt, unprotect with the remote ones.
struct SrtpKeys {
    std::string profile; // "SRTP_AEAD_AES_128_GCM" or "SRTP_AES128_CM_SHA1_80"
    std::vector<std::byte> localKey, localSalt, remoteKey, remoteSalt;
    std::vector<std::byte> keyingMaterial; // the exported block as is, in the RFC's layout
};

// A component's DTLS session once the handshake is done and the peer's certificate matched.
struct SecureInfo {
    std::string version; // "1.2" (OpenSSL 3.0 has no DTLS 1.3)
    std::string cipher;  // OpenSSL's name, e.g. "ECDHE-ECDSA-AES128-GCM-SHA256"
    bool dtlsClient = false;
    Fingerprint peerFingerprint; // the one in the peer's description that matched
    bool peerFingerprintVerified = false;
    std::optional<SrtpKeys> srtp; // when a DTLS-SRTP profile was negotiated
};

// RFC 7983: what the first byte of a datagram on an ICE path says it is.
enum class PacketKind { Stun, Dtls, Rtp, Other };
ICEPUNCH_EXPORT PacketKind classifyPacket(std::byte first);

} // namespace icepunch
