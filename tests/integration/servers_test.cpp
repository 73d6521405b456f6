// Agents and probes against servers that behave unusually: a coturn that redirects every
// Allocate (300 Try Alternate), a coturn with very short lifetimes (refreshes), and Debian's
// stund, a classic RFC 3489 STUN server. Everything runs on loopback; every server is a child
// of this process, stopped by its PID in teardown, also when a test fails.
#include "agent_harness.hpp"
#include "coturn_process.hpp"
#include "impl/stun_nat.hpp"
#include "impl/turn_probe.hpp"

#include <gtest/gtest.h>

#include <stun/stunagent.h>
#include <stun/stunmessage.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

extern char** environ;

namespace icepunch::test {
namespace {

using support::CoturnOptions;
using support::CoturnProcess;
using Clock = std::chrono::steady_clock;

std::unique_ptr<CoturnProcess> startCoturn(const CoturnOptions& options) {
    auto process = CoturnProcess::start(options);
    if (!process) {
        ADD_FAILURE() << "coturn did not start: " << process.error().message;
        return nullptr;
    }
    return std::move(*process);
}

TurnServer turnServer(const CoturnProcess& coturn, const std::string& user,
                      const std::string& pass) {
    TurnServer server;
    server.uri = ServerUri::parse(coturn.uri("turn")).value();
    server.username = user;
    server.password = pass;
    return server;
}

const ServerStatus* turnStatus(Recorder& events) {
    for (const auto& s : events.servers) {
        if (s.uri.isTurn()) {
            return &s;
        }
    }
    return nullptr;
}

size_t countOccurrences(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) {
        ++n;
    }
    return n;
}

// ---------------------------------------------------------------------------------------------
// ALTERNATE-SERVER: coturn A answers every Allocate with 300 Try Alternate pointing at B.

class AlternateServer : public ::testing::Test {
protected:
    void SetUp() override {
        CoturnOptions optionsB;
        optionsB.user = "u";
        optionsB.password = "p";
        optionsB.extraArgs = {"--verbose"}; // logs each request's outcome
        b_ = startCoturn(optionsB);
        ASSERT_TRUE(b_);
        CoturnOptions optionsA = optionsB;
        optionsA.alternateServers = {alternate()};
        a_ = startCoturn(optionsA);
        ASSERT_TRUE(a_);
    }

    std::string alternate() const { return "127.0.0.1:" + std::to_string(b_->port()); }

    std::unique_ptr<CoturnProcess> b_, a_;
};

TEST_F(AlternateServer, ProbeReportsTryAlternateWithTheAlternateAddress) {
    impl::ProbeEndpoint endpoint{a_->listenAddress(), a_->port(), Transport::Udp};
    auto r = impl::turnAllocate(endpoint, "u", "p", 3s);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.stunError, 300) << r.message;
    EXPECT_EQ(r.alternateServer, alternate()) << r.message;
    EXPECT_EQ(impl::stunErrorName(300), "Try Alternate");
    // B itself allocates (the redirect target is a working server).
    auto direct =
        impl::turnAllocate({b_->listenAddress(), b_->port(), Transport::Udp}, "u", "p", 3s);
    EXPECT_TRUE(direct.ok) << direct.message;
}

// libnice 0.1.21 follows 300 for TURN (conncheck.c priv_handle_turn_alternate_server): the
// discovery is re-pointed at ALTERNATE-SERVER and the Allocate starts over there.
TEST_F(AlternateServer, RelayOnlyAgentsFollowTryAlternateToTheSecondServer) {
    auto ca = loopbackConfig(Role::Controlling);
    auto cb = loopbackConfig(Role::Controlled);
    for (auto* c : {&ca, &cb}) {
        c->policy = CandidatePolicy::RelayOnly;
        c->turnServers.push_back(turnServer(*a_, "u", "p")); // only A is configured
    }
    PeerPair peers(ca, cb);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected(15s)) << "A:\n" << a_->logTail() << "\nB:\n" << b_->logTail();
    for (auto* peer : {&peers.a, &peers.b}) {
        std::lock_guard lock(peer->events->mutex);
        bool sawRelay = false;
        for (const auto& c : peer->events->candidates) {
            EXPECT_EQ(c.type, CandidateType::Relayed) << "relay-only policy leaked " << c;
            if (c.type == CandidateType::Relayed) {
                sawRelay = true;
                // The relayed address comes from B's relay port range, not A's.
                EXPECT_GE(c.port, b_->minRelayPort()) << c;
                EXPECT_LE(c.port, b_->maxRelayPort()) << c;
            }
        }
        EXPECT_TRUE(sawRelay);
        ASSERT_TRUE(peer->events->pair);
        EXPECT_TRUE(peer->events->pair->isRelayed());
        EXPECT_GE(peer->events->pair->local.port, b_->minRelayPort());
        EXPECT_LE(peer->events->pair->local.port, b_->maxRelayPort());
        // The status is reported against the configured server (A), which led to a relay.
        const ServerStatus* turn = turnStatus(*peer->events);
        ASSERT_NE(turn, nullptr);
        EXPECT_EQ(turn->uri.port, a_->port());
        EXPECT_TRUE(turn->ok) << turn->message;
        ASSERT_TRUE(turn->candidate);
        EXPECT_GE(turn->candidate->port, b_->minRelayPort());
        EXPECT_LE(turn->candidate->port, b_->maxRelayPort());
    }
    EXPECT_TRUE(exchange(peers.a, peers.b, 200, 200, 32, 10s))
        << peers.b.events->snapshot().received;
    EXPECT_TRUE(exchange(peers.b, peers.a, 200, 200, 32, 10s))
        << peers.a.events->snapshot().received;
    // Evidence from both servers: A redirected, B allocated both relays.
    std::string logA = a_->log(), logB = b_->log();
    EXPECT_GE(countOccurrences(logA, "error 300: Try Alternate"), 2u) << a_->logTail(40);
    EXPECT_EQ(countOccurrences(logA, "ALLOCATE processed, success"), 0u) << a_->logTail(40);
    EXPECT_GE(countOccurrences(logB, "ALLOCATE processed, success"), 2u) << b_->logTail(40);
}

// ---------------------------------------------------------------------------------------------
// Refreshes: a coturn with short lifetimes; data must keep flowing well past every lifetime.

class Refresh : public ::testing::Test {
protected:
    // Sends one numbered datagram each way every `interval` for `duration` after connecting and
    // returns a description of every datagram that did not arrive within `lateness`.
    struct Outcome {
        int sent = 0;
        std::vector<std::string> lost; // "a->b #12 at 3.0 s"
        std::optional<double> firstLossAt;
        std::optional<double> lastArrivalAt; // of a datagram that arrived
    };

    static Outcome keepTalking(PeerPair& peers, std::chrono::milliseconds interval,
                               std::chrono::milliseconds duration,
                               std::chrono::milliseconds lateness, int giveUpAfter) {
        Outcome outcome;
        for (auto* peer : {&peers.a, &peers.b}) {
            std::lock_guard lock(peer->events->mutex);
            peer->events->keepPayloads = true;
            peer->events->payloads.clear();
        }
        auto start = Clock::now();
        int consecutiveLosses = 0;
        for (int i = 0; Clock::now() - start < duration; ++i) {
            auto tick = start + i * interval;
            std::this_thread::sleep_until(tick); // the pacing is the test: time must pass
            auto seconds = std::chrono::duration<double>(Clock::now() - start).count();
            bool lostThisTick = false;
            for (auto [from, to, name] :
                 {std::tuple{&peers.a, &peers.b, "a->b"}, std::tuple{&peers.b, &peers.a, "b->a"}}) {
                std::string payload = std::string(name) + " #" + std::to_string(i);
                auto sent = from->agent->send(from->stream, 1, payload);
                ++outcome.sent;
                bool arrived = sent && to->events->waitFor(
                                           [&] {
                                               for (const auto& p : to->events->payloads) {
                                                   if (p == payload) {
                                                       return true;
                                                   }
                                               }
                                               return false;
                                           },
                                           lateness);
                if (arrived) {
                    outcome.lastArrivalAt = seconds;
                } else {
                    std::ostringstream what;
                    what << payload << " at " << seconds << " s"
                         << (sent ? "" : " (send failed: " + sent.error().message + ")");
                    outcome.lost.push_back(what.str());
                    if (!outcome.firstLossAt) {
                        outcome.firstLossAt = seconds;
                    }
                    lostThisTick = true;
                }
            }
            consecutiveLosses = lostThisTick ? consecutiveLosses + 1 : 0;
            if (consecutiveLosses >= giveUpAfter) {
                break; // the path is gone: no point in waiting out the rest
            }
        }
        return outcome;
    }

    static std::string sessionLines(const CoturnProcess& coturn, size_t last = 24) {
        std::vector<std::string> lines;
        std::istringstream in(coturn.log());
        for (std::string line; std::getline(in, line);) {
            if (line.find("session") != std::string::npos) {
                lines.push_back(line);
            }
        }
        std::string out;
        for (size_t i = lines.size() > last ? lines.size() - last : 0; i < lines.size(); ++i) {
            out += lines[i] + "\n";
        }
        return out;
    }

    // Relay-only agents through `coturn` that connect, then talk for up to `duration`.
    Outcome runThrough(CoturnProcess& coturn, std::chrono::milliseconds duration, int giveUpAfter) {
        auto ca = loopbackConfig(Role::Controlling);
        auto cb = loopbackConfig(Role::Controlled);
        for (auto* c : {&ca, &cb}) {
            c->policy = CandidatePolicy::RelayOnly;
            c->turnServers.push_back(turnServer(coturn, "u", "p"));
        }
        PeerPair peers(ca, cb);
        peers.startTrickle();
        if (!peers.waitConnected(15s) || !peers.a.events->snapshot().pair->isRelayed()) {
            ADD_FAILURE() << "no relayed connection\n" << coturn.logTail();
            return {};
        }
        auto outcome = keepTalking(peers, 250ms, duration, 1s, giveUpAfter);
        std::ostringstream report;
        report << outcome.lost.size() << " of " << outcome.sent << " datagrams lost";
        if (outcome.firstLossAt) {
            report << ", first at " << *outcome.firstLossAt << " s after connecting:";
        }
        for (size_t i = 0; i < outcome.lost.size() && i < 6; ++i) {
            report << "\n  " << outcome.lost[i];
        }
        report << "\ncoturn refreshes: " << countOccurrences(coturn.log(), "REFRESH processed")
               << ", permissions: " << countOccurrences(coturn.log(), "CREATE_PERMISSION processed")
               << ", channel binds: " << countOccurrences(coturn.log(), "CHANNEL_BIND processed")
               << "\ncoturn session log:\n"
               << sessionLines(coturn);
        report_ = report.str();
        for (auto* peer : {&peers.a, &peers.b}) {
            std::lock_guard lock(peer->events->mutex);
            failures_ += peer->events->failures.size();
        }
        return outcome;
    }

    std::string report_;
    size_t failures_ = 0;
};

// coturn 4.6.1 caps an Allocate's lifetime at --max-allocate-lifetime (any value is accepted);
// libnice refreshes at lifetime - 60 s above 120 s and at lifetime / 2 below, so a 10 s
// allocation gets its first Refresh after 5 s. libnice sends no LIFETIME attribute in Allocate or
// Refresh, and coturn answers a Refresh without one with its 600 s default (not capped by
// --max-allocate-lifetime): after the first refresh the allocations live 600 s, so this proves
// one refresh cycle in time (without it coturn frees the allocation at 10 s and data stops), not
// repeated ones. 25 s of traffic spans 2.5 of the original lifetimes.
TEST_F(Refresh, AllocationIsRefreshedBeforeAShortLifetimeEnds) {
    constexpr int kLifetime = 10;
    CoturnOptions options;
    options.user = "u";
    options.password = "p";
    options.maxAllocateLifetime = kLifetime;
    options.extraArgs = {"--verbose"};
    auto coturn = startCoturn(options);
    ASSERT_TRUE(coturn);
    // The server really grants only 10 s to an Allocate.
    auto probe =
        impl::turnAllocate({coturn->listenAddress(), coturn->port(), Transport::Udp}, "u", "p", 3s);
    ASSERT_TRUE(probe.ok) << probe.message;
    EXPECT_EQ(probe.lifetime, std::chrono::seconds(kLifetime));

    auto outcome = runThrough(*coturn, std::chrono::milliseconds(kLifetime * 2500), 8);
    EXPECT_GT(outcome.sent, 150); // 2 x 25 s / 250 ms, minus scheduling slack
    EXPECT_TRUE(outcome.lost.empty()) << report_;
    EXPECT_EQ(failures_, 0u) << report_;
    // Both agents' allocations were refreshed (at about 5 s; the probe's release is a third).
    EXPECT_GE(countOccurrences(coturn->log(), "REFRESH processed, success"), 2u) << report_;
}

// RFC 5766 fixes permissions at 300 s and channel bindings at 600 s, and libnice 0.1.21 refreshes
// them on that fixed schedule (socket/udp-turn.c: 240 s and 540 s), whatever the server does.
// coturn's --permission-lifetime / --channel-lifetime (10 s here) go below the RFC: coturn deletes
// the peer's permission after 10 s and the relayed path goes silent. That part is libnice's
// (icepunch cannot refresh permissions through libnice's API) and pinned here, so that a libnice
// which starts refreshing early shows up. What icepunch adds: both sides notice the silence,
// restart ICE with new allocations and permissions, and the call goes on.
TEST_F(Refresh, ShortPermissionLifetimesBelowTheRfcAreNotRefreshedByLibniceButTheCallRecovers) {
    constexpr int kLifetime = 10;
    CoturnOptions options;
    options.user = "u";
    options.password = "p";
    options.maxAllocateLifetime = kLifetime;
    options.permissionLifetime = kLifetime;
    options.channelLifetime = kLifetime;
    options.extraArgs = {"--verbose"};
    auto coturn = startCoturn(options);
    ASSERT_TRUE(coturn);
    auto outcome = runThrough(*coturn, std::chrono::milliseconds(kLifetime * 2000), 1000);
    ASSERT_TRUE(outcome.firstLossAt) << "data kept flowing: libnice now refreshes permissions "
                                        "early; turn this into a no-loss test\n"
                                     << report_;
    // Everything up to the permission lifetime arrived; the path died with the permission.
    EXPECT_GE(*outcome.firstLossAt, kLifetime - 1.0) << report_;
    EXPECT_LE(*outcome.firstLossAt, kLifetime + 2.0) << report_;
    EXPECT_GE(countOccurrences(coturn->log(), "peer 127.0.0.1 deleted"), 1u) << report_;
    // And came back: datagrams arrive again after the loss, on new allocations with new
    // permissions (the first ones were never renewed), and nobody saw "connection lost".
    ASSERT_TRUE(outcome.lastArrivalAt) << report_;
    EXPECT_GE(*outcome.lastArrivalAt, *outcome.firstLossAt + 2.0) << report_;
    EXPECT_GT(countOccurrences(coturn->log(), "CREATE_PERMISSION processed, success"), 2u)
        << report_;
    EXPECT_EQ(failures_, 0u) << report_;
}

// ---------------------------------------------------------------------------------------------
// Debian's stun-server package: stund 0.97, a classic RFC 3489 server. It needs two addresses and
// two ports (-h primary -a alternate -p port -o alternate port) and answers Binding requests with
// MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS, XOR-MAPPED-ADDRESS (0x0020, RFC 5389 XOR) and
// SERVER-NAME; it honours CHANGE-REQUEST, but sends no RFC 5780 OTHER-ADDRESS.

constexpr uint16_t kStundPort = 3478, kStundAltPort = 3479;
const char* const kStundPrimary = "127.0.0.1";
const char* const kStundAlternate = "127.0.0.2";

// Whether nothing holds this UDP address (bound without SO_REUSEADDR/SO_REUSEPORT).
bool udpPortFree(const char* ip, uint16_t port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    inet_pton(AF_INET, ip, &sin.sin_addr);
    bool ok = bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0;
    close(fd);
    return ok;
}

class Stund : public ::testing::Test {
protected:
    void SetUp() override {
        if (access("/usr/sbin/stund", X_OK) != 0) {
            GTEST_SKIP() << "stund is not installed (apt-get install stun-server; scripts/setup)";
        }
        for (const char* ip : {kStundPrimary, kStundAlternate}) {
            for (uint16_t port : {kStundPort, kStundAltPort}) {
                if (!udpPortFree(ip, port)) {
                    GTEST_SKIP() << "UDP " << ip << ":" << port
                                 << " is in use; stund needs the fixed ports 3478 and 3479";
                }
            }
        }
        char dir[] = "/tmp/icepunch-stund-XXXXXX";
        ASSERT_NE(mkdtemp(dir), nullptr);
        dir_ = dir;
        logFile_ = dir_ + "/stund.log";
        // Ports are given explicitly even though they are stund's defaults.
        std::vector<std::string> args = {"/usr/sbin/stund",
                                         "-v",
                                         "-h",
                                         kStundPrimary,
                                         "-a",
                                         kStundAlternate,
                                         "-p",
                                         std::to_string(kStundPort),
                                         "-o",
                                         std::to_string(kStundAltPort)};
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, logFile_.c_str(),
                                         O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        pid_t pid = -1;
        int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ASSERT_EQ(rc, 0) << "posix_spawn stund: " << std::strerror(rc);
        pid_ = pid;

        // Ready once it answers a Binding request; poll with short transactions, bounded.
        auto deadline = Clock::now() + 5s;
        while (Clock::now() < deadline) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                FAIL() << "stund exited during startup (status " << status << "):\n" << log();
            }
            auto r = impl::stunBinding(server(), 200ms);
            if (r.ok) {
                return;
            }
        }
        FAIL() << "stund did not answer a Binding request within 5 s:\n" << log();
    }

    void TearDown() override {
        if (pid_ > 0) {
            // Wait for the exit itself (a pidfd becomes readable), at most 3 s, then SIGKILL.
            int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
            kill(pid_, SIGTERM);
            if (pidfd >= 0) {
                pollfd pfd{pidfd, POLLIN, 0};
                if (poll(&pfd, 1, 3000) != 1) {
                    kill(pid_, SIGKILL);
                }
                close(pidfd);
            }
            int status = 0;
            waitpid(pid_, &status, 0);
            pid_ = -1;
        }
        if (!dir_.empty()) {
            std::remove(logFile_.c_str());
            rmdir(dir_.c_str());
        }
    }

    static impl::ProbeEndpoint server() { return {kStundPrimary, kStundPort, Transport::Udp}; }

    std::string log() const {
        std::ifstream in(logFile_);
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }

    pid_t pid_ = -1;
    std::string dir_, logFile_;
};

TEST_F(Stund, BindingReturnsTheMappedAddress) {
    auto r = impl::stunBinding(server(), 2s);
    ASSERT_TRUE(r.ok) << r.error << "\n" << log();
    EXPECT_EQ(r.mappedAddress, "127.0.0.1");
    EXPECT_EQ(r.mappedPort, r.localPort);
    EXPECT_NE(r.mappedPort, 0);
    // RFC 3489 has no OTHER-ADDRESS / RESPONSE-ORIGIN (RFC 5780).
    EXPECT_TRUE(r.otherAddress.empty()) << r.otherAddress;
    EXPECT_EQ(r.otherPort, 0);
    EXPECT_TRUE(r.responseOrigin.empty()) << r.responseOrigin;
}

// What stund actually sends: RFC 3489's CHANGED-ADDRESS (the alternate address and port), which
// RFC 5780 replaced with OTHER-ADDRESS; a raw libnice Binding transaction shows it.
TEST_F(Stund, SendsRfc3489ChangedAddressNotRfc5780OtherAddress) {
    static const uint16_t known[] = {
        STUN_ATTRIBUTE_MAPPED_ADDRESS,  STUN_ATTRIBUTE_SOURCE_ADDRESS,
        STUN_ATTRIBUTE_CHANGED_ADDRESS, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
        STUN_ATTRIBUTE_SOFTWARE,        0};
    StunAgent agent;
    stun_agent_init(&agent, known, STUN_COMPATIBILITY_RFC5389, STUN_AGENT_USAGE_IGNORE_CREDENTIALS);
    StunMessage request;
    uint8_t buffer[256];
    ASSERT_TRUE(stun_agent_init_request(&agent, &request, buffer, sizeof(buffer), STUN_BINDING));
    size_t length = stun_agent_finish_message(&agent, &request, nullptr, 0);
    ASSERT_GT(length, 0u);

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(kStundPort);
    inet_pton(AF_INET, kStundPrimary, &to.sin_addr);
    uint8_t reply[1024];
    ssize_t got = -1;
    // Retransmitted on loss (UDP), at most 5 times 400 ms.
    for (int attempt = 0; attempt < 5 && got < 0; ++attempt) {
        ASSERT_EQ(sendto(fd, buffer, length, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)),
                  static_cast<ssize_t>(length));
        pollfd pfd{fd, POLLIN, 0};
        if (poll(&pfd, 1, 400) == 1) {
            got = recv(fd, reply, sizeof(reply), 0);
        }
    }
    close(fd);
    ASSERT_GT(got, 0) << "no answer from stund\n" << log();
    StunMessage response;
    ASSERT_EQ(
        stun_agent_validate(&agent, &response, reply, static_cast<size_t>(got), nullptr, nullptr),
        STUN_VALIDATION_SUCCESS);
    EXPECT_EQ(stun_message_get_class(&response), STUN_RESPONSE);

    sockaddr_storage changed{};
    socklen_t changedLen = sizeof(changed);
    ASSERT_EQ(
        stun_message_find_addr(&response, STUN_ATTRIBUTE_CHANGED_ADDRESS, &changed, &changedLen),
        STUN_MESSAGE_RETURN_SUCCESS);
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&changed);
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
    EXPECT_STREQ(text, kStundAlternate);
    EXPECT_EQ(ntohs(sin->sin_port), kStundAltPort);
    uint16_t len = 0;
    EXPECT_EQ(stun_message_find(&response, static_cast<StunAttribute>(0x802C), &len), nullptr)
        << "stund sent OTHER-ADDRESS";
    sockaddr_storage mapped{};
    socklen_t mappedLen = sizeof(mapped);
    EXPECT_EQ(stun_message_find_xor_addr(&response, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, &mapped,
                                         &mappedLen),
              STUN_MESSAGE_RETURN_SUCCESS);
}

// What `icepunch nat --server stun:127.0.0.1:3478` runs: it must say plainly that the server
// lacks RFC 5780 and still report what one Binding tells (mapped address, no NAT on loopback).
TEST_F(Stund, NatDiscoverySaysTheServerLacksRfc5780AndReportsWhatItCan) {
    impl::NatDiscoveryOptions options;
    options.serverAddress = kStundPrimary;
    options.serverPort = kStundPort;
    options.testTimeout = 1s;
    auto r = impl::discoverNat(options);
    ASSERT_TRUE(r.ok) << r.error << "\n" << log();
    EXPECT_FALSE(r.udpBlocked);
    EXPECT_EQ(r.mappedAddress, "127.0.0.1");
    EXPECT_EQ(r.mappedPort, r.localPort);
    EXPECT_FALSE(r.behindNat);
    EXPECT_FALSE(r.rfc5780);
    EXPECT_TRUE(r.otherAddress.empty());
    EXPECT_EQ(r.mapping, impl::NatBehaviour::Unknown);
    EXPECT_EQ(r.filtering, impl::NatBehaviour::Unknown);
    EXPECT_FALSE(r.hairpinning);
    bool saysNo5780 = false;
    std::string notes;
    for (const auto& note : r.notes) {
        notes += note + "; ";
        if (note.find("OTHER-ADDRESS") != std::string::npos &&
            note.find("RFC 5780") != std::string::npos) {
            saysNo5780 = true;
        }
    }
    EXPECT_TRUE(saysNo5780) << notes;
}

} // namespace
} // namespace icepunch::test
