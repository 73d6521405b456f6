// Agents against a real coturn that the fixture starts on 127.0.0.1 (ephemeral port) and always
// stops, also when a test fails.
#include "agent_harness.hpp"
#include "coturn_process.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace icepunch::test {
namespace {

using support::CoturnOptions;
using support::CoturnProcess;

// Waits until pred() holds, checking every 20 ms, for at most `timeout`: for conditions that
// only show in a log (coturn's session lines), which raise no event to wait on.
template <typename Pred> bool pollUntil(Pred pred, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= until) {
            return false;
        }
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

class AgentTurn : public ::testing::Test {
protected:
    static CoturnOptions withUser(const std::string& user, const std::string& pass) {
        CoturnOptions options;
        options.user = user;
        options.password = pass;
        return options;
    }

    static CoturnOptions withSecret(const std::string& secret) {
        CoturnOptions options;
        options.staticAuthSecret = secret;
        return options;
    }

    std::unique_ptr<CoturnProcess> startCoturn(CoturnOptions options) {
        auto process = CoturnProcess::start(options);
        if (!process) {
            ADD_FAILURE() << "coturn did not start: " << process.error().message;
            return nullptr;
        }
        return std::move(*process);
    }

    static TurnServer turnServer(const CoturnProcess& coturn, const std::string& user,
                                 const std::string& pass, std::string_view transport = "") {
        TurnServer server;
        server.uri = ServerUri::parse(coturn.uri("turn", transport)).value();
        server.username = user;
        server.password = pass;
        return server;
    }

    // The first STUN (or TURN) server's status, copied under the recorder's lock.
    static std::optional<ServerStatus> findStatus(Recorder& events, bool turn) {
        for (const auto& s : events.snapshot().servers) {
            if (s.uri.isTurn() == turn) {
                return s;
            }
        }
        return std::nullopt;
    }
};

TEST_F(AgentTurn, StunServerAnswersAndNoRedundantSrflxOnLoopback) {
    auto coturn = startCoturn(withUser("u", "p"));
    ASSERT_TRUE(coturn);
    auto config = loopbackConfig(Role::Controlling);
    config.stunServers.push_back(ServerUri::parse(coturn->uri("stun")).value());
    PeerPair peers(config, loopbackConfig(Role::Controlled));
    peers.a.agent->gather(peers.a.stream);
    ASSERT_TRUE(peers.a.events->waitFor([&] { return !peers.a.events->servers.empty(); }));
    auto stun = findStatus(*peers.a.events, false);
    ASSERT_TRUE(stun);
    EXPECT_TRUE(stun->ok) << stun->message;
    // Without a NAT the mapped address equals the host candidate: RFC 8445 5.1.3 drops it as
    // redundant. (A real srflx behind a NAT is covered in the NAT lab.)
    for (const auto& c : peers.a.events->snapshot().candidates) {
        EXPECT_NE(c.type, CandidateType::ServerReflexive) << c;
    }
}

TEST_F(AgentTurn, RelayOnlyOverTurnUdpCarriesDataBothWays) {
    auto coturn = startCoturn(withUser("alice", "secret-pass"));
    ASSERT_TRUE(coturn);
    auto ca = loopbackConfig(Role::Controlling);
    auto cb = loopbackConfig(Role::Controlled);
    for (auto* c : {&ca, &cb}) {
        c->policy = CandidatePolicy::RelayOnly;
        c->turnServers.push_back(turnServer(*coturn, "alice", "secret-pass"));
    }
    PeerPair peers(ca, cb);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected()) << coturn->logTail();
    for (auto* peer : {&peers.a, &peers.b}) {
        auto events = peer->events->snapshot();
        for (const auto& c : events.candidates) {
            EXPECT_EQ(c.type, CandidateType::Relayed) << "relay-only policy leaked " << c;
        }
        ASSERT_TRUE(events.pair);
        EXPECT_TRUE(events.pair->isRelayed());
        EXPECT_EQ(events.pair->local.type, CandidateType::Relayed);
        auto turn = findStatus(*peer->events, true);
        ASSERT_TRUE(turn);
        EXPECT_TRUE(turn->ok) << turn->message;
    }
    EXPECT_TRUE(exchange(peers.a, peers.b, 2000, 500, 32, 20s))
        << peers.b.events->snapshot().received;
    EXPECT_TRUE(exchange(peers.b, peers.a, 2000, 500, 32, 20s))
        << peers.a.events->snapshot().received;
}

TEST_F(AgentTurn, RelayOnlyOverTurnTcp) {
    auto coturn = startCoturn(withUser("alice", "secret-pass"));
    ASSERT_TRUE(coturn);
    auto ca = loopbackConfig(Role::Controlling);
    auto cb = loopbackConfig(Role::Controlled);
    for (auto* c : {&ca, &cb}) {
        c->policy = CandidatePolicy::RelayOnly;
        c->turnServers.push_back(turnServer(*coturn, "alice", "secret-pass", "tcp"));
    }
    PeerPair peers(ca, cb);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected()) << coturn->logTail();
    EXPECT_TRUE(peers.a.events->snapshot().pair->isRelayed());
    EXPECT_TRUE(exchange(peers.a, peers.b, 500, 500, 32, 20s))
        << peers.b.events->snapshot().received;
    EXPECT_TRUE(exchange(peers.b, peers.a, 500, 500, 32, 20s))
        << peers.a.events->snapshot().received;
}

TEST_F(AgentTurn, WrongPasswordGivesA401ErrorEventAndNoRelayWithinTheTimeout) {
    auto coturn = startCoturn(withUser("alice", "right"));
    ASSERT_TRUE(coturn);
    auto config = loopbackConfig(Role::Controlling);
    config.turnServers.push_back(turnServer(*coturn, "alice", "wrong"));
    config.gatherTimeout = 5s;
    PeerPair peers(config, loopbackConfig(Role::Controlled));
    auto start = std::chrono::steady_clock::now();
    peers.a.agent->gather(peers.a.stream);
    // Bounded by the configured timeout plus slack for a loaded machine; a hang fails here.
    ASSERT_TRUE(peers.a.events->waitFor(
        [&] { return peers.a.events->gatheringDone && !peers.a.events->servers.empty(); }, 15s));
    auto elapsed = std::chrono::steady_clock::now() - start;
    auto turn = findStatus(*peers.a.events, true);
    ASSERT_TRUE(turn);
    EXPECT_FALSE(turn->ok);
    EXPECT_EQ(turn->stunError, 401) << turn->message;
    EXPECT_NE(turn->message.find("401"), std::string::npos) << turn->message;
    for (const auto& c : peers.a.events->snapshot().candidates) {
        EXPECT_NE(c.type, CandidateType::Relayed) << c;
    }
    EXPECT_LE(elapsed, config.gatherTimeout + 2s);
}

// Relay-only and the only TURN server refuses: the agent fails with the server's reason once the
// server has answered, not with "not connected" after connectTimeout (30 s).
TEST_F(AgentTurn, RelayOnlyWithWrongPasswordFailsAtOnceWithTheServersReason) {
    auto coturn = startCoturn(withUser("alice", "right"));
    ASSERT_TRUE(coturn);
    auto ca = loopbackConfig(Role::Controlling);
    auto cb = loopbackConfig(Role::Controlled);
    for (auto* c : {&ca, &cb}) {
        c->policy = CandidatePolicy::RelayOnly;
        c->turnServers.push_back(turnServer(*coturn, "alice", "wrong"));
    }
    PeerPair peers(ca, cb);
    peers.startTrickle();
    ASSERT_TRUE(peers.a.events->waitFor([&] { return !peers.a.events->failures.empty(); },
                                        ca.connectTimeout / 3))
        << "no failure event: the 401 was not turned into a failure";
    std::lock_guard lock(peers.a.events->mutex);
    const Failure& failure = peers.a.events->failures.front();
    EXPECT_EQ(failure.kind, FailureKind::NoCandidates) << failure.message;
    EXPECT_NE(failure.message.find("401"), std::string::npos) << failure.message;
    EXPECT_EQ(peers.a.events->states.back(), ComponentState::Failed);
}

// Closing an agent frees its allocations on the server over every transport (libnice sends
// Refresh with lifetime 0); before, the TLS bridge was gone before that Refresh, so turns:
// allocations stayed until they expired and reconnecting calls met 486 Allocation Quota Reached.
TEST_F(AgentTurn, ClosingAnAgentDeallocatesOverUdpTcpAndTls) {
    auto options = withUser("alice", "secret-pass");
    options.tls = true;
    options.verbose = true;
    auto coturn = startCoturn(options);
    ASSERT_TRUE(coturn);
    auto config = loopbackConfig(Role::Controlling);
    config.policy = CandidatePolicy::RelayOnly;
    // Three servers on three addresses as far as libnice can tell (UDP, TCP, the TLS bridge),
    // but one relayed address: so one agent per transport.
    for (std::string transport : {"udp", "tcp", "tls"}) {
        auto c = config;
        TurnServer server =
            turnServer(*coturn, "alice", "secret-pass", transport == "tls" ? "" : transport);
        if (transport == "tls") {
            server.uri = ServerUri::parse(coturn->uri("turns")).value();
            server.tls.caFile = coturn->caFile();
        }
        c.turnServers.push_back(server);
        {
            PeerPair peers(c, loopbackConfig(Role::Controlled));
            peers.a.agent->gather(peers.a.stream);
            ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->gatheringDone; }));
            ASSERT_TRUE(pollUntil([&] { return coturn->liveAllocations() > 0; }, 5s))
                << transport << ": no allocation seen\n"
                << coturn->logTail();
        } // both agents destroyed here
        EXPECT_TRUE(
            pollUntil([&] { return coturn->liveAllocations() == 0; }, std::chrono::seconds(10)))
            << transport << ": " << coturn->liveAllocations() << " allocation(s) left\n"
            << coturn->logTail(30);
    }
}

// A UDP-blocked network as seen from the agent: the host answers over TCP, never over UDP. Once
// the TURN/TCP relay is in, the silent UDP server on that host is reported failed at once (the
// reason says so) and gathering ends, instead of waiting seconds for UDP retransmissions: what an
// exchange without trickle waits for.
TEST_F(AgentTurn, SilentUdpBesideAnsweringTcpOnOneHostEndsGatheringEarly) {
    auto coturn = startCoturn(withUser("alice", "secret-pass"));
    ASSERT_TRUE(coturn);
    auto config = loopbackConfig(Role::Controlling);
    config.trickle = false;
    config.stunServers.push_back(ServerUri::parse("stun:127.0.0.1:9").value()); // nobody there
    config.turnServers.push_back(turnServer(*coturn, "alice", "secret-pass", "tcp"));
    PeerPair peers(config, loopbackConfig(Role::Controlled));
    peers.a.agent->gather(peers.a.stream);
    ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->gatheringDone; }));
    std::lock_guard lock(peers.a.events->mutex);
    ASSERT_EQ(peers.a.events->servers.size(), 2u);
    for (const auto& status : peers.a.events->servers) {
        if (status.uri.isTurn()) {
            EXPECT_TRUE(status.ok) << status.message;
        } else {
            EXPECT_FALSE(status.ok);
            EXPECT_NE(status.message.find("answered over TCP"), std::string::npos)
                << status.message;
        }
    }
}

TEST_F(AgentTurn, DeadServerEndsInAnErrorEventWithinTheTimeout) {
    // A port nobody listens on: the coturn is stopped before the agent gathers.
    auto coturn = startCoturn(withUser("alice", "right"));
    ASSERT_TRUE(coturn);
    auto server = turnServer(*coturn, "alice", "right");
    coturn->stop();
    auto config = loopbackConfig(Role::Controlling);
    config.turnServers.push_back(server);
    config.gatherTimeout = 1500ms;
    PeerPair peers(config, loopbackConfig(Role::Controlled));
    auto start = std::chrono::steady_clock::now();
    peers.a.agent->gather(peers.a.stream);
    ASSERT_TRUE(peers.a.events->waitFor(
        [&] { return peers.a.events->gatheringDone && !peers.a.events->servers.empty(); }, 10s));
    EXPECT_LE(std::chrono::steady_clock::now() - start, config.gatherTimeout + 2s);
    auto turn = findStatus(*peers.a.events, true);
    ASSERT_TRUE(turn);
    EXPECT_FALSE(turn->ok);
    // Either our gather timeout or libnice giving up first, then a check of our own, says so.
    EXPECT_TRUE(turn->message.find("no answer") != std::string::npos ||
                turn->message.find("no response") != std::string::npos)
        << turn->message;
    // The host path still works: a dead server does not hold up the rest.
    EXPECT_FALSE(peers.a.events->snapshot().candidates.empty());
}

TEST_F(AgentTurn, RestSharedSecretCredentialsAreAccepted) {
    auto coturn = startCoturn(withSecret("s3cr3t"));
    ASSERT_TRUE(coturn);
    auto ca = loopbackConfig(Role::Controlling);
    auto cb = loopbackConfig(Role::Controlled);
    for (auto* c : {&ca, &cb}) {
        TurnServer server;
        server.uri = ServerUri::parse(coturn->uri("turn")).value();
        server.sharedSecret = "s3cr3t";
        server.restUser = "alice";
        c->policy = CandidatePolicy::RelayOnly;
        c->turnServers.push_back(server);
    }
    PeerPair peers(ca, cb);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected()) << coturn->logTail();
    EXPECT_TRUE(peers.a.events->snapshot().pair->isRelayed());
    EXPECT_TRUE(exchange(peers.a, peers.b, 200, 100, 32, 20s))
        << peers.b.events->snapshot().received;
}

TEST_F(AgentTurn, WrongSharedSecretIsRefused) {
    auto coturn = startCoturn(withSecret("s3cr3t"));
    ASSERT_TRUE(coturn);
    auto config = loopbackConfig(Role::Controlling);
    TurnServer server;
    server.uri = ServerUri::parse(coturn->uri("turn")).value();
    server.sharedSecret = "not-the-secret";
    config.turnServers.push_back(server);
    PeerPair peers(config, loopbackConfig(Role::Controlled));
    peers.a.agent->gather(peers.a.stream);
    ASSERT_TRUE(peers.a.events->waitFor(
        [&] { return peers.a.events->gatheringDone && !peers.a.events->servers.empty(); }, 15s));
    auto turn = findStatus(*peers.a.events, true);
    ASSERT_TRUE(turn);
    EXPECT_FALSE(turn->ok);
    EXPECT_EQ(turn->stunError, 401) << turn->message;
}

TEST_F(AgentTurn, RelayOnlyOverTurnTlsVerifiesTheCertificate) {
    auto options = withUser("alice", "secret-pass");
    options.tls = true;
    auto coturn = startCoturn(options);
    ASSERT_TRUE(coturn);
    auto ca = loopbackConfig(Role::Controlling);
    auto cb = loopbackConfig(Role::Controlled);
    for (auto* c : {&ca, &cb}) {
        TurnServer server;
        server.uri = ServerUri::parse(coturn->uri("turns")).value();
        server.username = "alice";
        server.password = "secret-pass";
        server.tls.caFile = coturn->caFile();
        c->policy = CandidatePolicy::RelayOnly;
        c->turnServers.push_back(server);
    }
    PeerPair peers(ca, cb);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected()) << coturn->logTail();
    EXPECT_TRUE(peers.a.events->snapshot().pair->isRelayed());
    EXPECT_TRUE(exchange(peers.a, peers.b, 300, 300, 32, 20s));
    EXPECT_TRUE(exchange(peers.b, peers.a, 300, 300, 32, 20s));
}

TEST_F(AgentTurn, UntrustedTurnTlsCertificateIsRefusedWithAClearError) {
    auto options = withUser("alice", "secret-pass");
    options.tls = true;
    auto coturn = startCoturn(options);
    ASSERT_TRUE(coturn);
    auto config = loopbackConfig(Role::Controlling);
    TurnServer server;
    server.uri = ServerUri::parse(coturn->uri("turns")).value();
    server.username = "alice";
    server.password = "secret-pass"; // no CA file: the system store does not know this CA
    config.turnServers.push_back(server);
    PeerPair peers(config, loopbackConfig(Role::Controlled));
    peers.a.agent->gather(peers.a.stream);
    ASSERT_TRUE(peers.a.events->waitFor(
        [&] { return peers.a.events->gatheringDone && !peers.a.events->servers.empty(); }, 15s));
    auto turn = findStatus(*peers.a.events, true);
    ASSERT_TRUE(turn);
    EXPECT_FALSE(turn->ok);
    EXPECT_NE(turn->message.find("certificate"), std::string::npos) << turn->message;
    for (const auto& c : peers.a.events->snapshot().candidates) {
        EXPECT_NE(c.type, CandidateType::Relayed) << c;
    }
}

TEST_F(AgentTurn, MixedModeConnectsDirectlyWhileRelayIsGathered) {
    auto coturn = startCoturn(withUser("alice", "secret-pass"));
    ASSERT_TRUE(coturn);
    auto ca = loopbackConfig(Role::Controlling);
    auto cb = loopbackConfig(Role::Controlled);
    for (auto* c : {&ca, &cb}) {
        c->stunServers.push_back(ServerUri::parse(coturn->uri("stun")).value());
        c->turnServers.push_back(turnServer(*coturn, "alice", "secret-pass"));
    }
    PeerPair peers(ca, cb);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    // Host beats relay when both work.
    EXPECT_FALSE(peers.a.events->snapshot().pair->isRelayed());
    EXPECT_TRUE(exchange(peers.a, peers.b, 500, 100, 32, 20s));
}

// What WebRTC apps write: a STUN server and one TURN host listed for UDP, TCP and TLS. libnice
// keeps one relay per server address, so the TCP and TLS entries must still get a status of their
// own (naming the relay that covers them), and an offer/answer exchange that waits for gathering
// must connect.
TEST_F(AgentTurn, UsualConfigurationReportsEveryServerAndConnectsWithoutTrickle) {
    auto options = withUser("alice", "secret-pass");
    options.tls = true;
    auto coturn = startCoturn(options);
    ASSERT_TRUE(coturn);
    auto configFor = [&](Role role) {
        auto c = loopbackConfig(role);
        c.trickle = false;
        c.policy = CandidatePolicy::RelayOnly;
        c.stunServers.push_back(ServerUri::parse(coturn->uri("stun")).value());
        c.turnServers.push_back(turnServer(*coturn, "alice", "secret-pass"));
        c.turnServers.push_back(turnServer(*coturn, "alice", "secret-pass", "tcp"));
        TurnServer tls = turnServer(*coturn, "alice", "secret-pass");
        tls.uri = ServerUri::parse(coturn->uri("turns")).value();
        tls.tls.caFile = coturn->caFile();
        c.turnServers.push_back(tls);
        return c;
    };
    PeerPair peers(configFor(Role::Controlling), configFor(Role::Controlled));
    ASSERT_TRUE(peers.startNonTrickle(15s)) << coturn->logTail();
    for (auto* peer : {&peers.a, &peers.b}) {
        std::lock_guard lock(peer->events->mutex);
        ASSERT_EQ(peer->events->servers.size(), 4u);
        int ownRelays = 0;
        for (const auto& status : peer->events->servers) {
            EXPECT_TRUE(status.ok) << status.uri << ": " << status.message;
            if (status.uri.isTurn()) {
                ASSERT_TRUE(status.candidate) << status.uri << ": " << status.message;
                EXPECT_EQ(status.candidate->type, CandidateType::Relayed);
                ownRelays += status.message == "relay allocated";
                if (status.message != "relay allocated") {
                    EXPECT_NE(status.message.find("libnice keeps one relay"), std::string::npos)
                        << status.message;
                }
            }
        }
        EXPECT_EQ(ownRelays, 1);
    }
    ASSERT_TRUE(peers.waitConnected(15s)) << coturn->logTail();
    EXPECT_TRUE(peers.a.events->pair->isRelayed());
    EXPECT_TRUE(exchange(peers.a, peers.b, 200, 300, 32, 20s));
    EXPECT_TRUE(exchange(peers.b, peers.a, 200, 300, 32, 20s));
}

} // namespace
} // namespace icepunch::test
