// The TLS bridge against a real coturn with a TLS listener and a generated certificate: TURN
// Allocate over plain TCP into the bridge becomes TURN over TLS to coturn.

#include "impl/tls_bridge.hpp"

#include "impl/turn_probe.hpp"

#include "coturn_process.hpp"
#include "make_cert.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using icepunch::Transport;
using icepunch::impl::ProbeEndpoint;
using icepunch::impl::TlsBridge;
using icepunch::impl::TlsBridgeOptions;
using icepunch::support::CoturnOptions;
using icepunch::support::CoturnProcess;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kUser = "user";
const std::string kPassword = "pass";

long elapsedMs(Clock::time_point start) {
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
}

// onError messages, collected from the bridge thread.
class ErrorLog {
public:
    std::function<void(const std::string&)> callback() {
        return [this](const std::string& error) {
            std::lock_guard lock(mutex_);
            errors_.push_back(error);
            cv_.notify_all();
        };
    }
    // The first error, waiting up to timeout for one; empty if none came.
    std::string waitFirst(std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, timeout, [this] { return !errors_.empty(); });
        return errors_.empty() ? std::string{} : errors_.front();
    }
    std::vector<std::string> all() {
        std::lock_guard lock(mutex_);
        return errors_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::string> errors_;
};

// Hex SHA-256 of the SubjectPublicKeyInfo of the first certificate in a PEM file.
std::string pinOf(const std::string& pemFile) {
    FILE* file = std::fopen(pemFile.c_str(), "r");
    if (!file)
        return {};
    X509* cert = PEM_read_X509(file, nullptr, nullptr, nullptr);
    std::fclose(file);
    if (!cert)
        return {};
    unsigned char* der = nullptr;
    int length = i2d_PUBKEY(X509_get0_pubkey(cert), &der);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digestLength = 0;
    EVP_Digest(der, static_cast<std::size_t>(length), digest, &digestLength, EVP_sha256(), nullptr);
    OPENSSL_free(der);
    X509_free(cert);
    std::string hex;
    char byte[3];
    for (unsigned int i = 0; i < digestLength; ++i) {
        std::snprintf(byte, sizeof byte, "%02X", digest[i]);
        hex += byte;
    }
    return hex;
}

// A TCP listener on 127.0.0.1 that accepts (via the backlog) but never says anything.
struct SilentServer {
    int fd = -1;
    uint16_t port = 0;
    SilentServer() {
        fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
        ::listen(fd, 16);
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
        port = ntohs(address.sin_port);
    }
    ~SilentServer() { ::close(fd); }
};

// A blocking TLS server on a loopback address that echoes everything on one connection.
class TlsEchoServer {
public:
    TlsEchoServer(const icepunch::support::TestCertificate& cert, bool ipv6) {
        ctx_ = SSL_CTX_new(TLS_server_method());
        SSL_CTX_use_certificate_file(ctx_, cert.certFile.c_str(), SSL_FILETYPE_PEM);
        SSL_CTX_use_PrivateKey_file(ctx_, cert.keyFile.c_str(), SSL_FILETYPE_PEM);
        sockaddr_storage address{};
        socklen_t length;
        if (ipv6) {
            auto* a = reinterpret_cast<sockaddr_in6*>(&address);
            a->sin6_family = AF_INET6;
            a->sin6_addr = in6addr_loopback;
            length = sizeof *a;
        } else {
            auto* a = reinterpret_cast<sockaddr_in*>(&address);
            a->sin_family = AF_INET;
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            length = sizeof *a;
        }
        fd_ = ::socket(address.ss_family, SOCK_STREAM, 0);
        ::bind(fd_, reinterpret_cast<sockaddr*>(&address), length);
        ::listen(fd_, 4);
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
        port_ = ntohs(ipv6 ? reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                           : reinterpret_cast<sockaddr_in*>(&address)->sin_port);
        thread_ = std::thread([this] { serveOne(); });
    }
    ~TlsEchoServer() {
        ::shutdown(fd_, SHUT_RDWR); // unblocks accept() if nobody came
        thread_.join();
        ::close(fd_);
        SSL_CTX_free(ctx_);
    }
    uint16_t port() const { return port_; }

private:
    void serveOne() {
        int client = ::accept(fd_, nullptr, nullptr);
        if (client < 0)
            return;
        SSL* ssl = SSL_new(ctx_);
        SSL_set_fd(ssl, client);
        if (SSL_accept(ssl) == 1) {
            char buffer[16384];
            for (;;) {
                int n = SSL_read(ssl, buffer, sizeof buffer);
                if (n <= 0 || SSL_write(ssl, buffer, n) != n)
                    break;
            }
        }
        SSL_free(ssl);
        ::close(client);
    }

    SSL_CTX* ctx_ = nullptr;
    int fd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
};

int connectTo(const std::string& host, uint16_t port);

// Sends size patterned bytes through fd while reading the echo (starting late, so that every
// buffer on the way fills up); true if all came back unchanged.
bool echoRoundTrip(int fd, std::size_t size, std::chrono::milliseconds readDelay) {
    auto byteAt = [](std::size_t i) {
        return static_cast<char>((i * 7 + i / 251) & 0xff);
    };
    std::thread writer([&] {
        std::string chunk;
        for (std::size_t sent = 0; sent < size;) {
            chunk.clear();
            for (std::size_t i = sent; i < std::min(size, sent + 65536); ++i)
                chunk += byteAt(i);
            ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
            if (n <= 0)
                return;
            sent += static_cast<std::size_t>(n);
        }
    });
    std::this_thread::sleep_for(readDelay);
    std::size_t received = 0;
    bool same = true;
    char buffer[65536];
    while (received < size) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 5000) <= 0)
            break;
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; ++i)
            same = same && buffer[i] == byteAt(received + static_cast<std::size_t>(i));
        received += static_cast<std::size_t>(n);
    }
    ::shutdown(fd, SHUT_RDWR);
    writer.join();
    return same && received == size;
}

// A TCP port on 127.0.0.1 with nobody listening (bound then released).
uint16_t closedPort() {
    SilentServer probe;
    uint16_t port = probe.port;
    return port; // the listener closes when probe goes out of scope
}

int connectTo(const std::string& host, uint16_t port) {
    sockaddr_storage address{};
    socklen_t length;
    if (auto* a6 = reinterpret_cast<sockaddr_in6*>(&address);
        ::inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        length = sizeof *a6;
    } else {
        auto* a4 = reinterpret_cast<sockaddr_in*>(&address);
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        ::inet_pton(AF_INET, host.c_str(), &a4->sin_addr);
        length = sizeof *a4;
    }
    int fd = ::socket(address.ss_family, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Whether the peer closed fd (EOF or reset) within timeout.
bool closedWithin(int fd, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    char buffer[256];
    while (Clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        int left = static_cast<int>(
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
        if (::poll(&p, 1, std::max(left, 0)) <= 0)
            return false;
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0)
            return true;
    }
    return false;
}

class TlsBridgeTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        CoturnOptions options;
        options.tls = true;
        options.user = kUser;
        options.password = kPassword;
        auto started = CoturnProcess::start(options);
        ASSERT_TRUE(started.ok()) << started.error().message;
        coturn_ = std::move(started.value()).release();
    }
    static void TearDownTestSuite() {
        delete coturn_;
        coturn_ = nullptr;
    }
    void SetUp() override { ASSERT_NE(coturn_, nullptr); }

    TlsBridgeOptions options(const std::string& serverName) {
        TlsBridgeOptions o;
        o.serverAddress = "127.0.0.1";
        o.serverPort = coturn_->tlsPort();
        o.serverName = serverName;
        o.tls.caFile = coturn_->caFile();
        o.onError = errors_.callback();
        return o;
    }

    std::unique_ptr<TlsBridge> startBridge(TlsBridgeOptions o) {
        auto bridge = TlsBridge::start(std::move(o));
        EXPECT_TRUE(bridge.ok()) << (bridge.ok() ? "" : bridge.error().message);
        return bridge.ok() ? std::move(bridge.value()) : nullptr;
    }

    icepunch::impl::TurnAllocateResult allocate(const TlsBridge& bridge) {
        return icepunch::impl::turnAllocate(
            ProbeEndpoint{bridge.localAddress(), bridge.localPort(), Transport::Tcp}, kUser,
            kPassword, 5s);
    }

    void expectAllocates(TlsBridgeOptions o) {
        auto bridge = startBridge(std::move(o));
        ASSERT_TRUE(bridge);
        auto result = allocate(*bridge);
        EXPECT_TRUE(result.ok) << result.message << "\n" << coturn_->logTail();
        EXPECT_FALSE(result.relayedAddress.empty());
        EXPECT_NE(result.relayedPort, 0);
        bridge.reset();
        EXPECT_TRUE(errors_.all().empty()) << errors_.all().front();
    }

    // The Allocate fails quickly (the bridge closes the TCP connection) and onError says why.
    std::string expectRejected(TlsBridgeOptions o) {
        auto bridge = startBridge(std::move(o));
        if (!bridge)
            return {};
        auto start = Clock::now();
        auto result = allocate(*bridge);
        EXPECT_FALSE(result.ok);
        EXPECT_LT(elapsedMs(start), 3000) << result.message;
        std::string error = errors_.waitFirst(2s);
        EXPECT_FALSE(error.empty());
        return error;
    }

    static CoturnProcess* coturn_;
    ErrorLog errors_;
};

CoturnProcess* TlsBridgeTest::coturn_ = nullptr;

TEST_F(TlsBridgeTest, AllocatesWithTheRightCaAndHostname) {
    auto o = options("localhost");
    EXPECT_EQ(TlsBridge::start(o).value()->localAddress(), "127.0.0.1");
    expectAllocates(o);
}

TEST_F(TlsBridgeTest, AllocatesWithTheRightCaAndIpAddress) {
    expectAllocates(options("127.0.0.1"));
}

TEST_F(TlsBridgeTest, AllocatesWithTheServerAddressAsNameWhenNoneIsGiven) {
    expectAllocates(options(""));
}

TEST_F(TlsBridgeTest, SystemStoreRejectsTheSelfSignedCertificate) {
    auto o = options("localhost");
    o.tls.caFile.clear();
    std::string error = expectRejected(o);
    EXPECT_NE(error.find("certificate"), std::string::npos) << error;
    EXPECT_NE(error.find("TLS certificate rejected"), std::string::npos) << error;
}

TEST_F(TlsBridgeTest, AnotherCaIsRejected) {
    std::string dir = coturn_->directory() + "/other-ca";
    std::filesystem::create_directories(dir);
    auto other = icepunch::support::makeTestCertificate(dir);
    ASSERT_TRUE(other.ok()) << other.error().message;
    auto o = options("localhost");
    o.tls.caFile = other->caFile;
    std::string error = expectRejected(o);
    EXPECT_NE(error.find("TLS certificate rejected"), std::string::npos) << error;
}

TEST_F(TlsBridgeTest, WrongHostnameIsRejected) {
    std::string error = expectRejected(options("turn.example.com"));
    EXPECT_NE(error.find("hostname mismatch"), std::string::npos) << error;
    EXPECT_NE(error.find("turn.example.com"), std::string::npos) << error;
}

TEST_F(TlsBridgeTest, WrongIpAddressIsRejected) {
    std::string error = expectRejected(options("127.0.0.2"));
    EXPECT_NE(error.find("IP address mismatch"), std::string::npos) << error;
}

TEST_F(TlsBridgeTest, TlsServerNameOverridesTheServerName) {
    auto o = options("turn.example.com");
    o.tls.serverName = "localhost";
    expectAllocates(o);
}

TEST_F(TlsBridgeTest, AllowUntrustedAcceptsAnyCertificate) {
    auto o = options("turn.example.com");
    o.tls.caFile.clear();
    o.tls.allowUntrusted = true;
    expectAllocates(o);
}

TEST_F(TlsBridgeTest, CorrectPinIsAccepted) {
    std::string pin = pinOf(coturn_->directory() + "/server-cert.pem");
    ASSERT_EQ(pin.size(), 64u);
    auto o = options("localhost");
    // Upper case with colons every two digits: the accepted spelling is liberal.
    std::string spelled;
    for (std::size_t i = 0; i < pin.size(); i += 2) {
        if (i)
            spelled += ':';
        spelled.append(pin, i, 2);
    }
    o.tls.pinSha256 = spelled;
    expectAllocates(o);
}

TEST_F(TlsBridgeTest, PinAloneWorksWithAllowUntrusted) {
    auto o = options("localhost");
    o.tls.caFile.clear();
    o.tls.allowUntrusted = true;
    o.tls.pinSha256 = pinOf(coturn_->directory() + "/server-cert.pem");
    expectAllocates(o);
}

TEST_F(TlsBridgeTest, WrongPinIsRejected) {
    auto o = options("localhost");
    o.tls.pinSha256 = std::string(64, 'a');
    std::string error = expectRejected(o);
    EXPECT_NE(error.find("pin"), std::string::npos) << error;
    std::string pin = pinOf(coturn_->directory() + "/server-cert.pem");
    for (char& c : pin)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_NE(error.find(pin), std::string::npos) << error;
}

TEST_F(TlsBridgeTest, MalformedPinOrCaFileFailsAtStart) {
    auto o = options("localhost");
    o.tls.pinSha256 = "not-a-pin";
    EXPECT_FALSE(TlsBridge::start(o).ok());
    o = options("localhost");
    o.tls.caFile = coturn_->directory() + "/missing.pem";
    EXPECT_FALSE(TlsBridge::start(o).ok());
    o = options("localhost");
    o.serverAddress = "turn.example.com";
    EXPECT_FALSE(TlsBridge::start(o).ok());
}

TEST_F(TlsBridgeTest, ClosedServerPortReportsConnectionRefused) {
    auto o = options("localhost");
    o.serverPort = closedPort();
    auto bridge = startBridge(o);
    ASSERT_TRUE(bridge);
    auto start = Clock::now();
    auto result = allocate(*bridge);
    EXPECT_FALSE(result.ok);
    EXPECT_LT(elapsedMs(start), 3000) << result.message;
    std::string error = errors_.waitFirst(2s);
    EXPECT_NE(error.find("connection refused"), std::string::npos) << error;
}

TEST_F(TlsBridgeTest, SilentServerTimesOutTheHandshake) {
    SilentServer silent;
    auto o = options("localhost");
    o.serverPort = silent.port;
    o.handshakeTimeout = 300ms;
    auto bridge = startBridge(o);
    ASSERT_TRUE(bridge);
    int fd = connectTo(bridge->localAddress(), bridge->localPort());
    ASSERT_GE(fd, 0);
    auto start = Clock::now();
    EXPECT_TRUE(closedWithin(fd, 3s));
    EXPECT_LT(elapsedMs(start), 2000);
    ::close(fd);
    std::string error = errors_.waitFirst(1s);
    EXPECT_NE(error.find("TLS handshake timed out after 300 ms"), std::string::npos) << error;
}

TEST_F(TlsBridgeTest, DataSentBeforeTheHandshakeIsDelivered) {
    // turnAllocate writes its first request right after connect, long before the TLS handshake
    // with coturn can have finished; several in a row also exercise many connections at once.
    auto bridge = startBridge(options("localhost"));
    ASSERT_TRUE(bridge);
    for (int i = 0; i < 5; ++i) {
        auto result = allocate(*bridge);
        EXPECT_TRUE(result.ok) << result.message;
    }
}

TEST_F(TlsBridgeTest, DestroyingWithLiveConnectionsIsPromptAndClosesThem) {
    SilentServer silent;
    auto o = options("localhost");
    auto bridge = startBridge(o);
    ASSERT_TRUE(bridge);
    o.serverPort = silent.port; // a second bridge whose connection stays in the handshake
    auto stuck = startBridge(o);
    ASSERT_TRUE(stuck);

    std::vector<int> fds;
    for (int i = 0; i < 3; ++i)
        fds.push_back(connectTo(bridge->localAddress(), bridge->localPort()));
    fds.push_back(connectTo(stuck->localAddress(), stuck->localPort()));
    for (int fd : fds)
        ASSERT_GE(fd, 0);
    // An allocation through the bridge proves the connections are really up before teardown.
    auto result = allocate(*bridge);
    EXPECT_TRUE(result.ok) << result.message;

    auto start = Clock::now();
    bridge.reset();
    stuck.reset();
    EXPECT_LT(elapsedMs(start), 500);
    for (int fd : fds) {
        EXPECT_TRUE(closedWithin(fd, 1s));
        ::close(fd);
    }
    EXPECT_TRUE(errors_.all().empty()) << errors_.all().front();
}

TEST_F(TlsBridgeTest, BulkDataBothWaysSurvivesASlowReader) {
    std::string dir = coturn_->directory() + "/echo4";
    std::filesystem::create_directories(dir);
    auto cert = icepunch::support::makeTestCertificate(dir);
    ASSERT_TRUE(cert.ok()) << cert.error().message;
    TlsEchoServer echo(*cert, false);
    auto o = options("localhost");
    o.serverPort = echo.port();
    o.tls.caFile = cert->caFile;
    auto bridge = startBridge(o);
    ASSERT_TRUE(bridge);
    int fd = connectTo(bridge->localAddress(), bridge->localPort());
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(echoRoundTrip(fd, 8 * 1024 * 1024, 500ms));
    ::close(fd);
}

TEST_F(TlsBridgeTest, Ipv6ServerGetsAnIpv6Listener) {
    std::string dir = coturn_->directory() + "/echo6";
    std::filesystem::create_directories(dir);
    auto cert = icepunch::support::makeTestCertificate(dir);
    ASSERT_TRUE(cert.ok()) << cert.error().message;
    TlsEchoServer echo(*cert, true);
    auto o = options("::1");
    o.serverAddress = "::1";
    o.serverPort = echo.port();
    o.tls.caFile = cert->caFile;
    auto bridge = startBridge(o);
    ASSERT_TRUE(bridge);
    EXPECT_EQ(bridge->localAddress(), "::1");
    int fd = connectTo(bridge->localAddress(), bridge->localPort());
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(echoRoundTrip(fd, 100000, 0ms));
    ::close(fd);
    EXPECT_TRUE(errors_.all().empty()) << errors_.all().front();
}

TEST_F(TlsBridgeTest, GarbageFromTheServerFailsTheHandshake) {
    SilentServer garbage;
    auto o = options("localhost");
    o.serverPort = garbage.port;
    auto bridge = startBridge(o);
    ASSERT_TRUE(bridge);
    int fd = connectTo(bridge->localAddress(), bridge->localPort());
    ASSERT_GE(fd, 0);
    int server = ::accept(garbage.fd, nullptr, nullptr);
    ASSERT_GE(server, 0);
    std::string junk = "HTTP/1.1 400 Bad Request\r\n\r\n" + std::string(3000, '\x16');
    ::send(server, junk.data(), junk.size(), MSG_NOSIGNAL);
    EXPECT_TRUE(closedWithin(fd, 3s));
    std::string error = errors_.waitFirst(1s);
    EXPECT_NE(error.find("TLS handshake failed"), std::string::npos) << error;
    ::close(server);
    ::close(fd);
}

} // namespace
