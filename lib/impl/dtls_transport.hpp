#pragma once

// DTLS over an ICE component, sans I/O: datagrams in, datagrams and application data out, a
// retransmission deadline to honour. The agent owns the sockets and the loop's timer; tests
// drive two transports against each other in memory. Built on OpenSSL 3.0 (DTLS 1.2).

#include <icepunch/result.hpp>
#include <icepunch/security.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct bio_st BIO;
typedef struct x509_store_ctx_st X509_STORE_CTX;

namespace icepunch::impl {

// The largest application datagram DTLS carries in one record.
inline constexpr std::size_t kMaxDtlsPlaintext = 16384;

// A certificate and its key, shared by every DTLS session of an agent.
class DtlsCertificate {
public:
    // ECDSA P-256, self-signed, valid from a day ago for 30 days.
    static Result<std::shared_ptr<DtlsCertificate>> generate();
    static Result<std::shared_ptr<DtlsCertificate>> fromPem(std::string_view certificate,
                                                            std::string_view privateKey);
    ~DtlsCertificate();
    DtlsCertificate(const DtlsCertificate&) = delete;
    DtlsCertificate& operator=(const DtlsCertificate&) = delete;

    const Fingerprint& fingerprint() const { return fingerprint_; } // sha-256
    X509* x509() const { return x509_; }
    EVP_PKEY* key() const { return key_; }

private:
    DtlsCertificate(X509* x509, EVP_PKEY* key);
    X509* x509_;
    EVP_PKEY* key_;
    Fingerprint fingerprint_;
};

// The fingerprint of a certificate with the named hash ("sha-256", ...).
Result<Fingerprint> fingerprintOf(X509* certificate, const std::string& algorithm);

class DtlsTransport {
public:
    using Datagram = std::vector<std::byte>;
    using Clock = std::chrono::steady_clock;

    struct Config {
        bool client = false;
        std::shared_ptr<DtlsCertificate> certificate;
        std::vector<Fingerprint> peerFingerprints; // the peer's certificate must match one
        std::vector<std::string> srtpProfiles;
        std::chrono::milliseconds rto{200};
        std::chrono::milliseconds handshakeTimeout{15000};
        std::size_t mtu = 1200; // no handshake datagram is larger
    };
    enum class State { Handshaking, Connected, Failed, Closed };

    // What one call produced.
    struct Output {
        std::vector<Datagram> send;     // to put on the path, in order
        std::vector<Datagram> received; // application data for the app, in order
    };

    static Result<std::unique_ptr<DtlsTransport>> create(Config config);
    ~DtlsTransport();
    DtlsTransport(const DtlsTransport&) = delete;
    DtlsTransport& operator=(const DtlsTransport&) = delete;

    // The client sends its first flight; the server waits for it. Starts the handshake clock.
    void start(Output& out);
    // One datagram from the path whose first byte is DTLS (RFC 7983). Garbage, records of
    // another epoch, replays and forged records are dropped without harm (RFC 6347 4.1.2.7).
    void receive(std::span<const std::byte> datagram, Output& out);
    // Encrypts one datagram of application data into one record. Only once Connected.
    Status write(std::span<const std::byte> data, Output& out);
    // How long until handleTimeout() must run: a flight's retransmission or the handshake's
    // deadline. nullopt when nothing is pending.
    std::optional<std::chrono::milliseconds> timeout() const;
    void handleTimeout(Output& out);
    // close_notify, then Closed.
    void close(Output& out);

    State state() const { return state_; }
    bool started() const { return started_; }
    const std::string& error() const { return error_; } // why Failed (or Closed)
    const SecureInfo& info() const { return info_; }    // once Connected

private:
    explicit DtlsTransport(Config config);
    Status init();
    void drive(Output& out); // the handshake, then every record waiting
    void fail(std::string why);
    void onConnected();
    std::string openSslError(const char* what);

    static int bioWrite(BIO* bio, const char* data, int size);
    static int bioRead(BIO* bio, char* data, int size);
    static long bioCtrl(BIO* bio, int cmd, long num, void* ptr);
    static int verify(int ok, X509_STORE_CTX* store);
    static unsigned timerCallback(SSL* ssl, unsigned previousUs);

    Config config_;
    SSL_CTX* ctx_ = nullptr;
    SSL* ssl_ = nullptr;
    State state_ = State::Handshaking;
    bool started_ = false;
    Clock::time_point startedAt_;
    std::string error_;
    SecureInfo info_;
    std::string verifyError_;
    std::optional<Fingerprint> matched_;
    Datagram readBuffer_;
    // The BIO's view during one call.
    std::span<const std::byte> incoming_;
    Output* out_ = nullptr;
};

} // namespace icepunch::impl
