// What the API promises beyond connecting: calls across event loops from inside callbacks never
// deadlock, send() says why it failed, and the log hook gets lines with secrets redacted.
#include "agent_harness.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>

namespace icepunch::test {
namespace {

using ::testing::HasSubstr;

// Two agents on two loops; each one's callbacks call the other agent's getters and mutators.
// Before, every public method waited for the other loop's thread, so two loops doing this at the
// same moment waited for each other forever.
TEST(AgentApi, CallsBetweenAgentsOnTwoLoopsFromCallbacksNeverDeadlock) {
    auto loopA = EventLoop::create("loop-a");
    auto loopB = EventLoop::create("loop-b");
    std::unique_ptr<Agent> a, b;
    StreamId sa = 0, sb = 0;
    std::atomic<int> crossCalls{0};
    std::mutex mutex;
    std::condition_variable changed;
    bool aConnected = false, bConnected = false;

    auto callbacksFor = [&](std::unique_ptr<Agent>& self, std::unique_ptr<Agent>& other,
                            StreamId& otherStream, bool& connected) {
        Agent::Callbacks cb;
        cb.localCandidate = [&, selfPtr = &self](StreamId, const Candidate& c) {
            // Trickle straight into the other agent, from this loop's thread.
            (void)other->addRemoteCandidate(otherStream, c);
            (void)other->state(otherStream, 1);
            (void)other->stats(otherStream, 1);
            (void)other->localDescription(otherStream);
            (void)(*selfPtr)->state(otherStream, 1);
            ++crossCalls;
        };
        cb.stateChanged = [&](StreamId, ComponentId, ComponentState s) {
            (void)other->state(otherStream, 1);
            (void)other->stats(otherStream, 1);
            ++crossCalls;
            if (s == ComponentState::Connected) {
                std::lock_guard lock(mutex);
                connected = true;
                changed.notify_all();
            }
        };
        cb.gatheringDone = [&](StreamId) {
            (void)other->endOfRemoteCandidates(otherStream);
        };
        return cb;
    };
    auto configA = loopbackConfig(Role::Controlling);
    auto configB = loopbackConfig(Role::Controlled);
    a = Agent::create(configA, callbacksFor(a, b, sb, aConnected), loopA).value();
    b = Agent::create(configB, callbacksFor(b, a, sa, bConnected), loopB).value();
    sa = a->addStream(1).value();
    sb = b->addStream(1).value();
    ASSERT_TRUE(a->setRemoteDescription(sa, b->localDescription(sb).value()));
    ASSERT_TRUE(b->setRemoteDescription(sb, a->localDescription(sa).value()));
    ASSERT_TRUE(a->gather(sa));
    ASSERT_TRUE(b->gather(sb));
    std::unique_lock lock(mutex);
    ASSERT_TRUE(changed.wait_for(lock, 10s, [&] { return aConnected && bConnected; }))
        << "cross calls made: " << crossCalls;
    EXPECT_GT(crossCalls.load(), 4);
    lock.unlock();
    // Destroying each from the other's loop thread does not wait either.
    std::promise<void> destroyed;
    loopA->post([&] {
        b.reset();
        destroyed.set_value();
    });
    ASSERT_EQ(destroyed.get_future().wait_for(5s), std::future_status::ready);
    a.reset();
}

TEST(AgentApi, SendSaysWhyItFailed) {
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    auto& agent = *peers.a.agent;
    auto st = agent.send(peers.a.stream, 1, std::string_view());
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::Empty);
    std::string big(70000, 'x');
    st = agent.send(peers.a.stream, 1, big);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::TooLarge);
    EXPECT_THAT(st.error().message, HasSubstr("kMaxDatagramSize"));
    st = agent.send(peers.a.stream, 1, "early");
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::NotConnected);
    st = agent.send(peers.a.stream + 7, 1, "nowhere");
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::NoSuchStream);
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    EXPECT_TRUE(agent.send(peers.a.stream, 1, std::string(kMaxDatagramSize, 'y')))
        << "the largest datagram must go";
    EXPECT_TRUE(peers.b.events->waitFor([&] { return peers.b.events->received >= 1; }));
}

struct LogLines {
    std::mutex mutex;
    std::vector<std::string> lines;
    std::string all() {
        std::lock_guard lock(mutex);
        std::string out;
        for (auto& l : lines) {
            out += l + "\n";
        }
        return out;
    }
};

// libnice's debug output (switched on by a Debug handler) names TURN servers, users and STUN
// transactions; the TURN password and both ice-pwds must never reach the handler.
TEST(AgentApi, LogHandlerGetsLibniceLinesWithSecretsRedacted) {
    auto lines = std::make_shared<LogLines>();
    setLogHandler(
        [lines](LogLevel level, std::string_view category, std::string_view message) {
            std::lock_guard lock(lines->mutex);
            lines->lines.push_back(std::string(toString(level)) + " " + std::string(category) +
                                   ": " + std::string(message));
        },
        LogLevel::Debug);
    std::string turnPassword = "hunter2-turn-password";
    {
        auto ca = loopbackConfig(Role::Controlling);
        TurnServer turn;
        turn.uri = ServerUri::parse("turn:127.0.0.1:9").value(); // nobody there: it only logs
        turn.username = "alice";
        turn.password = turnPassword;
        ca.turnServers.push_back(turn);
        ca.gatherTimeout = 300ms;
        PeerPair peers(ca, loopbackConfig(Role::Controlled));
        std::string pwdA = peers.a.agent->localDescription(peers.a.stream)->pwd;
        std::string pwdB = peers.b.agent->localDescription(peers.b.stream)->pwd;
        peers.startTrickle();
        ASSERT_TRUE(peers.waitConnected());
        ASSERT_TRUE(peers.a.events->waitFor([&] { return peers.a.events->gatheringDone; }));
        std::string all = lines->all();
        EXPECT_THAT(all, HasSubstr("libnice: ")) << "no libnice line reached the handler";
        EXPECT_EQ(all.find(turnPassword), std::string::npos);
        EXPECT_EQ(all.find(pwdA), std::string::npos);
        EXPECT_EQ(all.find(pwdB), std::string::npos);
    }
    setLogHandler(nullptr);
}

} // namespace
} // namespace icepunch::test
