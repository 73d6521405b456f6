// ICE restart (RFC 8445 section 9) and recovery on loopback: Agent::restart, the peer's restart
// answered, data through the old pair until the new one takes over, and a relayed call that
// comes back after its TURN server restarts (every allocation lost).
#include "agent_harness.hpp"
#include "coturn_process.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <iostream>
#include <thread>

namespace icepunch::test {
using support::CoturnOptions;
using support::CoturnProcess;

namespace {

// Sends one datagram every `interval` from a to b and b to a on a thread of its own, as a call
// does; counts what arrives on each side through the recorders.
class Talker {
public:
    Talker(PeerPair& peers, std::chrono::milliseconds interval) : peers_(peers) {
        thread_ = std::thread([this, interval] {
            auto next = std::chrono::steady_clock::now();
            while (!stop_) {
                peers_.a.agent->send(peers_.a.stream, 1, std::string_view("a->b"));
                peers_.b.agent->send(peers_.b.stream, 1, std::string_view("b->a"));
                ++sent_;
                next += interval;
                std::this_thread::sleep_until(next); // the pacing is the call: time must pass
            }
        });
    }
    ~Talker() { stop(); }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    uint64_t sent() const { return sent_; }

private:
    PeerPair& peers_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> sent_{0};
    std::thread thread_;
};

uint64_t receivedBy(Peer& peer) {
    return peer.events->snapshot().received;
}

// Waits until both sides have received `more` datagrams beyond what they had at the call.
bool dataFlowsAgain(PeerPair& peers, uint64_t more, std::chrono::milliseconds timeout) {
    uint64_t a = receivedBy(peers.a), b = receivedBy(peers.b);
    return peers.a.events->waitFor([&] { return peers.a.events->received >= a + more; }, timeout) &&
           peers.b.events->waitFor([&] { return peers.b.events->received >= b + more; }, timeout);
}

TEST(AgentRestart, RestartGivesNewCredentialsAndANewPairWhileDataFlows) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    auto before = peers.a.agent->localDescription(peers.a.stream).value();
    auto peerBefore = peers.b.agent->localDescription(peers.b.stream).value();
    auto pairBefore = peers.a.events->snapshot().pair.value();
    Talker talker(peers, std::chrono::milliseconds(10));
    ASSERT_TRUE(dataFlowsAgain(peers, 10, 5s));

    ASSERT_TRUE(peers.a.agent->restart(peers.a.stream));
    // Both sides restart: ours on request, the peer on seeing new credentials.
    ASSERT_TRUE(peers.a.events->waitFor([&] { return !peers.a.events->restarts.empty(); }));
    ASSERT_TRUE(peers.b.events->waitFor([&] { return !peers.b.events->restarts.empty(); }))
        << describe(peers.b.events->snapshot());
    ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->pairs.size() >= 2; }))
        << describe(peers.a.events->snapshot());
    ASSERT_TRUE(peers.b.events->waitFor([&] { return peers.b.events->pairs.size() >= 2; }))
        << describe(peers.b.events->snapshot());
    ASSERT_TRUE(dataFlowsAgain(peers, 20, 5s)) << describe(peers.a.events->snapshot());
    talker.stop();

    auto a = peers.a.events->snapshot();
    auto b = peers.b.events->snapshot();
    EXPECT_EQ(a.restarts.front(), "restart requested by the app");
    EXPECT_NE(b.restarts.front().find("the peer restarted ICE"), std::string::npos)
        << b.restarts.front();
    auto after = peers.a.agent->localDescription(peers.a.stream).value();
    auto peerAfter = peers.b.agent->localDescription(peers.b.stream).value();
    EXPECT_NE(after.ufrag, before.ufrag);
    EXPECT_NE(after.pwd, before.pwd);
    EXPECT_NE(peerAfter.ufrag, peerBefore.ufrag);
    EXPECT_TRUE(after.endOfCandidates || !after.candidates.empty());
    // New sockets: the new pair's local port is not the old one's.
    EXPECT_NE(a.pair->local.port, pairBefore.local.port);
    EXPECT_EQ(peers.a.agent->role(), Role::Controlling);
    EXPECT_TRUE(a.failures.empty()) << describe(a);
    EXPECT_TRUE(b.failures.empty()) << describe(b);
    EXPECT_FALSE(a.hasState(ComponentState::Failed));
    EXPECT_EQ(peers.a.agent->state(peers.a.stream, 1), ComponentState::Completed);
    // Make before break: at most a few datagrams of the handover are lost, not the restart's
    // whole duration.
    uint64_t sent = talker.sent();
    EXPECT_GE(a.received + 10, sent) << "sent " << sent << ", received " << a.received;
    EXPECT_GE(b.received + 10, sent) << "sent " << sent << ", received " << b.received;
    auto stats = peers.a.agent->stats(peers.a.stream, 1).value();
    EXPECT_GE(stats.packetsSent, sent); // counted across both sessions
}

// Make before break loses nothing: the two sides switch to the new session a moment apart, and
// what one sent on the old path meanwhile still arrives (the old session lingers to receive).
TEST(AgentRestart, NothingSentWhileTheSessionsSwitchIsLost) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    // A pair may be reported twice before the restart (a peer-reflexive remote named later).
    ASSERT_TRUE(exchange(peers.a, peers.b, 20, 100));
    size_t pairsA = peers.a.events->snapshot().pairs.size();
    size_t pairsB = peers.b.events->snapshot().pairs.size();
    auto switched = [&] {
        auto a = peers.a.events->snapshot(), b = peers.b.events->snapshot();
        return !a.restarts.empty() && !b.restarts.empty() && a.pairs.size() > pairsA &&
               b.pairs.size() > pairsB;
    };
    // Each way, chunks of 50 with up to 32 in flight, until both sides are on the new session
    // and one chunk more: every chunk must arrive whole.
    auto stream = [&](Peer& from, Peer& to, int& chunks) {
        bool done = false;
        while (!done && chunks < 2000) {
            done = switched();
            if (!exchange(from, to, 50, 100, 32, 10s)) {
                return false;
            }
            ++chunks;
        }
        return done;
    };
    int chunksAB = 0, chunksBA = 0;
    bool okBA = false;
    std::thread back([&] { okBA = stream(peers.b, peers.a, chunksBA); });
    // Restart mid-stream (no ASSERT before join: the thread must end first).
    EXPECT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->received >= 100; }));
    EXPECT_TRUE(peers.a.agent->restart(peers.a.stream));
    bool okAB = stream(peers.a, peers.b, chunksAB);
    back.join();
    EXPECT_TRUE(okAB) << "A to B, after " << chunksAB << " whole chunks:\nA:\n"
                      << describe(peers.a.events->snapshot()) << "\nB:\n"
                      << describe(peers.b.events->snapshot());
    EXPECT_TRUE(okBA) << "B to A, after " << chunksBA << " whole chunks:\nA:\n"
                      << describe(peers.a.events->snapshot()) << "\nB:\n"
                      << describe(peers.b.events->snapshot());
}

// Two restarts in a row: the peer's answer to the first lands on the second. Both sides must
// meet on one session, not restart each other forever.
TEST(AgentRestart, TwoRestartsInARowSettleOnOneSession) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    ASSERT_TRUE(peers.a.agent->restart(peers.a.stream));
    ASSERT_TRUE(peers.a.agent->restart(peers.a.stream));
    ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->pairs.size() >= 2; }))
        << describe(peers.a.events->snapshot());
    ASSERT_TRUE(exchange(peers.a, peers.b, 50, 100));
    ASSERT_TRUE(exchange(peers.b, peers.a, 50, 100));
    // Settled: no restart goes on in the background.
    auto a = peers.a.events->snapshot();
    auto b = peers.b.events->snapshot();
    EXPECT_FALSE(peers.a.events->waitFor(
        [&] { return peers.a.events->restarts.size() > a.restarts.size(); }, 1s))
        << describe(peers.a.events->snapshot());
    EXPECT_LE(a.restarts.size(), 3u) << describe(a);
    EXPECT_LE(b.restarts.size(), 3u) << describe(b);
    EXPECT_TRUE(a.failures.empty()) << describe(a);
    EXPECT_TRUE(b.failures.empty()) << describe(b);
}

// A second restart after the peer answered the first: the peer's new session answers nothing
// more (it takes our newer credentials), so ours must keep the answer it already had.
TEST(AgentRestart, ARestartAfterThePeerAnsweredTheFirstOneConnects) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    std::atomic<bool> again{false};
    auto answer = peers.b.events->onRestarted;
    Agent* a = peers.a.agent.get();
    StreamId aStream = peers.a.stream;
    peers.b.events->onRestarted = [&, answer, a, aStream](StreamId s, const std::string& why) {
        answer(s, why); // our answer reached A; now A restarts once more
        again = a->restart(aStream).ok();
    };
    ASSERT_TRUE(peers.a.agent->restart(peers.a.stream));
    ASSERT_TRUE(peers.b.events->waitFor([&] { return !peers.b.events->restarts.empty(); }));
    ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->restarts.size() >= 2; }));
    EXPECT_TRUE(again.load());
    ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->pairs.size() >= 2; }))
        << describe(peers.a.events->snapshot());
    ASSERT_TRUE(exchange(peers.a, peers.b, 50, 100));
    ASSERT_TRUE(exchange(peers.b, peers.a, 50, 100));
    EXPECT_EQ(peers.b.events->snapshot().restarts.size(), 1u)
        << describe(peers.b.events->snapshot());
    EXPECT_TRUE(peers.a.events->snapshot().failures.empty())
        << describe(peers.a.events->snapshot());
}

// A restart before anything connected: the first session's failure is not the app's, the
// restarted one connects.
TEST(AgentRestart, RestartBeforeTheFirstConnectionConnects) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.a.agent->restart(peers.a.stream));
    ASSERT_TRUE(peers.waitConnected()) << describe(peers.a.events->snapshot());
    ASSERT_TRUE(exchange(peers.a, peers.b, 20, 100));
    auto a = peers.a.events->snapshot();
    EXPECT_TRUE(a.failures.empty()) << describe(a);
    EXPECT_FALSE(a.hasState(ComponentState::Failed)) << describe(a);
}

TEST(AgentRestart, ADescriptionWithTheSameCredentialsIsNotARestart) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    // The same description again (a re-read file, a repeated offer): nothing restarts.
    auto again = peers.a.agent->localDescription(peers.a.stream).value();
    ASSERT_TRUE(peers.b.agent->setRemoteDescription(peers.b.stream, again));
    ASSERT_TRUE(exchange(peers.a, peers.b, 20, 100));
    EXPECT_TRUE(peers.b.events->snapshot().restarts.empty());
    EXPECT_TRUE(peers.a.events->snapshot().restarts.empty());
}

TEST(AgentRestart, RestartBeforeGatheringIsRefused) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    auto status = peers.a.agent->restart(peers.a.stream);
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, ErrorCode::InvalidState);
    EXPECT_EQ(peers.a.agent->restart(99).error().code, ErrorCode::NoSuchStream);
}

// coturn with the one long-term user relayOnlyOver uses (u, password p).
auto coturnWithUserUP() {
    CoturnOptions options;
    options.user = "u";
    options.password = "p";
    return CoturnProcess::start(options);
}

// Both sides relay-only through coturn (user u, password p) over `transport`.
std::pair<AgentConfig, AgentConfig> relayOnlyOver(CoturnProcess& coturn,
                                                  const std::string& transport) {
    TurnServer server;
    server.uri = ServerUri::parse(coturn.uri("turn", transport)).value();
    server.username = "u";
    server.password = "p";
    auto ca = loopbackConfig(Role::Controlling);
    auto cb = loopbackConfig(Role::Controlled);
    for (auto* c : {&ca, &cb}) {
        c->policy = CandidatePolicy::RelayOnly;
        c->turnServers.push_back(server);
    }
    return {ca, cb};
}

// A relayed call whose TURN server restarts: every allocation is gone and the relayed path goes
// silent. Both sides notice (sending, hearing nothing), restart, allocate on the new server and
// carry on, without the app doing anything but passing descriptions.
// Over TURN/TCP the restart also closes the relay's connection under the selected pair: the
// EOF path in which libnice 0.1.21 can abort (see pruneChecksOverTcpRelay).
class TurnRestart : public ::testing::TestWithParam<std::string> {};

TEST_P(TurnRestart, RelayedCallSurvivesATurnServerRestart) {
    auto coturn = coturnWithUserUP();
    ASSERT_TRUE(coturn) << coturn.error().message;
    auto [ca, cb] = relayOnlyOver(**coturn, GetParam());
    PeerPair peers(ca, cb);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected(15s));
    ASSERT_TRUE(peers.a.events->snapshot().pair->isRelayed());
    Talker talker(peers, std::chrono::milliseconds(20));
    ASSERT_TRUE(dataFlowsAgain(peers, 10, 5s));

    Status restarted = (*coturn)->restart();
    ASSERT_TRUE(restarted) << restarted.error().message;
    auto eventAt = std::chrono::steady_clock::now();

    ASSERT_TRUE(peers.a.events->waitFor([&] { return !peers.a.events->restarts.empty(); }, 15s))
        << describe(peers.a.events->snapshot());
    ASSERT_TRUE(dataFlowsAgain(peers, 20, 20s)) << "A:\n"
                                                << describe(peers.a.events->snapshot()) << "\nB:\n"
                                                << describe(peers.b.events->snapshot()) << "\n"
                                                << (*coturn)->logTail();
    auto recovered = std::chrono::steady_clock::now() - eventAt;
    talker.stop();
    auto a = peers.a.events->snapshot();
    EXPECT_TRUE(a.failures.empty()) << describe(a);
    EXPECT_TRUE(a.pair->isRelayed());
    EXPECT_FALSE(a.disconnects.empty()) << describe(a);
    EXPECT_TRUE(a.hasState(ComponentState::Disconnected)) << describe(a);
    EXPECT_NE(peers.a.agent->state(peers.a.stream, 1), ComponentState::Disconnected);
    EXPECT_EQ(a.pair->relayProtocol, GetParam());
    std::cout << "over TURN/" << GetParam() << ": data flowed again "
              << std::chrono::duration_cast<std::chrono::milliseconds>(recovered).count()
              << " ms after the TURN server restarted; A: " << a.disconnects.front() << "\n";
}

// The TURN server is away for seconds: over TCP every attempt fails at once (connection refused),
// on both sides. Each side must space its attempts out, still answer the other's, and meet it
// once the server is back: neither restarts on every new ufrag of the other as soon as it comes
// (a storm of sessions, each one dropped before the other side could check against it).
TEST(AgentRestart, BothSidesComeBackAfterTheirTurnServerWasAwayForSeconds) {
    auto coturn = coturnWithUserUP();
    ASSERT_TRUE(coturn) << coturn.error().message;
    auto [ca, cb] = relayOnlyOver(**coturn, "tcp");
    PeerPair peers(ca, cb);
    // A signalling server's latency: each side's attempt fails before the other's new
    // credentials reach it.
    peers.startTrickle(100ms);
    ASSERT_TRUE(peers.waitConnected(15s));
    Talker talker(peers, std::chrono::milliseconds(20));
    ASSERT_TRUE(dataFlowsAgain(peers, 10, 5s));

    constexpr auto kAway = 3s;
    Status restarted = (*coturn)->restart(kAway);
    ASSERT_TRUE(restarted) << restarted.error().message;
    size_t duringA = peers.a.events->snapshot().restarts.size();
    size_t duringB = peers.b.events->snapshot().restarts.size();
    ASSERT_TRUE(dataFlowsAgain(peers, 20, 20s)) << "A:\n"
                                                << describe(peers.a.events->snapshot()) << "\nB:\n"
                                                << describe(peers.b.events->snapshot());
    // Backoff from 500 ms, doubling: at most a handful of attempts in 3 s (0, 0.5, 1.5 s, and
    // answers to the other side's, each at least 500 ms after a failure).
    constexpr size_t kMost = 2 * (kAway / 500ms) + 1;
    EXPECT_GE(duringA, 1u);
    EXPECT_LE(duringA, kMost) << describe(peers.a.events->snapshot());
    EXPECT_LE(duringB, kMost) << describe(peers.b.events->snapshot());
    auto a = peers.a.events->snapshot();
    EXPECT_TRUE(a.failures.empty()) << describe(a);
    EXPECT_NE(peers.a.agent->state(peers.a.stream, 1), ComponentState::Disconnected);
    std::cout << "TURN/TCP away for " << kAway.count() << " s: " << duringA << " and " << duringB
              << " restarts meanwhile\n";
}

// A call that talked, then fell idle: its liveness timer has gone to sleep (an idle call costs
// no wake-ups). The app's next sends must wake it, or a path that died meanwhile is only
// noticed when libnice's consent gives up, 30 s later.
TEST(AgentRestart, ACallThatFellIdleNoticesItsRelayDiedOnceItTalksAgain) {
    auto coturn = coturnWithUserUP();
    ASSERT_TRUE(coturn) << coturn.error().message;
    auto [ca, cb] = relayOnlyOver(**coturn, "udp");
    PeerPair peers(ca, cb);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected(15s));
    {
        Talker talker(peers, std::chrono::milliseconds(20));
        ASSERT_TRUE(dataFlowsAgain(peers, 10, 5s));
    }
    // Idle past disconnectedTimeout and a few liveness periods (disconnectedTimeout / 4): the
    // call itself, not a readiness wait.
    std::this_thread::sleep_for(2 * ca.disconnectedTimeout);

    Status restarted = (*coturn)->restart();
    ASSERT_TRUE(restarted) << restarted.error().message;
    Talker talker(peers, std::chrono::milliseconds(20));
    ASSERT_TRUE(peers.a.events->waitFor([&] { return !peers.a.events->disconnects.empty(); },
                                        3 * ca.disconnectedTimeout))
        << describe(peers.a.events->snapshot());
    ASSERT_TRUE(dataFlowsAgain(peers, 20, 20s)) << describe(peers.a.events->snapshot());
}

INSTANTIATE_TEST_SUITE_P(Transports, TurnRestart, ::testing::Values("udp", "tcp"),
                         [](const auto& info) { return info.param; });

} // namespace
} // namespace icepunch::test
