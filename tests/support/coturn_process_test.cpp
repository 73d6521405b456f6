#include "coturn_process.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

using icepunch::support::CoturnOptions;
using icepunch::support::CoturnProcess;

namespace {

struct Socket {
    int fd;
    explicit Socket(int f) : fd(f) {}
    ~Socket() {
        if (fd >= 0)
            ::close(fd);
    }
};

sockaddr_storage endpoint(const std::string& ip, uint16_t port, socklen_t& len) {
    sockaddr_storage ss{};
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof *v4;
    } else {
        inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof *v6;
    }
    return ss;
}

// One Binding transaction with a few retransmissions; true on a matching success response.
bool bindingAnswered(const std::string& ip, uint16_t port) {
    socklen_t len = 0;
    sockaddr_storage ss = endpoint(ip, port, len);
    Socket s(::socket(ss.ss_family, SOCK_DGRAM, 0));
    if (s.fd < 0 || ::connect(s.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0)
        return false;
    std::array<uint8_t, 20> req{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 'i', 'c',
                                'e',  'p',  'u',  'n',  'c',  'h',  't',  'e',  's', 't'};
    for (int attempt = 0; attempt < 5; ++attempt) {
        if (::send(s.fd, req.data(), req.size(), 0) != static_cast<ssize_t>(req.size()))
            return false;
        pollfd pfd{s.fd, POLLIN, 0};
        if (::poll(&pfd, 1, 200) == 1) {
            std::array<uint8_t, 1500> buf;
            ssize_t n = ::recv(s.fd, buf.data(), buf.size(), 0);
            return n >= 20 && buf[0] == 0x01 && buf[1] == 0x01 &&
                   std::equal(req.begin() + 4, req.end(), buf.begin() + 4);
        }
    }
    return false;
}

bool tcpConnects(const std::string& ip, uint16_t port) {
    socklen_t len = 0;
    sockaddr_storage ss = endpoint(ip, port, len);
    Socket s(::socket(ss.ss_family, SOCK_STREAM, 0));
    return s.fd >= 0 && ::connect(s.fd, reinterpret_cast<sockaddr*>(&ss), len) == 0;
}

bool ipv6LoopbackAvailable() {
    Socket s(::socket(AF_INET6, SOCK_DGRAM, 0));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    return s.fd >= 0 && ::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

CoturnOptions withCredentials() {
    CoturnOptions options;
    options.user = "alice";
    options.password = "wonderland";
    return options;
}

} // namespace

TEST(CoturnProcess, AnswersBindingWithCredentials) {
    auto coturn = CoturnProcess::start(withCredentials());
    ASSERT_TRUE(coturn) << coturn.error().message;
    CoturnProcess& c = **coturn;
    EXPECT_GT(c.port(), 0);
    EXPECT_EQ(c.tlsPort(), 0);
    EXPECT_TRUE(c.running());
    EXPECT_TRUE(bindingAnswered("127.0.0.1", c.port())) << c.logTail();
    EXPECT_TRUE(tcpConnects("127.0.0.1", c.port())) << c.logTail();
    EXPECT_EQ(c.uri("turn", "tcp"),
              "turn:127.0.0.1:" + std::to_string(c.port()) + "?transport=tcp");
    EXPECT_EQ(c.uri("stun"), "stun:127.0.0.1:" + std::to_string(c.port()));
    EXPECT_NE(c.log().find("Coturn-"), std::string::npos) << "log not captured: " << c.log();
}

TEST(CoturnProcess, StopLeavesNoProcessAndNoFiles) {
    auto coturn = CoturnProcess::start(withCredentials());
    ASSERT_TRUE(coturn) << coturn.error().message;
    int pid = (*coturn)->pid();
    std::filesystem::path dir = (*coturn)->directory();
    ASSERT_GT(pid, 0);
    EXPECT_EQ(::kill(pid, 0), 0);
    (*coturn)->stop();
    EXPECT_FALSE((*coturn)->running());
    errno = 0;
    EXPECT_EQ(::kill(pid, 0), -1);
    EXPECT_EQ(errno, ESRCH);
    (*coturn)->stop(); // idempotent
    coturn = icepunch::Error{"destroyed"};
    EXPECT_FALSE(std::filesystem::exists(dir));
}

// Whether another helper holds CoturnProcess's lock `name` (see PortLocks).
bool lockHeld(const std::string& name) {
    const char* tmp = std::getenv("TMPDIR");
    std::string path = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                       "/icepunch-coturn-locks/" + name;
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);
    return held;
}

// A restart is a new turnserver on the same ports (what clients of "the same server" see), and
// the ports are not handed to another helper while it is down.
TEST(CoturnProcess, RestartIsANewServerOnTheSamePorts) {
    auto coturn = CoturnProcess::start(withCredentials());
    ASSERT_TRUE(coturn) << coturn.error().message;
    CoturnProcess& c = **coturn;
    int pid = c.pid();
    uint16_t port = c.port(), minRelay = c.minRelayPort();
    auto restarted = c.restart();
    ASSERT_TRUE(restarted) << restarted.error().message;
    EXPECT_NE(c.pid(), pid);
    errno = 0;
    EXPECT_EQ(::kill(pid, 0), -1); // the old one is gone
    EXPECT_EQ(errno, ESRCH);
    EXPECT_EQ(c.port(), port);
    EXPECT_EQ(c.minRelayPort(), minRelay);
    EXPECT_TRUE(bindingAnswered("127.0.0.1", port)) << c.logTail();
    EXPECT_TRUE(tcpConnects("127.0.0.1", port)) << c.logTail();
    // The port locks were held across the restart (and are now): another helper cannot take
    // them. flock belongs to the open file, so a second open in this process is refused too.
    EXPECT_TRUE(lockHeld("port-" + std::to_string(port % 1024)));
    EXPECT_TRUE(lockHeld("relay-" + std::to_string(minRelay)));
    c.stop();
    EXPECT_FALSE(lockHeld("relay-" + std::to_string(minRelay)));
    EXPECT_FALSE(c.restart()) << "after stop() the ports are not held: no restart";
}

TEST(CoturnProcess, ConcurrentInstancesGetDistinctPorts) {
    icepunch::Result<std::unique_ptr<CoturnProcess>> a = icepunch::Error{"not started"};
    icepunch::Result<std::unique_ptr<CoturnProcess>> b = icepunch::Error{"not started"};
    std::thread ta([&a] { a = CoturnProcess::start(withCredentials()); });
    std::thread tb([&b] { b = CoturnProcess::start(withCredentials()); });
    ta.join();
    tb.join(); // the starting threads are gone: the servers must outlive them
    ASSERT_TRUE(a) << a.error().message;
    ASSERT_TRUE(b) << b.error().message;
    EXPECT_NE((*a)->port(), (*b)->port());
    EXPECT_TRUE((*a)->maxRelayPort() < (*b)->minRelayPort() ||
                (*b)->maxRelayPort() < (*a)->minRelayPort());
    EXPECT_TRUE(bindingAnswered("127.0.0.1", (*a)->port()));
    EXPECT_TRUE(bindingAnswered("127.0.0.1", (*b)->port()));
}

TEST(CoturnProcess, TlsListenerCompletesHandshakeWithGeneratedCa) {
    CoturnOptions options = withCredentials();
    options.tls = true;
    auto coturn = CoturnProcess::start(options);
    ASSERT_TRUE(coturn) << coturn.error().message;
    CoturnProcess& c = **coturn;
    ASSERT_GT(c.tlsPort(), 0);
    EXPECT_NE(c.tlsPort(), c.port());
    EXPECT_TRUE(std::filesystem::exists(c.caFile()));
    EXPECT_EQ(c.uri("turns", "tcp"),
              "turns:127.0.0.1:" + std::to_string(c.tlsPort()) + "?transport=tcp");

    // A verifying TLS 1.2 client trusting only the generated CA (coturn 4.6.1 has no TLS 1.3).
    socklen_t len = 0;
    sockaddr_storage ss = endpoint("127.0.0.1", c.tlsPort(), len);
    Socket s(::socket(AF_INET, SOCK_STREAM, 0));
    ASSERT_EQ(::connect(s.fd, reinterpret_cast<sockaddr*>(&ss), len), 0);
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    ASSERT_NE(ctx, nullptr);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    ASSERT_EQ(SSL_CTX_load_verify_locations(ctx, c.caFile().c_str(), nullptr), 1);
    SSL* ssl = SSL_new(ctx);
    SSL_set1_host(ssl, "127.0.0.1");
    SSL_set_fd(ssl, s.fd);
    EXPECT_EQ(SSL_connect(ssl), 1) << c.logTail();
    EXPECT_EQ(SSL_get_verify_result(ssl), X509_V_OK);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

TEST(CoturnProcess, StunOnlyWithRfc5780AlternateAddress) {
    CoturnOptions options;
    options.stunOnly = true;
    options.altListenAddress = "127.0.0.2";
    auto coturn = CoturnProcess::start(options);
    ASSERT_TRUE(coturn) << coturn.error().message;
    ASSERT_GT((*coturn)->altPort(), 0);
    EXPECT_TRUE(bindingAnswered("127.0.0.2", (*coturn)->port()));
    EXPECT_TRUE(bindingAnswered("127.0.0.1", (*coturn)->altPort()));
}

TEST(CoturnProcess, Ipv6LoopbackUsesBracketsInUri) {
    if (!ipv6LoopbackAvailable())
        GTEST_SKIP() << "no ::1 on this machine";
    CoturnOptions options = withCredentials();
    options.listenAddress = "::1";
    auto coturn = CoturnProcess::start(options);
    ASSERT_TRUE(coturn) << coturn.error().message;
    EXPECT_TRUE(bindingAnswered("::1", (*coturn)->port()));
    EXPECT_EQ((*coturn)->uri("turn", "udp"),
              "turn:[::1]:" + std::to_string((*coturn)->port()) + "?transport=udp");
}

TEST(CoturnProcess, EarlyExitIsReportedWithItsLog) {
    CoturnOptions options;
    options.extraArgs = {"--cert=/nonexistent/cert.pem", "--no-such-option"};
    auto start = std::chrono::steady_clock::now();
    auto coturn = CoturnProcess::start(options);
    ASSERT_FALSE(coturn);
    EXPECT_LT(std::chrono::steady_clock::now() - start, options.startTimeout);
    EXPECT_NE(coturn.error().message.find("unrecognized option"), std::string::npos)
        << coturn.error().message;
}

TEST(CoturnProcess, RejectsUserTogetherWithSecret) {
    CoturnOptions options = withCredentials();
    options.staticAuthSecret = "s3cr3t";
    EXPECT_FALSE(CoturnProcess::start(options));
}

TEST(CoturnProcess, ReportsStartupTime) {
    std::vector<long> ms;
    for (int i = 0; i < 5; ++i) {
        auto coturn = CoturnProcess::start(withCredentials());
        ASSERT_TRUE(coturn) << coturn.error().message;
        ms.push_back(static_cast<long>((*coturn)->startupTime().count()));
    }
    std::sort(ms.begin(), ms.end());
    std::cout << "coturn ready after (ms, sorted):";
    for (long v : ms)
        std::cout << ' ' << v;
    std::cout << "; median " << ms[ms.size() / 2] << " ms\n";
    RecordProperty("coturn_startup_median_ms", static_cast<int>(ms[ms.size() / 2]));
}
