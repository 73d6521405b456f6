// STUN/TURN probes against a real coturn started per test on 127.0.0.1.

#include "impl/turn_probe.hpp"

#include "coturn_process.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <stun/stunagent.h>
#include <stun/stunmessage.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using icepunch::Transport;
using icepunch::impl::ProbeEndpoint;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kUser = "user";
const std::string kPassword = "pass";

// A port free for both UDP and TCP on 127.0.0.1 right now (the OS picks it).
uint16_t freePort() {
    for (int attempt = 0; attempt < 50; ++attempt) {
        int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        if (::bind(udp, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            ::getsockname(udp, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
            ::close(udp);
            continue;
        }
        int tcp = ::socket(AF_INET, SOCK_STREAM, 0);
        bool tcpFree = ::bind(tcp, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
        ::close(tcp);
        ::close(udp);
        if (tcpFree)
            return ntohs(address.sin_port);
    }
    return 0;
}

long elapsedMs(Clock::time_point start) {
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
}

// One coturn on 127.0.0.1 for one test (ports picked by the support helper); stopped by PID
// when this goes out of scope.
class Coturn {
public:
    explicit Coturn(icepunch::support::CoturnOptions options = {}) {
        options.user = kUser;
        options.password = kPassword;
        auto started = icepunch::support::CoturnProcess::start(options);
        if (started.ok())
            process_ = std::move(started.value());
        else
            error_ = started.error().message;
    }

    bool ready() const { return process_ != nullptr; }
    std::chrono::milliseconds startup() const { return process_->startupTime(); }
    ProbeEndpoint endpoint(Transport transport) const {
        return {process_->listenAddress(), process_->port(), transport};
    }
    std::string log() const { return process_ ? process_->logTail(40) : error_; }

private:
    std::unique_ptr<icepunch::support::CoturnProcess> process_;
    std::string error_;
};

class TurnProbeTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::access("/usr/bin/turnserver", X_OK) != 0 &&
            ::access("/usr/local/bin/turnserver", X_OK) != 0)
            GTEST_SKIP() << "turnserver (coturn) is not installed";
    }
};

#define ASSERT_COTURN_READY(coturn) ASSERT_TRUE((coturn).ready()) << (coturn).log()

TEST_F(TurnProbeTest, BindingReportsTheMappedLoopbackAddress) {
    Coturn coturn;
    ASSERT_COTURN_READY(coturn);
    auto result = icepunch::impl::stunBinding(coturn.endpoint(Transport::Udp), 2000ms);
    ASSERT_TRUE(result.ok) << result.error;
    EXPECT_EQ(result.mappedAddress, "127.0.0.1");
    EXPECT_EQ(result.mappedPort, result.localPort);
    EXPECT_NE(result.localPort, 0);
    EXPECT_GT(result.rtt.count(), 0);
    std::cout << "binding rtt " << result.rtt.count() << " us, coturn ready after "
              << coturn.startup().count() << " ms\n";

    auto tcp = icepunch::impl::stunBinding(coturn.endpoint(Transport::Tcp), 2000ms);
    ASSERT_TRUE(tcp.ok) << tcp.error;
    EXPECT_EQ(tcp.mappedAddress, "127.0.0.1");
    EXPECT_EQ(tcp.mappedPort, tcp.localPort);
}

TEST_F(TurnProbeTest, AllocateOverUdpAndRelease) {
    Coturn coturn;
    ASSERT_COTURN_READY(coturn);
    auto start = Clock::now();
    auto result =
        icepunch::impl::turnAllocate(coturn.endpoint(Transport::Udp), kUser, kPassword, 3000ms);
    auto took = elapsedMs(start);
    ASSERT_TRUE(result.ok) << result.message;
    EXPECT_EQ(result.relayedAddress, "127.0.0.1");
    EXPECT_NE(result.relayedPort, 0);
    EXPECT_EQ(result.mappedAddress, "127.0.0.1");
    EXPECT_EQ(result.mappedPort, result.localPort);
    EXPECT_GT(result.lifetime.count(), 0);
    EXPECT_TRUE(result.authenticated);
    EXPECT_TRUE(result.released) << result.releaseError;
    std::cout << "UDP: 401 challenge after " << result.challengeRtt.count()
              << " us, authenticated allocate rtt " << result.rtt.count() << " us, whole call "
              << took << " ms, lifetime " << result.lifetime.count() << " s\n";
}

TEST_F(TurnProbeTest, AllocateOverTcpAndRelease) {
    Coturn coturn;
    ASSERT_COTURN_READY(coturn);
    auto result =
        icepunch::impl::turnAllocate(coturn.endpoint(Transport::Tcp), kUser, kPassword, 3000ms);
    ASSERT_TRUE(result.ok) << result.message;
    EXPECT_FALSE(result.relayedAddress.empty());
    EXPECT_NE(result.relayedPort, 0);
    EXPECT_GT(result.lifetime.count(), 0);
    EXPECT_TRUE(result.released) << result.releaseError;
    std::cout << "TCP: 401 challenge after " << result.challengeRtt.count()
              << " us, authenticated allocate rtt " << result.rtt.count() << " us\n";
}

TEST_F(TurnProbeTest, AllocationsFromOnePortDoNotCollideAfterRelease) {
    Coturn coturn;
    ASSERT_COTURN_READY(coturn);
    for (int i = 0; i < 3; ++i) {
        auto result =
            icepunch::impl::turnAllocate(coturn.endpoint(Transport::Udp), kUser, kPassword, 3000ms);
        ASSERT_TRUE(result.ok) << result.message;
        EXPECT_TRUE(result.released) << result.releaseError;
    }
}

TEST_F(TurnProbeTest, WrongPasswordSaysSoWithinTheTimeout) {
    Coturn coturn;
    ASSERT_COTURN_READY(coturn);
    auto start = Clock::now();
    auto result =
        icepunch::impl::turnAllocate(coturn.endpoint(Transport::Udp), kUser, "wrong", 3000ms);
    auto took = elapsedMs(start);
    EXPECT_FALSE(result.ok);
    EXPECT_EQ(result.stunError, 401);
    EXPECT_NE(result.message.find("wrong username or password"), std::string::npos)
        << result.message;
    EXPECT_NE(result.message.find("401 Unauthorized"), std::string::npos) << result.message;
    EXPECT_EQ(result.reason, "Unauthorized"); // trimmed of coturn's padding
    EXPECT_LT(took, 3000);
    std::cout << "wrong password: \"" << result.message << "\" after " << took << " ms\n";
}

TEST_F(TurnProbeTest, NoCredentialsSaysTheServerWantsThem) {
    Coturn coturn;
    ASSERT_COTURN_READY(coturn);
    auto result = icepunch::impl::turnAllocate(coturn.endpoint(Transport::Udp), "", "", 3000ms);
    EXPECT_FALSE(result.ok);
    EXPECT_EQ(result.stunError, 401);
    EXPECT_NE(result.message.find("needs a username and password"), std::string::npos)
        << result.message;
}

TEST_F(TurnProbeTest, UnreachableUdpServerTimesOutInWords) {
    uint16_t port = freePort();
    auto start = Clock::now();
    auto result =
        icepunch::impl::turnAllocate({"127.0.0.1", port, Transport::Udp}, kUser, kPassword, 800ms);
    auto took = elapsedMs(start);
    EXPECT_FALSE(result.ok);
    EXPECT_NE(result.message.find("no response from 127.0.0.1:" + std::to_string(port)),
              std::string::npos)
        << result.message;
    EXPECT_NE(result.message.find("within 800 ms"), std::string::npos) << result.message;
    EXPECT_GE(took, 790);
    EXPECT_LT(took, 800 + 150);

    auto binding = icepunch::impl::stunBinding({"127.0.0.1", port, Transport::Udp}, 500ms);
    EXPECT_FALSE(binding.ok);
    EXPECT_NE(binding.error.find("no response"), std::string::npos) << binding.error;
}

TEST_F(TurnProbeTest, ClosedTcpPortIsConnectionRefused) {
    uint16_t port = freePort();
    auto start = Clock::now();
    auto result =
        icepunch::impl::turnAllocate({"127.0.0.1", port, Transport::Tcp}, kUser, kPassword, 2000ms);
    EXPECT_FALSE(result.ok);
    EXPECT_NE(result.message.find("connection refused"), std::string::npos) << result.message;
    EXPECT_LT(elapsedMs(start), 500);
}

TEST_F(TurnProbeTest, StunOnlyServerRefusesAllocateInWords) {
    icepunch::support::CoturnOptions options;
    options.stunOnly = true;
    Coturn coturn(options);
    ASSERT_COTURN_READY(coturn);
    auto start = Clock::now();
    auto result =
        icepunch::impl::turnAllocate(coturn.endpoint(Transport::Udp), kUser, kPassword, 1500ms);
    auto took = elapsedMs(start);
    EXPECT_FALSE(result.ok);
    // coturn --stun-only drops Allocate silently; the probe tells that from a dead server.
    EXPECT_NE(result.message.find("STUN-only"), std::string::npos) << result.message;
    EXPECT_LT(took, 1500 + 150);
    std::cout << "stun-only: \"" << result.message << "\" after " << took << " ms\n";
}

TEST_F(TurnProbeTest, TryAlternateIsReportedNotFollowed) {
    icepunch::support::CoturnOptions options;
    options.alternateServers = {"127.0.0.2:3478"};
    Coturn coturn(options);
    ASSERT_COTURN_READY(coturn);
    auto result =
        icepunch::impl::turnAllocate(coturn.endpoint(Transport::Udp), kUser, kPassword, 2000ms);
    EXPECT_FALSE(result.ok);
    EXPECT_EQ(result.stunError, 300);
    EXPECT_EQ(result.alternateServer, "127.0.0.2:3478");
    EXPECT_NE(result.message.find("300 Try Alternate"), std::string::npos) << result.message;
}

TEST_F(TurnProbeTest, CancellationReturnsPromptly) {
    uint16_t port = freePort();
    std::atomic<bool> cancel{false};
    std::thread canceller([&] {
        std::this_thread::sleep_for(200ms);
        cancel = true;
    });
    auto start = Clock::now();
    auto result = icepunch::impl::turnAllocate({"127.0.0.1", port, Transport::Udp}, kUser,
                                               kPassword, 10000ms, &cancel);
    auto took = elapsedMs(start);
    canceller.join();
    EXPECT_FALSE(result.ok);
    EXPECT_EQ(result.message, "cancelled");
    EXPECT_LT(took, 200 + 100);

    std::atomic<bool> already{true};
    auto binding =
        icepunch::impl::stunBinding({"127.0.0.1", port, Transport::Udp}, 10000ms, &already);
    EXPECT_EQ(binding.error, "cancelled");
}

TEST_F(TurnProbeTest, RelayCheckPassesDataBothWays) {
    Coturn coturn;
    ASSERT_COTURN_READY(coturn);
    for (Transport transport : {Transport::Udp, Transport::Tcp}) {
        auto result =
            icepunch::impl::turnRelayCheck(coturn.endpoint(transport), kUser, kPassword, 3000ms);
        ASSERT_TRUE(result.ok) << result.message << "\n" << coturn.log();
        EXPECT_GT(result.rtt1to2.count(), 0);
        EXPECT_GT(result.rtt2to1.count(), 0);
        EXPECT_TRUE(result.released);
        std::cout << (transport == Transport::Udp ? "UDP" : "TCP") << " relay 1->2 "
                  << result.rtt1to2.count() << " us, 2->1 " << result.rtt2to1.count() << " us\n";
    }
}

TEST_F(TurnProbeTest, RelayCheckWithWrongPasswordFailsInWords) {
    Coturn coturn;
    ASSERT_COTURN_READY(coturn);
    auto result =
        icepunch::impl::turnRelayCheck(coturn.endpoint(Transport::Udp), kUser, "nope", 2000ms);
    EXPECT_FALSE(result.ok);
    EXPECT_NE(result.message.find("wrong username or password"), std::string::npos)
        << result.message;
}

// A fake TURN server on UDP that challenges with 401 and then answers the authenticated
// Allocate with a well-formed success whose MESSAGE-INTEGRITY uses the wrong key.
class ForgingServer {
public:
    ForgingServer() {
        fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
        port_ = ntohs(address.sin_port);
        thread_ = std::thread([this] { run(); });
    }
    ~ForgingServer() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    uint16_t port() const { return port_; }
    int forged() const { return forged_; }

private:
    void run() {
        static const uint16_t known[] = {STUN_ATTRIBUTE_REQUESTED_TRANSPORT,
                                         STUN_ATTRIBUTE_USERNAME,
                                         STUN_ATTRIBUTE_MESSAGE_INTEGRITY,
                                         STUN_ATTRIBUTE_REALM,
                                         STUN_ATTRIBUTE_NONCE,
                                         STUN_ATTRIBUTE_LIFETIME,
                                         0};
        StunAgent agent;
        stun_agent_init(&agent, known, STUN_COMPATIBILITY_RFC5389,
                        StunAgentUsageFlags(STUN_AGENT_USAGE_IGNORE_CREDENTIALS |
                                            STUN_AGENT_USAGE_USE_FINGERPRINT));
        while (!stop_) {
            pollfd pfd{fd_, POLLIN, 0};
            if (::poll(&pfd, 1, 20) <= 0)
                continue;
            uint8_t in[1500], out[1500];
            sockaddr_storage from{};
            socklen_t fromLength = sizeof from;
            ssize_t n =
                ::recvfrom(fd_, in, sizeof in, 0, reinterpret_cast<sockaddr*>(&from), &fromLength);
            StunMessage request{}, response{};
            if (n <= 0 || stun_agent_validate(&agent, &request, in, std::size_t(n), nullptr,
                                              nullptr) != STUN_VALIDATION_SUCCESS)
                continue;
            std::size_t length = 0;
            if (!stun_message_has_attribute(&request, STUN_ATTRIBUTE_USERNAME)) {
                stun_agent_init_error(&agent, &response, out, sizeof out, &request,
                                      STUN_ERROR_UNAUTHORIZED);
                stun_message_append_string(&response, STUN_ATTRIBUTE_REALM, "icepunch.test");
                stun_message_append_string(&response, STUN_ATTRIBUTE_NONCE, "0123456789abcdef");
                length = stun_agent_finish_message(&agent, &response, nullptr, 0);
            } else {
                stun_agent_init_response(&agent, &response, out, sizeof out, &request);
                stun_message_append_xor_addr(&response, STUN_ATTRIBUTE_XOR_RELAYED_ADDRESS, &from,
                                             fromLength);
                stun_message_append_xor_addr(&response, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, &from,
                                             fromLength);
                stun_message_append32(&response, STUN_ATTRIBUTE_LIFETIME, 600);
                static const uint8_t wrongKey[] = "not the long-term key";
                length =
                    stun_agent_finish_message(&agent, &response, wrongKey, sizeof wrongKey - 1);
                ++forged_;
            }
            ::sendto(fd_, out, length, 0, reinterpret_cast<sockaddr*>(&from), fromLength);
        }
    }

    int fd_ = -1;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> forged_{0};
    std::thread thread_;
};

TEST(TurnProbeValidation, ResponseWithWrongIntegrityIsIgnored) {
    ForgingServer server;
    auto start = Clock::now();
    auto result = icepunch::impl::turnAllocate({"127.0.0.1", server.port(), Transport::Udp}, kUser,
                                               kPassword, 700ms);
    auto took = elapsedMs(start);
    EXPECT_FALSE(result.ok) << "accepted a forged success response";
    EXPECT_GT(server.forged(), 0);
    EXPECT_NE(result.message.find("no response"), std::string::npos) << result.message;
    EXPECT_NE(result.message.find("MESSAGE-INTEGRITY"), std::string::npos) << result.message;
    EXPECT_LT(took, 700 + 150);
}

TEST(StunErrorName, NamesTheTurnCodes) {
    EXPECT_EQ(icepunch::impl::stunErrorName(300), "Try Alternate");
    EXPECT_EQ(icepunch::impl::stunErrorName(401), "Unauthorized");
    EXPECT_EQ(icepunch::impl::stunErrorName(437), "Allocation Mismatch");
    EXPECT_EQ(icepunch::impl::stunErrorName(438), "Stale Nonce");
    EXPECT_EQ(icepunch::impl::stunErrorName(440), "Address Family not Supported");
    EXPECT_EQ(icepunch::impl::stunErrorName(442), "Unsupported Transport Protocol");
    EXPECT_EQ(icepunch::impl::stunErrorName(486), "Allocation Quota Reached");
    EXPECT_EQ(icepunch::impl::stunErrorName(508), "Insufficient Capacity");
    EXPECT_EQ(icepunch::impl::stunErrorName(599), "Error");
}

} // namespace
