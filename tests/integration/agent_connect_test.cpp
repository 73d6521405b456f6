// Two real libnice agents on loopback connect and carry data.

#include "agent_harness.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace icepunch::test {
namespace {

TEST(AgentConnect, TrickleHostCandidatesConnectAndCarry10000Datagrams) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    ASSERT_TRUE(peers.a.agent && peers.b.agent);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());

    auto pair = *peers.a.events->snapshot().pair;
    EXPECT_EQ(pair.local.type, CandidateType::Host);
    EXPECT_EQ(pair.remote.type, CandidateType::Host);
    EXPECT_FALSE(pair.isRelayed());
    EXPECT_EQ(pair.local.address, "127.0.0.1");

    EXPECT_TRUE(exchange(peers.a, peers.b, 10000, 200));
    EXPECT_TRUE(exchange(peers.b, peers.a, 10000, 200));
    EXPECT_EQ(peers.b.events->snapshot().received, 10000u);
    EXPECT_EQ(peers.a.events->snapshot().received, 10000u);

    auto stats = peers.a.agent->stats(peers.a.stream, 1);
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->packetsSent, 10000u);
    EXPECT_EQ(stats->bytesSent, 10000u * 200);
    EXPECT_EQ(stats->packetsReceived, 10000u);
    ASSERT_TRUE(stats->pair);
    EXPECT_EQ(stats->pair->local.endpoint(), pair.local.endpoint());
}

// A browser's description carries lines we cannot use: an mDNS host candidate (RFC 8828), an
// ssltcp one, a port out of range, an unknown type. Each is skipped and reported with its reason;
// the call still connects on the good candidates.
TEST(AgentConnect, OddRemoteCandidatesAreSkippedAndReportedWhileTheRestConnects) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    ASSERT_TRUE(peers.a.agent && peers.b.agent);
    peers.a.agent->gather(peers.a.stream);
    peers.b.agent->gather(peers.b.stream);
    ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->gatheringDone; }));
    ASSERT_TRUE(peers.b.events->waitFor([&] { return peers.b.events->gatheringDone; }));
    std::string odd = "a=candidate:1 1 udp 2122260223 4f4d7b2a-6e1a-4c4e-9d1b-0a5b6c7d8e9f.local "
                      "54321 typ host\r\n"
                      "a=candidate:2 1 ssltcp 2122260223 127.0.0.1 443 typ host\r\n"
                      "a=candidate:3 1 udp 2122260223 127.0.0.1 70000 typ host\r\n"
                      "a=candidate:4 1 udp 2122260223 127.0.0.1 4000 typ magic\r\n"
                      "a=candidate:5 1 tcp 2122260223 127.0.0.1 9 typ host tcptype active\r\n";
    std::string textA = odd + peers.a.agent->localDescription(peers.a.stream)->toString();
    std::string textB = odd + peers.b.agent->localDescription(peers.b.stream)->toString();
    auto da = SessionDescription::parse(textA);
    auto db = SessionDescription::parse(textB);
    ASSERT_TRUE(da && db);
    ASSERT_TRUE(peers.a.agent->setRemoteDescription(peers.a.stream, *db));
    ASSERT_TRUE(peers.b.agent->setRemoteDescription(peers.b.stream, *da));
    ASSERT_TRUE(peers.waitConnected());
    EXPECT_TRUE(exchange(peers.a, peers.b, 100, 100));
    ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->skipped.size() >= 5; }));
    std::lock_guard lock(peers.a.events->mutex);
    std::string all;
    for (const auto& line : peers.a.events->skipped) {
        EXPECT_FALSE(line.reason.empty()) << line.line;
        all += line.line + " -> " + line.reason + "\n";
    }
    EXPECT_NE(all.find(".local"), std::string::npos) << all;
    EXPECT_NE(all.find("ssltcp"), std::string::npos) << all;
    EXPECT_NE(all.find("70000"), std::string::npos) << all;
    EXPECT_NE(all.find("magic"), std::string::npos) << all;
    EXPECT_NE(all.find("ICE-TCP"), std::string::npos) << all;
}

TEST(AgentConnect, NonTrickleExchangeOfWholeDescriptions) {
    auto ca = loopbackConfig(Role::Controlling);
    auto cb = loopbackConfig(Role::Controlled);
    ca.trickle = cb.trickle = false;
    PeerPair peers(ca, cb);
    ASSERT_TRUE(peers.startNonTrickle());
    ASSERT_TRUE(peers.waitConnected());
    auto description = peers.a.agent->localDescription(peers.a.stream);
    ASSERT_TRUE(description);
    EXPECT_TRUE(description->endOfCandidates);
    EXPECT_FALSE(description->trickle());
    EXPECT_FALSE(description->candidates.empty());
    EXPECT_TRUE(exchange(peers.a, peers.b, 10000, 100));
    EXPECT_TRUE(exchange(peers.b, peers.a, 10000, 100));
}

TEST(AgentConnect, PayloadsArriveIntactAndInOrderOnLoopback) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    peers.b.events->keepPayloads = true;
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    for (int i = 0; i < 50; ++i) {
        ASSERT_TRUE(peers.a.agent->send(peers.a.stream, 1, "message " + std::to_string(i)));
    }
    ASSERT_TRUE(peers.b.events->waitFor([&] { return peers.b.events->payloads.size() == 50; }));
    auto payloads = peers.b.events->snapshot().payloads;
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(payloads[i], "message " + std::to_string(i));
    }
}

TEST(AgentConnect, RoleConflictBothControllingIsResolved) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlling));
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    // RFC 8445 7.3.1.1: the tie-breaker settles roles; both sides agree on one pair.
    auto a = peers.a.events->snapshot().pair;
    auto b = peers.b.events->snapshot().pair;
    EXPECT_EQ(a->local.endpoint(), b->remote.endpoint());
    EXPECT_EQ(a->remote.endpoint(), b->local.endpoint());
    EXPECT_TRUE(exchange(peers.a, peers.b, 100, 50));
    EXPECT_TRUE(exchange(peers.b, peers.a, 100, 50));
}

TEST(AgentConnect, RoleConflictBothControlledIsResolved) {
    PeerPair peers(loopbackConfig(Role::Controlled), loopbackConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    EXPECT_EQ(peers.a.events->snapshot().pair->local.endpoint(),
              peers.b.events->snapshot().pair->remote.endpoint());
    EXPECT_TRUE(exchange(peers.a, peers.b, 100, 50));
    EXPECT_TRUE(exchange(peers.b, peers.a, 100, 50));
}

TEST(AgentConnect, RegularNominationConnects) {
    auto ca = loopbackConfig(Role::Controlling);
    auto cb = loopbackConfig(Role::Controlled);
    ca.nomination = cb.nomination = Nomination::Regular;
    PeerPair peers(ca, cb);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    EXPECT_TRUE(exchange(peers.a, peers.b, 100, 50));
}

TEST(AgentConnect, SendBeforeConnectedIsAnErrorNotACrash) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    auto status = peers.a.agent->send(peers.a.stream, 1, "too early");
    EXPECT_FALSE(status);
    EXPECT_NE(status.error().message.find("not connected"), std::string::npos);
    EXPECT_FALSE(peers.a.agent->send(99, 1, "no such stream"));
}

TEST(AgentConnect, CallbacksRunOnTheGivenExecutor) {
    // Callbacks go through the app's executor: here a queue this test thread runs.
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::function<void()>> queued;
    auto ca = loopbackConfig(Role::Controlling);
    ca.executor = [&](std::function<void()> fn) {
        {
            std::lock_guard lock(mutex);
            queued.push_back(std::move(fn));
        }
        cv.notify_all();
    };
    PeerPair peers(ca, loopbackConfig(Role::Controlled));
    std::thread::id callbackThread;
    peers.a.events->onGatheringDone = [&](StreamId) {
        callbackThread = std::this_thread::get_id();
    };
    peers.a.agent->gather(peers.a.stream);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (callbackThread == std::thread::id{} && std::chrono::steady_clock::now() < deadline) {
        std::vector<std::function<void()>> batch;
        {
            std::unique_lock lock(mutex);
            cv.wait_until(lock, deadline, [&] { return !queued.empty(); });
            batch.swap(queued);
        }
        for (auto& fn : batch) {
            fn();
        }
    }
    EXPECT_EQ(callbackThread, std::this_thread::get_id());
    peers.a.destroyAgent(); // before the executor's captures go away
}

TEST(AgentConnect, InvalidConfigurationIsAnError) {
    AgentConfig config = loopbackConfig(Role::Controlling);
    config.portMin = 5000;
    config.portMax = 4000;
    auto agent = Agent::create(config, {});
    ASSERT_FALSE(agent);
    EXPECT_NE(agent.error().message.find("port range"), std::string::npos);

    config = loopbackConfig(Role::Controlling);
    config.interfaces = {"no-such-interface0"};
    agent = Agent::create(config, {});
    ASSERT_FALSE(agent);
    EXPECT_NE(agent.error().message.find("interface"), std::string::npos);

    config = loopbackConfig(Role::Controlling);
    TurnServer turn;
    turn.uri = ServerUri::parse("turn:127.0.0.1:3478").value();
    config.turnServers.push_back(turn); // no credentials
    agent = Agent::create(config, {});
    ASSERT_FALSE(agent);
    EXPECT_NE(agent.error().message.find("username"), std::string::npos);
}

TEST(AgentConnect, PortRangeIsHonoured) {
    auto config = loopbackConfig(Role::Controlling);
    config.portMin = 41000;
    config.portMax = 41100;
    PeerPair peers(config, loopbackConfig(Role::Controlled));
    peers.a.agent->gather(peers.a.stream);
    ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->gatheringDone; }));
    auto candidates = peers.a.events->snapshot().candidates;
    ASSERT_FALSE(candidates.empty());
    for (const auto& c : candidates) {
        EXPECT_GE(c.port, 41000);
        EXPECT_LE(c.port, 41100);
    }
}

} // namespace
} // namespace icepunch::test
