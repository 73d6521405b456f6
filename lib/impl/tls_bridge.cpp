#include "impl/tls_bridge.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <list>
#include <thread>
#include <vector>

namespace icepunch::impl {

namespace {

using Clock = std::chrono::steady_clock;

// Per direction: stop reading from a side once this much waits for the other (backpressure).
constexpr std::size_t kBufferCap = 256 * 1024;
constexpr std::size_t kChunk = 16 * 1024;

std::string stripBrackets(const std::string& host) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        return host.substr(1, host.size() - 2);
    return host;
}

bool isIpLiteral(const std::string& text) {
    in6_addr buffer{};
    return ::inet_pton(AF_INET, text.c_str(), &buffer) == 1 ||
           ::inet_pton(AF_INET6, text.c_str(), &buffer) == 1;
}

// "ab:CD.." -> "abcd..": 64 hex digits, or empty on a malformed pin.
std::string normalizePin(const std::string& pin) {
    std::string out;
    for (char c : pin) {
        if (c == ':' || c == ' ')
            continue;
        if (!std::isxdigit(static_cast<unsigned char>(c)))
            return {};
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out.size() == 64 ? out : std::string{};
}

std::string toHex(const unsigned char* data, std::size_t size) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        out += digits[data[i] >> 4];
        out += digits[data[i] & 0x0f];
    }
    return out;
}

// Hex SHA-256 of the certificate's SubjectPublicKeyInfo DER; empty if it cannot be computed.
std::string spkiSha256(X509* cert) {
    EVP_PKEY* key = cert ? X509_get0_pubkey(cert) : nullptr;
    if (!key)
        return {};
    int length = i2d_PUBKEY(key, nullptr);
    if (length <= 0)
        return {};
    std::vector<unsigned char> der(static_cast<std::size_t>(length));
    unsigned char* cursor = der.data();
    if (i2d_PUBKEY(key, &cursor) != length)
        return {};
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digestLength = 0;
    if (EVP_Digest(der.data(), der.size(), digest, &digestLength, EVP_sha256(), nullptr) != 1)
        return {};
    return toHex(digest, digestLength);
}

// The first queued OpenSSL error as words (and the queue cleared).
std::string opensslError() {
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0)
        return {};
    const char* reason = ERR_reason_error_string(code);
    if (reason)
        return reason;
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    return buffer;
}

void closeFd(int& fd) {
    if (fd >= 0)
        ::close(fd);
    fd = -1;
}

void setNoDelay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

bool wouldBlock(int error) {
    return error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
}

enum class Phase { Connecting, Handshaking, Open };

struct Connection {
    int localFd = -1;
    int remoteFd = -1;
    SSL* ssl = nullptr;
    BIO* rbio = nullptr; // owned by ssl: ciphertext from the server
    BIO* wbio = nullptr; // owned by ssl: ciphertext for the server
    Phase phase = Phase::Connecting;
    Clock::time_point deadline;
    std::string toRemote;  // plaintext from the local side, not yet given to SSL_write
    std::string toLocal;   // plaintext from the server, not yet written to the local side
    std::string cipherOut; // ciphertext not yet sent to the server
    bool localEof = false;
    bool remoteEof = false; // TCP EOF from the server
    bool tlsClosed = false; // close_notify (or EOF) seen after the handshake
    bool done = false;      // to be removed

    ~Connection() {
        if (ssl)
            SSL_free(ssl);
        closeFd(localFd);
        closeFd(remoteFd);
    }
};

} // namespace

struct TlsBridge::Impl {
    TlsBridgeOptions options;
    sockaddr_storage server{};
    socklen_t serverLength = 0;
    std::string serverText; // "1.2.3.4:5349" / "[::1]:5349"
    std::string verifyName;
    bool verifyNameIsIp = false;
    std::string pin; // normalized, or empty
    SSL_CTX* ctx = nullptr;
    int listenFd = -1;
    int wakeFd = -1;
    uint16_t port = 0;
    std::string address;
    std::thread thread;
    std::list<Connection> connections;

    ~Impl() {
        connections.clear();
        closeFd(listenFd);
        closeFd(wakeFd);
        if (ctx)
            SSL_CTX_free(ctx);
    }

    std::string where() const { return " (server " + serverText + ", name " + verifyName + ")"; }

    void fail(Connection& c, const std::string& reason) {
        if (c.done)
            return;
        c.done = true;
        if (options.onError)
            options.onError(reason + where());
    }

    void run();
    void acceptAll();
    void startConnect(Connection& c);
    void finishConnect(Connection& c);
    bool beginTls(Connection& c);
    void pump(Connection& c);
    bool handshake(Connection& c);
    std::string handshakeError(Connection& c, int sslError);
};

void TlsBridge::Impl::acceptAll() {
    for (;;) {
        int fd = ::accept4(listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; // EAGAIN, or a transient error (EMFILE, ECONNABORTED): try on the next wake
        setNoDelay(fd);
        Connection& c = connections.emplace_back();
        c.localFd = fd;
        c.deadline = Clock::now() + options.handshakeTimeout;
        startConnect(c);
    }
}

void TlsBridge::Impl::startConnect(Connection& c) {
    c.remoteFd = ::socket(server.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.remoteFd < 0) {
        fail(c, std::string("cannot create a socket: ") + std::strerror(errno));
        return;
    }
    setNoDelay(c.remoteFd);
    if (::connect(c.remoteFd, reinterpret_cast<const sockaddr*>(&server), serverLength) == 0) {
        if (beginTls(c))
            pump(c);
        return;
    }
    if (errno == EINPROGRESS || errno == EINTR)
        return; // finishConnect() on POLLOUT
    if (errno == ECONNREFUSED)
        fail(c, "connection refused");
    else
        fail(c, std::string("cannot connect: ") + std::strerror(errno));
}

void TlsBridge::Impl::finishConnect(Connection& c) {
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(c.remoteFd, SOL_SOCKET, SO_ERROR, &error, &length) != 0)
        error = errno;
    if (error == 0) {
        if (beginTls(c))
            pump(c);
        return;
    }
    if (error == ECONNREFUSED)
        fail(c, "connection refused");
    else
        fail(c, std::string("cannot connect: ") + std::strerror(error));
}

bool TlsBridge::Impl::beginTls(Connection& c) {
    ERR_clear_error();
    c.ssl = SSL_new(ctx);
    c.rbio = BIO_new(BIO_s_mem());
    c.wbio = BIO_new(BIO_s_mem());
    if (!c.ssl || !c.rbio || !c.wbio) {
        BIO_free(c.rbio);
        BIO_free(c.wbio);
        c.rbio = c.wbio = nullptr;
        fail(c, "TLS handshake failed: cannot create a TLS session");
        return false;
    }
    // Empty read BIO means "retry", not EOF, until the server's TCP EOF is seen.
    BIO_set_mem_eof_return(c.rbio, -1);
    SSL_set_bio(c.ssl, c.rbio, c.wbio);
    bool ok = true;
    if (verifyNameIsIp) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.ssl), verifyName.c_str()) == 1;
    } else {
        ok = SSL_set_tlsext_host_name(c.ssl, verifyName.c_str()) == 1 &&
             SSL_set1_host(c.ssl, verifyName.c_str()) == 1;
    }
    if (!ok) {
        fail(c, "TLS handshake failed: cannot set the server name: " + opensslError());
        return false;
    }
    SSL_set_connect_state(c.ssl);
    c.phase = Phase::Handshaking;
    return true;
}

std::string TlsBridge::Impl::handshakeError(Connection& c, int sslError) {
    long verify = SSL_get_verify_result(c.ssl);
    std::string detail = opensslError();
    if (verify != X509_V_OK && !options.tls.allowUntrusted)
        return std::string("TLS certificate rejected: ") + X509_verify_cert_error_string(verify);
    if (detail.empty()) {
        if (sslError == SSL_ERROR_SYSCALL || sslError == SSL_ERROR_ZERO_RETURN || c.remoteEof)
            detail = "the server closed the connection";
        else
            detail = "error " + std::to_string(sslError);
    }
    return "TLS handshake failed: " + detail;
}

// Drives SSL_connect; false once the connection failed.
bool TlsBridge::Impl::handshake(Connection& c) {
    ERR_clear_error();
    int r = SSL_do_handshake(c.ssl);
    if (r == 1) {
        c.phase = Phase::Open;
        if (!pin.empty()) {
            X509* cert = SSL_get0_peer_certificate(c.ssl);
            std::string got = spkiSha256(cert);
            if (got != pin) {
                fail(c, "TLS certificate pin mismatch: got " + (got.empty() ? "no key" : got));
                return false;
            }
        }
        return true;
    }
    int error = SSL_get_error(c.ssl, r);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        if (c.remoteEof && BIO_ctrl_pending(c.rbio) == 0) {
            fail(c, "TLS handshake failed: the server closed the connection");
            return false;
        }
        return true;
    }
    fail(c, handshakeError(c, error));
    return false;
}

// Moves whatever can move, in both directions, until nothing does.
void TlsBridge::Impl::pump(Connection& c) {
    char buffer[kChunk];
    bool progress = true;
    while (progress && !c.done) {
        progress = false;

        // Local side -> plaintext queue (also before the handshake completes).
        if (!c.localEof && c.toRemote.size() < kBufferCap) {
            ssize_t n = ::recv(c.localFd, buffer, sizeof buffer, 0);
            if (n > 0) {
                c.toRemote.append(buffer, static_cast<std::size_t>(n));
                progress = true;
            } else if (n == 0) {
                c.localEof = true;
                progress = true;
            } else if (!wouldBlock(errno)) {
                c.done = true; // the local client went away: nothing to report
                return;
            }
        }
        if (c.phase == Phase::Connecting) {
            if (c.localEof && c.toRemote.empty())
                c.done = true; // gone before the server was reached: nothing to deliver
            return;
        }

        // Server socket -> TLS engine.
        if (!c.remoteEof && (c.phase == Phase::Handshaking || c.toLocal.size() < kBufferCap)) {
            ssize_t n = ::recv(c.remoteFd, buffer, sizeof buffer, 0);
            if (n > 0) {
                BIO_write(c.rbio, buffer, static_cast<int>(n));
                progress = true;
            } else if (n == 0) {
                c.remoteEof = true;
                BIO_set_mem_eof_return(c.rbio, 0);
                progress = true;
            } else if (!wouldBlock(errno)) {
                if (c.phase == Phase::Handshaking)
                    fail(c, std::string("TLS handshake failed: ") + std::strerror(errno));
                else
                    fail(c, std::string("TLS connection lost: ") + std::strerror(errno));
                return;
            }
        }

        if (c.phase == Phase::Handshaking) {
            if (!handshake(c))
                return;
            if (c.phase == Phase::Open)
                progress = true;
        }

        if (c.phase == Phase::Open) {
            // Plaintext queue -> TLS records, while the ciphertext queue is not too long.
            while (!c.toRemote.empty() && c.cipherOut.size() < kBufferCap) {
                ERR_clear_error();
                int size = static_cast<int>(std::min(c.toRemote.size(), kChunk));
                int r = SSL_write(c.ssl, c.toRemote.data(), size);
                if (r > 0) {
                    c.toRemote.erase(0, static_cast<std::size_t>(r));
                    progress = true;
                    continue;
                }
                int error = SSL_get_error(c.ssl, r);
                if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE)
                    break;
                fail(c, "TLS write failed: " + opensslError());
                return;
            }
            // TLS records -> plaintext for the local side.
            while (!c.tlsClosed && c.toLocal.size() < kBufferCap) {
                ERR_clear_error();
                int r = SSL_read(c.ssl, buffer, sizeof buffer);
                if (r > 0) {
                    c.toLocal.append(buffer, static_cast<std::size_t>(r));
                    progress = true;
                    continue;
                }
                int error = SSL_get_error(c.ssl, r);
                if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE)
                    break;
                if (error == SSL_ERROR_ZERO_RETURN ||
                    (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) ||
                    (c.remoteEof && BIO_ctrl_pending(c.rbio) == 0)) {
                    ERR_clear_error();
                    c.tlsClosed = true;
                    progress = true;
                    break;
                }
                fail(c, "TLS connection failed: " + opensslError());
                return;
            }
        }

        // TLS engine -> server socket.
        if (c.wbio) {
            while (BIO_ctrl_pending(c.wbio) > 0) {
                int n = BIO_read(c.wbio, buffer, sizeof buffer);
                if (n <= 0)
                    break;
                c.cipherOut.append(buffer, static_cast<std::size_t>(n));
            }
        }
        if (!c.cipherOut.empty()) {
            ssize_t n = ::send(c.remoteFd, c.cipherOut.data(), c.cipherOut.size(), MSG_NOSIGNAL);
            if (n > 0) {
                c.cipherOut.erase(0, static_cast<std::size_t>(n));
                progress = true;
            } else if (n < 0 && !wouldBlock(errno)) {
                fail(c, std::string(c.phase == Phase::Open ? "TLS connection lost: "
                                                           : "TLS handshake failed: ") +
                            std::strerror(errno));
                return;
            }
        }

        // Plaintext -> local side.
        if (!c.toLocal.empty()) {
            ssize_t n = ::send(c.localFd, c.toLocal.data(), c.toLocal.size(), MSG_NOSIGNAL);
            if (n > 0) {
                c.toLocal.erase(0, static_cast<std::size_t>(n));
                progress = true;
            } else if (n < 0 && !wouldBlock(errno)) {
                c.done = true;
                return;
            }
        }
    }
    if (c.done)
        return;

    if (c.phase == Phase::Open && c.tlsClosed && c.toLocal.empty()) {
        fail(c, "TLS connection closed by the server");
        return;
    }
    if (c.localEof && c.toRemote.empty()) {
        if (c.phase == Phase::Open) {
            // Best effort close_notify; the local client is gone either way.
            ERR_clear_error();
            SSL_shutdown(c.ssl);
            while (BIO_ctrl_pending(c.wbio) > 0) {
                int n = BIO_read(c.wbio, buffer, sizeof buffer);
                if (n <= 0)
                    break;
                c.cipherOut.append(buffer, static_cast<std::size_t>(n));
            }
            if (!c.cipherOut.empty())
                (void)::send(c.remoteFd, c.cipherOut.data(), c.cipherOut.size(),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        c.done = true;
    }
}

void TlsBridge::Impl::run() {
    std::vector<pollfd> fds;
    std::vector<Connection*> owners;
    for (;;) {
        // Drop finished connections: closing the local socket tells libnice it ended.
        connections.remove_if([](const Connection& c) { return c.done; });

        fds.clear();
        owners.clear();
        fds.push_back({wakeFd, POLLIN, 0});
        fds.push_back({listenFd, POLLIN, 0});
        auto now = Clock::now();
        int timeoutMs = -1;
        for (Connection& c : connections) {
            short local = 0;
            if (!c.localEof && c.toRemote.size() < kBufferCap)
                local |= POLLIN;
            if (!c.toLocal.empty())
                local |= POLLOUT;
            fds.push_back({c.localFd, local, 0});
            owners.push_back(&c);

            short remote = 0;
            if (c.phase == Phase::Connecting) {
                remote = POLLOUT;
            } else {
                if (!c.remoteEof &&
                    (c.phase == Phase::Handshaking || c.toLocal.size() < kBufferCap))
                    remote |= POLLIN;
                if (!c.cipherOut.empty())
                    remote |= POLLOUT;
            }
            fds.push_back({c.remoteFd, remote, 0});
            owners.push_back(&c);

            if (c.phase != Phase::Open) {
                auto left =
                    std::chrono::duration_cast<std::chrono::milliseconds>(c.deadline - now).count();
                int ms = static_cast<int>(std::max<long long>(0, left) + 1);
                timeoutMs = timeoutMs < 0 ? ms : std::min(timeoutMs, ms);
            }
        }

        int n = ::poll(fds.data(), fds.size(), timeoutMs);
        if (n < 0 && errno != EINTR)
            return; // cannot happen with valid descriptors; the destructor still cleans up
        if (n > 0 && fds[0].revents)
            return; // shutdown requested
        if (n > 0 && fds[1].revents)
            acceptAll();

        for (std::size_t i = 2; n > 0 && i < fds.size(); ++i) {
            Connection& c = *owners[i - 2];
            if (!fds[i].revents || c.done)
                continue;
            bool isRemote = (i - 2) % 2 == 1;
            if (isRemote && c.phase == Phase::Connecting) {
                finishConnect(c);
                continue;
            }
            pump(c);
            // A hung-up side we no longer read from would otherwise wake poll() forever.
            bool hungUp = fds[i].revents & (POLLERR | POLLHUP | POLLNVAL);
            if (c.done || !hungUp)
                continue;
            if (!isRemote && c.localEof) {
                c.done = true;
            } else if (isRemote && (fds[i].revents & (POLLERR | POLLNVAL))) {
                int error = 0;
                socklen_t length = sizeof error;
                ::getsockopt(c.remoteFd, SOL_SOCKET, SO_ERROR, &error, &length);
                fail(c, std::string(c.phase == Phase::Open ? "TLS connection lost: "
                                                           : "TLS handshake failed: ") +
                            std::strerror(error ? error : ECONNRESET));
            }
        }

        now = Clock::now();
        for (Connection& c : connections) {
            if (!c.done && c.phase != Phase::Open && now >= c.deadline) {
                fail(c, "TLS handshake timed out after " +
                            std::to_string(options.handshakeTimeout.count()) + " ms" +
                            (c.phase == Phase::Connecting ? " (TCP connect not complete)" : ""));
            }
        }
    }
}

Result<std::unique_ptr<TlsBridge>> TlsBridge::start(TlsBridgeOptions options) {
    auto impl = std::make_unique<Impl>();
    Impl& b = *impl;

    std::string host = stripBrackets(options.serverAddress);
    if (auto* v4 = reinterpret_cast<sockaddr_in*>(&b.server);
        ::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(options.serverPort);
        b.serverLength = sizeof(sockaddr_in);
        b.serverText = host + ":" + std::to_string(options.serverPort);
    } else if (auto* v6 = reinterpret_cast<sockaddr_in6*>(&b.server);
               ::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(options.serverPort);
        b.serverLength = sizeof(sockaddr_in6);
        b.serverText = "[" + host + "]:" + std::to_string(options.serverPort);
    } else {
        return Error{"TLS bridge: the server address '" + options.serverAddress +
                     "' is not an IP literal"};
    }
    if (options.serverPort == 0)
        return Error{"TLS bridge: the server port is 0"};

    b.verifyName = stripBrackets(!options.tls.serverName.empty() ? options.tls.serverName
                                 : !options.serverName.empty()   ? options.serverName
                                                                 : host);
    b.verifyNameIsIp = isIpLiteral(b.verifyName);
    if (!options.tls.pinSha256.empty()) {
        b.pin = normalizePin(options.tls.pinSha256);
        if (b.pin.empty())
            return Error{"TLS bridge: the pin '" + options.tls.pinSha256 +
                         "' is not a hex SHA-256 (64 hex digits)"};
    }

    ERR_clear_error();
    b.ctx = SSL_CTX_new(TLS_client_method());
    if (!b.ctx)
        return Error{"TLS bridge: cannot create a TLS context: " + opensslError()};
    SSL_CTX_set_min_proto_version(b.ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(b.ctx, options.tls.allowUntrusted ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                       nullptr);
    if (!options.tls.caFile.empty()) {
        if (SSL_CTX_load_verify_locations(b.ctx, options.tls.caFile.c_str(), nullptr) != 1)
            return Error{"TLS bridge: cannot load the CA file '" + options.tls.caFile +
                         "': " + opensslError()};
    } else if (SSL_CTX_set_default_verify_paths(b.ctx) != 1) {
        return Error{"TLS bridge: cannot load the system CA store: " + opensslError()};
    }

    bool v6 = b.server.ss_family == AF_INET6;
    b.listenFd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (b.listenFd < 0)
        return Error{std::string("TLS bridge: cannot create a socket: ") + std::strerror(errno)};
    sockaddr_storage local{};
    socklen_t localLength = 0;
    if (v6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&local);
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        localLength = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&local);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        localLength = sizeof *a;
    }
    if (::bind(b.listenFd, reinterpret_cast<sockaddr*>(&local), localLength) != 0 ||
        ::listen(b.listenFd, SOMAXCONN) != 0 ||
        ::getsockname(b.listenFd, reinterpret_cast<sockaddr*>(&local), &localLength) != 0)
        return Error{std::string("TLS bridge: cannot listen on loopback: ") + std::strerror(errno)};
    b.port = v6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port)
                : ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    b.address = v6 ? "::1" : "127.0.0.1";

    b.wakeFd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b.wakeFd < 0)
        return Error{std::string("TLS bridge: cannot create an eventfd: ") + std::strerror(errno)};

    b.options = std::move(options);
    b.thread = std::thread([&b] { b.run(); });
    return std::unique_ptr<TlsBridge>(new TlsBridge(std::move(impl)));
}

TlsBridge::TlsBridge(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TlsBridge::~TlsBridge() {
    uint64_t one = 1;
    ssize_t written = ::write(impl_->wakeFd, &one, sizeof one);
    (void)written;
    if (impl_->thread.joinable())
        impl_->thread.join();
}

uint16_t TlsBridge::localPort() const {
    return impl_->port;
}

std::string TlsBridge::localAddress() const {
    return impl_->address;
}

} // namespace icepunch::impl
