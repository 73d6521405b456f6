// Creating and destroying agents at awkward moments: no crash, no callback after the destructor,
// nothing left behind.

#include "agent_harness.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace icepunch::test {
namespace {

struct Usage {
    int threads = 0;
    int fds = 0;
};

// Waits (bounded) until the process holds no more threads and fds than `target`: agents close
// asynchronously, and a loop's thread ends when its last agent is gone.
bool settlesTo(Usage target, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (countThreads() <= target.threads && countOpenFds() <= target.fds) {
            return true;
        }
        std::this_thread::yield();
    }
    return false;
}

// Threads and fds with no agent alive, after one connected pair has made GLib's process-wide
// helpers (e.g. its worker thread) that stay for the life of the process.
Usage idleUsageAfterWarmUp() {
    {
        PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
        peers.startTrickle();
        EXPECT_TRUE(peers.waitConnected());
    }
    // The default loop's thread ends once the warm-up agents have closed: main thread plus
    // GLib's worker is the floor (a sanitizer may add its own); take whatever is left after 5 s.
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (countThreads() > 2 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
    }
    return {countThreads(), countOpenFds()};
}

// No callback of `peer` starts after its destructor returned (Recorder counts them); whatever
// was queued by then has run once the loop has gone round twice more.
void expectNoLateCallbacks(const Peer& peer, const std::shared_ptr<EventLoop>& loop) {
    ASSERT_TRUE(peer.events->agentGone);
    loop->invoke([] {});
    loop->invoke([] {});
    EXPECT_EQ(peer.events->callbacksAfterGone, 0);
}

TEST(AgentLifecycle, DestroyWhileConnecting) {
    Usage idle = idleUsageAfterWarmUp();
    for (int i = 0; i < 10; ++i) {
        auto loop = EventLoop::defaultLoop();
        PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled), loop);
        peers.startTrickle();
        // Destroy one side at once, mid-gathering or mid-checks.
        peers.a.destroyAgent();
        expectNoLateCallbacks(peers.a, loop);
        // The other side keeps working: it answers, and it goes on gathering to the end.
        ASSERT_TRUE(peers.b.agent->localDescription(peers.b.stream).ok()) << "cycle " << i;
        EXPECT_TRUE(peers.b.events->waitFor([&] { return peers.b.events->gatheringDone; }))
            << "cycle " << i;
        peers.b.destroyAgent();
        expectNoLateCallbacks(peers.b, loop);
    }
    EXPECT_TRUE(settlesTo(idle)) << "threads " << idle.threads << " -> " << countThreads()
                                 << ", fds " << idle.fds << " -> " << countOpenFds();
}

TEST(AgentLifecycle, NoCallbackAfterTheDestructorReturns) {
    std::atomic<bool> destroyed{false};
    std::atomic<int> lateCallbacks{0};
    auto config = loopbackConfig(Role::Controlling);
    Agent::Callbacks callbacks;
    callbacks.localCandidate = [&](StreamId, const Candidate&) {
        if (destroyed) {
            ++lateCallbacks;
        }
    };
    callbacks.gatheringDone = [&](StreamId) {
        if (destroyed) {
            ++lateCallbacks;
        }
    };
    for (int i = 0; i < 20; ++i) {
        destroyed = false;
        auto agent = Agent::create(config, callbacks);
        ASSERT_TRUE(agent);
        auto stream = (*agent)->addStream(1);
        ASSERT_TRUE(stream);
        (*agent)->gather(*stream);
        agent->reset();
        destroyed = true;
    }
    // Whatever was queued when the destructors ran has had a chance to run by now.
    auto loop = EventLoop::defaultLoop();
    loop->invoke([] {});
    loop->invoke([] {});
    EXPECT_EQ(lateCallbacks, 0);
}

TEST(AgentLifecycle, DestroyFromInsideItsOwnCallback) {
    auto loop = EventLoop::defaultLoop();
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled), loop);
    std::atomic<bool> destroyedInCallback{false};
    std::atomic<int> afterDestroy{0};
    // On connected, agent a destroys itself from its own callback (on the loop thread).
    peers.a.events->onState = [&](ComponentState state) {
        if (destroyedInCallback) {
            ++afterDestroy;
            return;
        }
        if (state == ComponentState::Connected) {
            peers.a.destroyAgent();
            // Notified under the lock: once the test thread sees the flag this callback touches
            // the recorder no more (the test may end and free it).
            std::lock_guard lock(peers.a.events->mutex);
            destroyedInCallback = true;
            peers.a.events->changed.notify_all();
        }
    };
    peers.startTrickle();
    ASSERT_TRUE(peers.b.events->waitConnected());
    ASSERT_TRUE(peers.a.events->waitFor([&] { return destroyedInCallback.load(); }));
    expectNoLateCallbacks(peers.a, loop);
    EXPECT_EQ(afterDestroy, 0);
}

TEST(AgentLifecycle, DestroyFromInsideReceiveCallbackOnAPrivateLoop) {
    auto loop = EventLoop::create("test-loop");
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled), loop);
    std::atomic<bool> gone{false};
    peers.b.events->onReceive = [&](std::span<const std::byte>) {
        if (!gone) {
            peers.b.destroyAgent();
            std::lock_guard lock(peers.b.events->mutex); // notified under the lock, as above
            gone = true;
            peers.b.events->changed.notify_all();
        }
    };
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    for (int i = 0; i < 100; ++i) {
        (void)peers.a.agent->send(peers.a.stream, 1, "x");
    }
    ASSERT_TRUE(peers.b.events->waitFor([&] { return gone.load(); }));
    expectNoLateCallbacks(peers.b, loop);
}

TEST(AgentLifecycle, DestroyFromAnotherThreadWhileCallbacksRun) {
    Usage idle = idleUsageAfterWarmUp();
    for (int i = 0; i < 5; ++i) {
        auto loop = EventLoop::defaultLoop();
        PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled), loop);
        // A receive callback of b that is still running once b's destructor has returned would
        // be a callback after destruction too: track the ones in flight.
        std::atomic<int> inReceive{0};
        peers.b.events->onReceive = [&](std::span<const std::byte>) {
            ++inReceive;
            // Something a real callback would do with the data while the destructor may start.
            (void)peers.b.events->snapshot();
            --inReceive;
        };
        peers.startTrickle();
        ASSERT_TRUE(peers.waitConnected()) << "cycle " << i;
        std::atomic<bool> stop{false};
        std::thread sender([&] {
            while (!stop) {
                (void)peers.a.agent->send(peers.a.stream, 1, "ping");
            }
        });
        ASSERT_TRUE(peers.b.events->waitFor([&] { return peers.b.events->received > 100; }))
            << "cycle " << i;
        int inFlightAfter = -1;
        std::thread killer([&] {
            peers.b.destroyAgent();
            inFlightAfter = inReceive;
        });
        killer.join();
        stop = true;
        sender.join();
        EXPECT_EQ(inFlightAfter, 0) << "cycle " << i;
        expectNoLateCallbacks(peers.b, loop);
        // a, whose peer vanished while it was sending, still answers.
        EXPECT_TRUE(peers.a.agent->stats(peers.a.stream, 1).ok()) << "cycle " << i;
    }
    EXPECT_TRUE(settlesTo(idle)) << "threads " << idle.threads << " -> " << countThreads()
                                 << ", fds " << idle.fds << " -> " << countOpenFds();
}

TEST(AgentLifecycle, HundredCyclesLeaveNoThreadOrFdBehind) {
    Usage idle = idleUsageAfterWarmUp();
    for (int i = 0; i < 100; ++i) {
        PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
        peers.startTrickle();
        ASSERT_TRUE(peers.waitConnected()) << "cycle " << i;
        ASSERT_TRUE(exchange(peers.a, peers.b, 10, 20));
    }
    EXPECT_TRUE(settlesTo(idle)) << "threads " << idle.threads << " -> " << countThreads()
                                 << ", fds " << idle.fds << " -> " << countOpenFds();
}

} // namespace
} // namespace icepunch::test
