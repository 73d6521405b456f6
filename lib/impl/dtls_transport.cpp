#include "dtls_transport.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace icepunch::impl {

namespace {

using std::chrono::milliseconds;

std::string lastOpenSslError() {
    unsigned long code = ERR_get_error();
    std::string text;
    while (code) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof buffer);
        if (!text.empty()) {
            text += "; ";
        }
        text += buffer;
        code = ERR_get_error();
    }
    return text.empty() ? "no detail from OpenSSL" : text;
}

const EVP_MD* digestOf(const std::string& algorithm) {
    if (algorithm == "sha-1") {
        return EVP_sha1();
    }
    if (algorithm == "sha-224") {
        return EVP_sha224();
    }
    if (algorithm == "sha-256") {
        return EVP_sha256();
    }
    if (algorithm == "sha-384") {
        return EVP_sha384();
    }
    if (algorithm == "sha-512") {
        return EVP_sha512();
    }
    return nullptr;
}

struct SrtpLayout {
    const char* name;
    std::size_t key, salt;
};
// RFC 5764 section 4.1.2 and RFC 7714 section 12.
constexpr SrtpLayout kSrtpLayouts[] = {
    {"SRTP_AES128_CM_SHA1_80", 16, 14},
    {"SRTP_AES128_CM_SHA1_32", 16, 14},
    {"SRTP_AEAD_AES_128_GCM", 16, 12},
    {"SRTP_AEAD_AES_256_GCM", 32, 12},
};

// One BIO method for every transport: each write is one datagram, each read one datagram.
BIO_METHOD* bioMethod(int (*write)(BIO*, const char*, int), int (*read)(BIO*, char*, int),
                      long (*ctrl)(BIO*, int, long, void*)) {
    static BIO_METHOD* method = [&] {
        BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "icepunch-dtls");
        BIO_meth_set_write(m, write);
        BIO_meth_set_read(m, read);
        BIO_meth_set_ctrl(m, ctrl);
        BIO_meth_set_create(m, [](BIO* bio) {
            BIO_set_init(bio, 1);
            return 1;
        });
        return m;
    }();
    return method;
}

int transportIndex() {
    static int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

} // namespace

// ---------------------------------------------------------------------------- certificate

DtlsCertificate::DtlsCertificate(X509* x509, EVP_PKEY* key) : x509_(x509), key_(key) {
    fingerprint_ = fingerprintOf(x509_, "sha-256").value();
}

DtlsCertificate::~DtlsCertificate() {
    X509_free(x509_);
    EVP_PKEY_free(key_);
}

Result<std::shared_ptr<DtlsCertificate>> DtlsCertificate::generate() {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    if (!key) {
        return Error{"cannot generate a P-256 key: " + lastOpenSslError()};
    }
    X509* x509 = X509_new();
    bool ok = x509 && X509_set_version(x509, 2);
    unsigned char serial[8];
    ok = ok && RAND_bytes(serial, sizeof serial) == 1;
    if (ok) {
        serial[0] &= 0x7f; // positive
        BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
        ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x509));
        BN_free(bn);
    }
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x509), -86400) &&
         X509_gmtime_adj(X509_getm_notAfter(x509), 30L * 86400) && X509_set_pubkey(x509, key);
    if (ok) {
        X509_NAME* name = X509_get_subject_name(x509);
        ok = X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        reinterpret_cast<const unsigned char*>("icepunch"), -1, -1,
                                        0) &&
             X509_set_issuer_name(x509, name) && X509_sign(x509, key, EVP_sha256()) > 0;
    }
    if (!ok) {
        X509_free(x509);
        EVP_PKEY_free(key);
        return Error{"cannot make a self-signed certificate: " + lastOpenSslError()};
    }
    return std::shared_ptr<DtlsCertificate>(new DtlsCertificate(x509, key));
}

Result<std::shared_ptr<DtlsCertificate>> DtlsCertificate::fromPem(std::string_view certificate,
                                                                  std::string_view privateKey) {
    auto read = [](std::string_view pem, auto reader) {
        BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
        auto* value = bio ? reader(bio) : nullptr;
        BIO_free(bio);
        return value;
    };
    X509* x509 = read(certificate,
                      [](BIO* bio) { return PEM_read_bio_X509(bio, nullptr, nullptr, nullptr); });
    if (!x509) {
        return Error{"the DTLS certificate is not a PEM certificate: " + lastOpenSslError(),
                     ErrorCode::InvalidArgument};
    }
    EVP_PKEY* key = read(privateKey, [](BIO* bio) {
        // No passphrase callback: OpenSSL's default one would prompt on the terminal, on the
        // loop thread.
        return PEM_read_bio_PrivateKey(
            bio, nullptr, [](char*, int, int, void*) { return -1; }, nullptr);
    });
    if (!key) {
        X509_free(x509);
        return Error{"the DTLS private key is not a PEM key (or it is encrypted): " +
                         lastOpenSslError(),
                     ErrorCode::InvalidArgument};
    }
    if (X509_check_private_key(x509, key) != 1) {
        X509_free(x509);
        EVP_PKEY_free(key);
        ERR_clear_error();
        return Error{"the DTLS private key does not belong to the certificate",
                     ErrorCode::InvalidArgument};
    }
    return std::shared_ptr<DtlsCertificate>(new DtlsCertificate(x509, key));
}

Result<Fingerprint> fingerprintOf(X509* certificate, const std::string& algorithm) {
    const EVP_MD* md = digestOf(algorithm);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned size = 0;
    if (!md || X509_digest(certificate, md, digest, &size) != 1) {
        return Error{"cannot hash the certificate with " + algorithm};
    }
    Fingerprint fp;
    fp.algorithm = algorithm;
    constexpr char kDigits[] = "0123456789ABCDEF";
    for (unsigned i = 0; i < size; ++i) {
        if (i) {
            fp.value += ':';
        }
        fp.value += kDigits[digest[i] >> 4];
        fp.value += kDigits[digest[i] & 15];
    }
    return fp;
}

// ---------------------------------------------------------------------------- transport

DtlsTransport::DtlsTransport(Config config) : config_(std::move(config)) {}

DtlsTransport::~DtlsTransport() {
    SSL_free(ssl_); // frees the BIO too
    SSL_CTX_free(ctx_);
}

Result<std::unique_ptr<DtlsTransport>> DtlsTransport::create(Config config) {
    if (!config.certificate) {
        return Error{"DTLS needs a certificate", ErrorCode::InvalidArgument};
    }
    std::unique_ptr<DtlsTransport> transport(new DtlsTransport(std::move(config)));
    if (Status status = transport->init(); !status) {
        return status.error();
    }
    return transport;
}

Status DtlsTransport::init() {
    ERR_clear_error();
    ctx_ = SSL_CTX_new(DTLS_method());
    if (!ctx_) {
        return Error{"cannot create a DTLS context: " + lastOpenSslError()};
    }
    SSL_CTX_set_min_proto_version(ctx_, DTLS1_2_VERSION);
    // No renegotiation: a certificate cannot be swapped mid-session. No MTU discovery: ours.
    SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_QUERY_MTU |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    // What WebRTC stacks offer: ECDHE with AEAD first, CBC-SHA for old peers.
    bool ok = SSL_CTX_set_cipher_list(
                  ctx_, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
                        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
                        "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:"
                        "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:"
                        "ECDHE-RSA-AES256-SHA") == 1 &&
              SSL_CTX_set1_groups_list(ctx_, "X25519:P-256:P-384") == 1 &&
              SSL_CTX_use_certificate(ctx_, config_.certificate->x509()) == 1 &&
              SSL_CTX_use_PrivateKey(ctx_, config_.certificate->key()) == 1;
    if (!ok) {
        return Error{"cannot set up the DTLS context: " + lastOpenSslError()};
    }
    if (!config_.srtpProfiles.empty()) {
        std::string list;
        for (const auto& p : config_.srtpProfiles) {
            list += (list.empty() ? "" : ":") + p;
        }
        // Returns 0 on success (unlike the rest of OpenSSL).
        if (SSL_CTX_set_tlsext_use_srtp(ctx_, list.c_str()) != 0) {
            return Error{"unknown DTLS-SRTP profile in \"" + list + "\"",
                         ErrorCode::InvalidArgument};
        }
    }
    // Self-signed on both sides: trust comes from the fingerprint in the description.
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, &verify);
    ssl_ = SSL_new(ctx_);
    if (!ssl_) {
        return Error{"cannot create a DTLS session: " + lastOpenSslError()};
    }
    SSL_set_ex_data(ssl_, transportIndex(), this);
    BIO* bio = BIO_new(bioMethod(&bioWrite, &bioRead, &bioCtrl));
    BIO_set_data(bio, this);
    SSL_set_bio(ssl_, bio, bio);
    SSL_set_mtu(ssl_, static_cast<long>(config_.mtu));
    DTLS_set_link_mtu(ssl_, static_cast<long>(config_.mtu));
    DTLS_set_timer_cb(ssl_, &timerCallback);
    if (config_.client) {
        SSL_set_connect_state(ssl_);
    } else {
        SSL_set_accept_state(ssl_);
    }
    return {};
}

int DtlsTransport::bioWrite(BIO* bio, const char* data, int size) {
    auto* self = static_cast<DtlsTransport*>(BIO_get_data(bio));
    if (!self->out_ || size <= 0) {
        return size; // nowhere to go (no call under way): dropped, as the network may
    }
    auto* bytes = reinterpret_cast<const std::byte*>(data);
    self->out_->send.emplace_back(bytes, bytes + size);
    return size;
}

int DtlsTransport::bioRead(BIO* bio, char* data, int size) {
    auto* self = static_cast<DtlsTransport*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    if (self->incoming_.empty()) {
        BIO_set_retry_read(bio);
        return -1;
    }
    // One datagram per read; DTLS never reads part of one.
    auto n = std::min<std::size_t>(self->incoming_.size(), static_cast<std::size_t>(size));
    std::memcpy(data, self->incoming_.data(), n);
    self->incoming_ = {};
    return static_cast<int>(n);
}

long DtlsTransport::bioCtrl(BIO* bio, int cmd, long, void*) {
    auto* self = static_cast<DtlsTransport*>(BIO_get_data(bio));
    switch (cmd) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DGRAM_SET_NEXT_TIMEOUT:
    case BIO_CTRL_PUSH:
    case BIO_CTRL_POP:
        return 1;
    case BIO_CTRL_DGRAM_QUERY_MTU:
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
        return static_cast<long>(self->config_.mtu);
    case BIO_CTRL_WPENDING:
    case BIO_CTRL_PENDING:
        return 0;
    default:
        return 0; // includes BIO_CTRL_DGRAM_GET_MTU_OVERHEAD: the MTU is the datagram's
    }
}

// Every certificate of the peer's chain passes here; the leaf must match a fingerprint.
int DtlsTransport::verify(int, X509_STORE_CTX* store) {
    auto* ssl =
        static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
    auto* self = static_cast<DtlsTransport*>(SSL_get_ex_data(ssl, transportIndex()));
    if (X509_STORE_CTX_get_error_depth(store) > 0) {
        return 1;
    }
    X509* leaf = X509_STORE_CTX_get_current_cert(store);
    std::string seen;
    for (const auto& expected : self->config_.peerFingerprints) {
        auto actual = fingerprintOf(leaf, expected.algorithm);
        if (!actual) {
            continue;
        }
        if (actual->value == expected.value) {
            self->matched_ = expected;
            return 1;
        }
        if (seen.empty()) {
            seen = actual->toString();
        }
    }
    self->verifyError_ =
        self->config_.peerFingerprints.empty()
            ? std::string("the peer's description has no usable fingerprint")
            : "the peer's certificate does not match the fingerprint in its description (" +
                  self->config_.peerFingerprints.front().toString() + "; its certificate has " +
                  seen + ")";
    return 0;
}

// RFC 6347 4.2.4.1: double each time, here from the configured start up to 3 s.
unsigned DtlsTransport::timerCallback(SSL* ssl, unsigned previousUs) {
    auto* self = static_cast<DtlsTransport*>(SSL_get_ex_data(ssl, transportIndex()));
    if (previousUs == 0) {
        return static_cast<unsigned>(
            std::chrono::duration_cast<std::chrono::microseconds>(self->config_.rto).count());
    }
    return std::min(previousUs * 2, 3'000'000u);
}

std::string DtlsTransport::openSslError(const char* what) {
    std::string detail = verifyError_.empty() ? lastOpenSslError() : verifyError_;
    ERR_clear_error();
    // The peer's verdict on our certificate comes back as an alert: say what it means here.
    if (detail.find("alert unknown ca") != std::string::npos ||
        detail.find("alert bad certificate") != std::string::npos) {
        detail = "the peer refused our certificate: it does not match the fingerprint the peer "
                 "has for us (" +
                 config_.certificate->fingerprint().toString() + "); OpenSSL: " + detail;
    }
    return std::string(what) + ": " + detail;
}

void DtlsTransport::fail(std::string why) {
    if (state_ == State::Failed || state_ == State::Closed) {
        return;
    }
    state_ = State::Failed;
    error_ = std::move(why);
}

void DtlsTransport::start(Output& out) {
    if (started_) {
        return;
    }
    started_ = true;
    startedAt_ = Clock::now();
    if (config_.client) {
        drive(out);
    }
}

void DtlsTransport::drive(Output& out) {
    out_ = &out;
    ERR_clear_error();
    if (state_ == State::Handshaking) {
        int r = SSL_do_handshake(ssl_);
        if (r == 1) {
            onConnected();
        } else {
            int error = SSL_get_error(ssl_, r);
            if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
                fail(openSslError("DTLS handshake failed"));
            }
        }
    }
    while (state_ == State::Connected) {
        // Into one buffer kept for the session, then copied at its size: no 16 KiB zeroed per
        // datagram.
        readBuffer_.resize(kMaxDtlsPlaintext);
        int r = SSL_read(ssl_, readBuffer_.data(), static_cast<int>(readBuffer_.size()));
        if (r > 0) {
            out.received.emplace_back(readBuffer_.begin(), readBuffer_.begin() + r);
            continue;
        }
        int error = SSL_get_error(ssl_, r);
        if (error == SSL_ERROR_ZERO_RETURN) {
            state_ = State::Closed;
            error_ = "the peer closed the DTLS session (close_notify)";
        } else if (error == SSL_ERROR_SSL) {
            fail(openSslError("DTLS session failed"));
        }
        break; // WANT_READ: nothing more in this datagram
    }
    ERR_clear_error();
    out_ = nullptr;
}

void DtlsTransport::onConnected() {
    // The verify callback ran and matched; a peer without a certificate never gets here
    // (SSL_VERIFY_FAIL_IF_NO_PEER_CERT), and this is the belt to those braces.
    X509* peer = SSL_get1_peer_certificate(ssl_);
    bool verified = false;
    if (peer && matched_) {
        auto actual = fingerprintOf(peer, matched_->algorithm);
        verified = actual && actual->value == matched_->value;
    }
    X509_free(peer);
    if (!verified) {
        fail("DTLS handshake completed but the peer's certificate was not verified against its "
             "fingerprint");
        return;
    }
    state_ = State::Connected;
    info_.version = SSL_version(ssl_) == DTLS1_2_VERSION ? "1.2" : SSL_get_version(ssl_);
    info_.cipher = SSL_get_cipher_name(ssl_);
    info_.dtlsClient = config_.client;
    info_.peerFingerprint = *matched_;
    info_.peerFingerprintVerified = true;
    if (SRTP_PROTECTION_PROFILE* profile = SSL_get_selected_srtp_profile(ssl_)) {
        for (const auto& layout : kSrtpLayouts) {
            if (std::strcmp(layout.name, profile->name) != 0) {
                continue;
            }
            SrtpKeys keys;
            keys.profile = layout.name;
            keys.keyingMaterial.resize(2 * (layout.key + layout.salt));
            auto* material = reinterpret_cast<unsigned char*>(keys.keyingMaterial.data());
            static constexpr char kLabel[] = "EXTRACTOR-dtls_srtp";
            if (SSL_export_keying_material(ssl_, material, keys.keyingMaterial.size(), kLabel,
                                           sizeof kLabel - 1, nullptr, 0, 0) != 1) {
                fail(openSslError("cannot export the DTLS-SRTP keys"));
                return;
            }
            // client key | server key | client salt | server salt
            auto at = [&](std::size_t offset, std::size_t size) {
                return std::vector<std::byte>(keys.keyingMaterial.begin() + offset,
                                              keys.keyingMaterial.begin() + offset + size);
            };
            auto clientKey = at(0, layout.key);
            auto serverKey = at(layout.key, layout.key);
            auto clientSalt = at(2 * layout.key, layout.salt);
            auto serverSalt = at(2 * layout.key + layout.salt, layout.salt);
            keys.localKey = config_.client ? clientKey : serverKey;
            keys.localSalt = config_.client ? clientSalt : serverSalt;
            keys.remoteKey = config_.client ? serverKey : clientKey;
            keys.remoteSalt = config_.client ? serverSalt : clientSalt;
            info_.srtp = std::move(keys);
        }
    }
}

void DtlsTransport::receive(std::span<const std::byte> datagram, Output& out) {
    if (state_ != State::Handshaking && state_ != State::Connected) {
        return;
    }
    if (!started_) {
        start(out); // the server hears the client's first flight
    }
    incoming_ = datagram;
    drive(out);
    incoming_ = {};
}

Status DtlsTransport::write(std::span<const std::byte> data, Output& out) {
    if (state_ != State::Connected) {
        return Error{state_ == State::Handshaking ? "the DTLS handshake is not done yet"
                                                  : "the DTLS session is over: " + error_,
                     state_ == State::Handshaking ? ErrorCode::NotConnected
                                                  : ErrorCode::ConsentLost};
    }
    if (data.empty() || data.size() > kMaxDtlsPlaintext) {
        return Error{"a DTLS record carries 1 to " + std::to_string(kMaxDtlsPlaintext) +
                         " bytes, not " + std::to_string(data.size()),
                     data.empty() ? ErrorCode::Empty : ErrorCode::TooLarge};
    }
    out_ = &out;
    ERR_clear_error();
    int r = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
    out_ = nullptr;
    if (r <= 0) {
        std::string why = openSslError("DTLS cannot encrypt");
        fail(why);
        return Error{why, ErrorCode::ConsentLost};
    }
    return {};
}

std::optional<milliseconds> DtlsTransport::timeout() const {
    if (state_ != State::Handshaking || !started_) {
        // Connected: the last flight may still be retransmitted on the peer's request, which
        // comes as a datagram; nothing to time.
        return std::nullopt;
    }
    auto deadline = startedAt_ + config_.handshakeTimeout;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    timeval tv{};
    if (DTLSv1_get_timeout(ssl_, &tv) == 1) {
        auto flight = milliseconds(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
        left = std::min(left, flight);
    }
    return std::max(left, milliseconds(0));
}

void DtlsTransport::handleTimeout(Output& out) {
    if (state_ != State::Handshaking || !started_) {
        return;
    }
    if (Clock::now() >= startedAt_ + config_.handshakeTimeout) {
        fail("no DTLS handshake within " + std::to_string(config_.handshakeTimeout.count()) +
             " ms (" +
             (config_.client ? "we are the client: no answer to our ClientHello"
                             : "we are the server: no ClientHello came, or the "
                               "client stopped answering") +
             ")");
        return;
    }
    out_ = &out;
    ERR_clear_error();
    if (DTLSv1_handle_timeout(ssl_) < 0) {
        fail(openSslError("DTLS retransmission failed"));
    }
    ERR_clear_error();
    out_ = nullptr;
}

void DtlsTransport::close(Output& out) {
    if (state_ == State::Connected) {
        out_ = &out;
        ERR_clear_error();
        SSL_shutdown(ssl_); // close_notify; we do not wait for the peer's
        ERR_clear_error();
        out_ = nullptr;
    }
    if (state_ != State::Failed) {
        state_ = State::Closed;
        if (error_.empty()) {
            error_ = "closed";
        }
    }
}

} // namespace icepunch::impl
