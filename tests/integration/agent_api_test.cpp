// What the API promises beyond connecting: calls across event loops from inside callbacks never
// deadlock, send() says why it failed, and the log hook gets lines with secrets redacted.
#include "agent_harness.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

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

// A received callback that cannot keep up: the queue holds at most receiveQueueLimit datagrams,
// the rest is dropped and counted, and nothing grows without bound.
// The app's own thread, running what the agent hands it in order.
class WorkerExecutor {
public:
    WorkerExecutor() : thread_([this] { run(); }) {}
    ~WorkerExecutor() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        changed_.notify_all();
        thread_.join();
    }
    Executor executor() {
        return [this](std::function<void()> task) {
            std::lock_guard lock(mutex_);
            tasks_.push_back(std::move(task));
            changed_.notify_all();
        };
    }

private:
    void run() {
        std::unique_lock lock(mutex_);
        for (;;) {
            changed_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
            if (tasks_.empty()) {
                return;
            }
            auto task = std::move(tasks_.front());
            tasks_.pop_front();
            lock.unlock();
            task();
            lock.lock();
        }
    }
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::function<void()>> tasks_;
    bool stop_ = false;
    std::thread thread_;
};

// Sends bursts of 200 datagrams from a to b, each time waiting until what reached b stops
// growing (counters raise no event), until more than `enough` reached b (or 20 bursts).
bool sendBurstsUntilPast(PeerPair& peers, uint64_t enough) {
    uint64_t last = 0;
    for (int burst = 0; burst < 20 && last <= enough; ++burst) {
        for (int i = 0; i < 200; ++i) {
            if (!peers.a.agent->send(peers.a.stream, 1, "x")) {
                return false;
            }
        }
        for (int quiet = 0, i = 0; quiet < 10 && i < 1000; ++i) {
            std::this_thread::sleep_for(10ms); // counters raise no event: look again
            uint64_t now = peers.b.agent->stats(peers.b.stream, 1).value().packetsReceived;
            quiet = now == last ? quiet + 1 : 0;
            last = now;
        }
    }
    return true;
}

TEST(AgentApi, ReceiveQueueIsBoundedAndCountsWhatItDrops) {
    WorkerExecutor worker; // outlives the agents
    auto cb = loopbackConfig(Role::Controlled);
    cb.receiveQueueLimit = 64;
    cb.executor = worker.executor();
    std::mutex gateMutex; // these outlive the agents, whose callbacks use them
    std::condition_variable gateChanged;
    bool open = false;
    std::atomic<int> delivered{0};
    PeerPair peers(loopbackConfig(Role::Controlling), cb);
    peers.b.events->onReceive = [&](std::span<const std::byte>) {
        std::unique_lock lock(gateMutex);
        gateChanged.wait_for(lock, 60s, [&] { return open; }); // the app is stuck
        ++delivered;
    };
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    // Send in bursts: the kernel drops what one burst puts beyond the socket buffer (about 256
    // datagrams on loopback), and a slow build (ASan) drains it late. After each burst wait
    // until what reached the agent stops growing (counters raise no event); stop once far more
    // than the queue holds has arrived. Every datagram beyond the queue must then be dropped.
    ASSERT_TRUE(sendBurstsUntilPast(peers, 4 * 64u));
    auto stats = peers.b.agent->stats(peers.b.stream, 1).value();
    ASSERT_GT(stats.packetsReceived, 4 * 64u) << "too few datagrams arrived to fill the queue";
    EXPECT_GE(stats.packetsDropped, stats.packetsReceived - 2 * 64u - 1)
        << stats.packetsReceived << " received";
    {
        std::lock_guard lock(gateMutex);
        open = true;
    }
    gateChanged.notify_all();
    ASSERT_TRUE(peers.b.events->waitFor(
        [&] { return peers.b.events->received + stats.packetsDropped >= stats.packetsReceived; }));
    EXPECT_LE(delivered.load(), 2 * 64 + 1);
}

// No executor: datagrams go to the app straight from libnice while it keeps up. An app slower
// than the datagrams must still get the queue's bound and a count of what it lost, not a loop
// stuck in libnice's read (whose timers, consent included, would stall) and silent kernel drops.
TEST(AgentApi, ASlowAppWithoutAnExecutorStillGetsTheBoundedQueue) {
    auto cb = loopbackConfig(Role::Controlled);
    cb.receiveQueueLimit = 64;
    std::atomic<int> delivered{0};
    PeerPair peers(loopbackConfig(Role::Controlling), cb);
    peers.b.events->onReceive = [&](std::span<const std::byte>) {
        std::this_thread::sleep_for(1ms); // the app is slow: time must pass
        ++delivered;
    };
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    ASSERT_TRUE(sendBurstsUntilPast(peers, 4 * 64u));
    auto stats = peers.b.agent->stats(peers.b.stream, 1).value();
    ASSERT_GT(stats.packetsReceived, 4 * 64u) << "too few datagrams arrived to fill the queue";
    EXPECT_GT(stats.packetsDropped, 0u)
        << stats.packetsReceived << " received, " << delivered << " delivered";
    EXPECT_TRUE(peers.b.events->waitFor(
        [&] { return peers.b.events->received + stats.packetsDropped >= stats.packetsReceived; }));
}

// An executor that runs every task on a thread of its own: events still come one at a time and
// in order (datagrams in the order sent on loopback).
TEST(AgentApi, EventsStayInOrderWithAMultiThreadedExecutor) {
    std::mutex threadsMutex;
    std::vector<std::thread> threads;
    auto configs = std::array{loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled)};
    for (auto& c : configs) {
        c.executor = [&](std::function<void()> task) {
            std::lock_guard lock(threadsMutex);
            threads.emplace_back(std::move(task));
        };
    }
    {
        // Declared before the agents, so they outlive every callback (~Agent waits for one).
        std::mutex seenMutex;
        std::condition_variable seenChanged;
        std::vector<int> seen;
        std::atomic<int> concurrent{0}, maxConcurrent{0};
        PeerPair peers(configs[0], configs[1]);
        peers.b.events->onReceive = [&](std::span<const std::byte> data) {
            int now = ++concurrent;
            maxConcurrent = std::max(maxConcurrent.load(), now);
            int value = 0;
            std::memcpy(&value, data.data(), std::min(sizeof value, data.size()));
            --concurrent;
            std::lock_guard lock(seenMutex);
            seen.push_back(value);
            seenChanged.notify_all();
        };
        peers.startTrickle();
        ASSERT_TRUE(peers.waitConnected());
        ASSERT_TRUE(exchange(peers.a, peers.b, 2000, 16, 64));
        std::unique_lock lock(seenMutex);
        ASSERT_TRUE(seenChanged.wait_for(lock, 10s, [&] { return seen.size() >= 2000; }));
        EXPECT_EQ(maxConcurrent.load(), 1);
        ASSERT_EQ(seen.size(), 2000u);
        EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    }
    std::lock_guard lock(threadsMutex);
    for (auto& t : threads) {
        t.join();
    }
}

// The names of this process's threads, for a failure message.
std::string threadNames() {
    std::string names;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(entry.path() / "comm");
        std::string name;
        std::getline(comm, name);
        names += name + " ";
    }
    return names;
}

// Diagnostic probes of servers used to run on detached threads that outlived the Agent.
TEST(AgentApi, NoThreadOfTheAgentOutlivesIt) {
    auto loop = EventLoop::create("threads");
    {
        // GLib starts its own worker ("gmain") on first use and keeps it: not ours to count.
        Recorder warmup;
        auto agent = Agent::create(loopbackConfig(Role::Controlling), warmup.callbacks(), loop);
        ASSERT_TRUE(agent.ok());
    }
    int before = countThreads();
    {
        auto config = loopbackConfig(Role::Controlling);
        // Two STUN servers nobody answers on: the second is probed on a thread of its own.
        config.stunServers.push_back(ServerUri::parse("stun:127.0.0.1:9").value());
        config.stunServers.push_back(ServerUri::parse("stun:127.0.0.1:7").value());
        Recorder events;
        auto agent = Agent::create(config, events.callbacks(), loop).value();
        auto stream = agent->addStream(1).value();
        ASSERT_TRUE(agent->gather(stream));
        EXPECT_GT(countThreads(), before) << "no probe thread: the test checks nothing";
    }
    // A joined thread can stay listed in /proc for a moment after join() returned.
    for (int i = 0; i < 100 && countThreads() != before; ++i) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(countThreads(), before) << threadNames();
}

} // namespace
} // namespace icepunch::test
