// Creating and destroying agents at awkward moments: no crash, no callback after the destructor,
// nothing left behind.

#include "agent_harness.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace icepunch::test {
namespace {

TEST(AgentLifecycle, DestroyWhileConnecting) {
    for (int i = 0; i < 10; ++i) {
        PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
        peers.startTrickle();
        // Destroy one side at once, mid-checks; the other must not crash either.
        peers.a.agent.reset();
        std::lock_guard lock(peers.b.events->mutex);
        (void)peers.b.events->states.size();
    }
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
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
    std::atomic<bool> destroyedInCallback{false};
    std::atomic<int> afterDestroy{0};
    // On connected, agent a destroys itself from its own callback (on the loop thread).
    peers.a.events->onState = [&](ComponentState state) {
        if (destroyedInCallback) {
            ++afterDestroy;
            return;
        }
        if (state == ComponentState::Connected) {
            peers.a.agent.reset();
            {
                std::lock_guard lock(peers.a.events->mutex);
                destroyedInCallback = true;
            }
            peers.a.events->changed.notify_all();
        }
    };
    peers.startTrickle();
    ASSERT_TRUE(peers.b.events->waitConnected());
    ASSERT_TRUE(peers.a.events->waitFor([&] { return destroyedInCallback.load(); }));
    EventLoop::defaultLoop()->invoke([] {});
    EXPECT_EQ(afterDestroy, 0);
}

TEST(AgentLifecycle, DestroyFromInsideReceiveCallbackOnAPrivateLoop) {
    auto loop = EventLoop::create("test-loop");
    PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled), loop);
    std::atomic<bool> gone{false};
    peers.b.events->onReceive = [&](std::span<const std::byte>) {
        if (!gone) {
            peers.b.agent.reset();
            {
                std::lock_guard lock(peers.b.events->mutex);
                gone = true;
            }
            peers.b.events->changed.notify_all();
        }
    };
    peers.startTrickle();
    ASSERT_TRUE(peers.waitConnected());
    for (int i = 0; i < 100; ++i) {
        (void)peers.a.agent->send(peers.a.stream, 1, "x");
    }
    ASSERT_TRUE(peers.b.events->waitFor([&] { return gone.load(); }));
}

TEST(AgentLifecycle, DestroyFromAnotherThreadWhileCallbacksRun) {
    for (int i = 0; i < 5; ++i) {
        PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
        peers.startTrickle();
        ASSERT_TRUE(peers.waitConnected());
        std::atomic<bool> stop{false};
        std::thread sender([&] {
            while (!stop) {
                (void)peers.a.agent->send(peers.a.stream, 1, "ping");
            }
        });
        ASSERT_TRUE(peers.b.events->waitFor([&] { return peers.b.events->received > 100; }));
        std::thread killer([&] { peers.b.agent.reset(); });
        killer.join();
        stop = true;
        sender.join();
    }
}

TEST(AgentLifecycle, HundredCyclesLeaveNoThreadOrFdBehind) {
    // Warm up once: GLib makes process-wide helpers (e.g. its worker thread) on first use.
    {
        PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
        peers.startTrickle();
        ASSERT_TRUE(peers.waitConnected());
    }
    auto settled = [](int threads, int fds) {
        // Agents close asynchronously; wait (bounded) for the loop thread to end and fds to close.
        auto deadline = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < deadline) {
            if (countThreads() <= threads && countOpenFds() <= fds) {
                return true;
            }
            std::this_thread::yield();
        }
        return false;
    };
    ASSERT_TRUE(settled(1000, 100000));
    // Let the default loop of the warm-up go away.
    auto deadline = std::chrono::steady_clock::now() + 5s;
    int threads0 = countThreads();
    while (threads0 > 2 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
        threads0 = countThreads();
    }
    int fds0 = countOpenFds();
    for (int i = 0; i < 100; ++i) {
        PeerPair peers(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled));
        peers.startTrickle();
        ASSERT_TRUE(peers.waitConnected()) << "cycle " << i;
        ASSERT_TRUE(exchange(peers.a, peers.b, 10, 20));
    }
    EXPECT_TRUE(settled(threads0, fds0)) << "threads " << threads0 << " -> " << countThreads()
                                         << ", fds " << fds0 << " -> " << countOpenFds();
}

} // namespace
} // namespace icepunch::test
