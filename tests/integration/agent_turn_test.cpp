// Agents against a real coturn that the fixture starts on 127.0.0.1 (ephemeral port) and always
// stops, also when a test fails.
#include "agent_harness.hpp"
#include "coturn_process.hpp"

#include <gtest/gtest.h>

namespace icepunch::test {
namespace {

using support::CoturnOptions;
using support::CoturnProcess;

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

} // namespace
} // namespace icepunch::test
