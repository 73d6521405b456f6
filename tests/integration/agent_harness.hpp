#pragma once

// Drives agents in tests: records their events and waits for them (with timeouts, no sleeps),
// and wires two agents together as peers (trickle or not) through the test.

#include <icepunch/icepunch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace icepunch::test {

using namespace std::chrono_literals;

// What one agent reported, in order. The callbacks write it on the loop thread: read it under
// Recorder::mutex (waitFor predicates are) or from a snapshot().
struct RecordedEvents {
    std::vector<Candidate> candidates;
    std::vector<ServerStatus> servers;
    std::vector<ComponentState> states; // component 1, in order
    std::optional<CandidatePair> pair;
    std::vector<Failure> failures;
    std::vector<SkippedLine> skipped;          // remote candidates not used, with the reason
    std::vector<CandidatePair> pairs;          // every selected pair, in order
    std::vector<std::string> restarts;         // Callbacks::restarted reasons
    std::vector<std::string> disconnects;      // Callbacks::disconnected reasons
    std::vector<SecureInfo> secured;           // Callbacks::secureConnected
    std::vector<std::string> insecure;         // Callbacks::secureFailed reasons
    std::vector<std::vector<std::byte>> media; // Callbacks::receivedMedia
    bool gatheringDone = false;
    uint64_t received = 0;
    uint64_t receivedBytes = 0;
    std::vector<std::string> payloads; // kept when keepPayloads
    std::chrono::steady_clock::time_point connectedAt{};

    bool hasState(ComponentState state) const;
};

// Events of one agent, recorded thread-safely.
class Recorder : public RecordedEvents {
public:
    std::mutex mutex;
    std::condition_variable changed;
    std::atomic<bool> keepPayloads{false};

    // Set right after the agent's destructor has returned (Peer::destroyAgent does); a callback
    // that starts after that is counted here: the API says there is none.
    std::atomic<bool> agentGone{false};
    std::atomic<int> callbacksAfterGone{0};

    // Run after the recorder notes each event (e.g. to forward a candidate to the peer). Set them
    // before the agent can call back (before gather).
    std::function<void(StreamId, const Candidate&)> onCandidate;
    std::function<void(StreamId)> onGatheringDone;
    std::function<void(StreamId, const std::string&)> onRestarted;
    std::function<void(ComponentState)> onState;
    std::function<void(std::span<const std::byte>)> onReceive;

    Agent::Callbacks callbacks();

    // A copy of everything recorded so far, taken under the lock.
    RecordedEvents snapshot();
    // Waits until pred() (evaluated under the lock) holds; false on timeout.
    template <typename Pred> bool waitFor(Pred pred, std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lock(mutex);
        return changed.wait_for(lock, timeout, pred);
    }
    bool waitConnected(std::chrono::milliseconds timeout = 10s);
    bool waitSecure(std::chrono::milliseconds timeout = 10s) {
        return waitFor([&] { return !secured.empty() || !insecure.empty(); }, timeout) &&
               !snapshot().secured.empty();
    }

private:
    void noteCallback();
};

struct Peer {
    // Declared first so it outlives the agent whose callbacks write to it.
    std::shared_ptr<Recorder> events = std::make_shared<Recorder>();
    std::unique_ptr<Agent> agent;
    StreamId stream = 0;

    ~Peer() { destroyAgent(); }
    // Destroys the agent (from any thread, also from its own callback) and then marks its
    // recorder: from here on no callback of it may start.
    void destroyAgent();
    // Runs fn(agent) unless the agent is gone; safe against destroyAgent() on another thread
    // (the other peer's forwarders run on the loop thread, the test destroys from its own).
    template <typename Fn> void withAgent(Fn fn) {
        std::lock_guard lock(agentMutex_);
        if (agent) {
            fn(*agent);
        }
    }

private:
    std::mutex agentMutex_; // guards `agent` against withAgent() while destroyAgent() takes it
};

// The signalling channel between two peers: what is sent reaches the other side `latency`
// later, in order, as over a server. With no latency it is delivered at once, on the sender's
// thread.
class Signalling {
public:
    explicit Signalling(std::chrono::milliseconds latency = {}) : latency_(latency) {}
    ~Signalling() { stop(); }
    void setLatency(std::chrono::milliseconds latency);
    void send(std::function<void()> deliver);
    // Drops what is on the way and all that is sent from now on.
    void stop();

private:
    using Clock = std::chrono::steady_clock;
    void run();
    std::chrono::milliseconds latency_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::pair<Clock::time_point, std::function<void()>>> queue_;
    bool stopped_ = false;
    std::thread thread_;
};

// Two agents on loopback. Peer a is controlling, b controlled, unless configs say otherwise.
class PeerPair {
public:
    PeerPair(AgentConfig configA, AgentConfig configB, std::shared_ptr<EventLoop> loop = nullptr);

    // Exchanges credentials, gathers, and trickles candidates to the other side as they come,
    // through a signalling channel with `latency` (restarts' new credentials too).
    void startTrickle(std::chrono::milliseconds latency = {});
    // Gathers both, waits for gathering done, then exchanges whole descriptions.
    bool startNonTrickle(std::chrono::milliseconds timeout = 10s);
    bool waitConnected(std::chrono::milliseconds timeout = 10s);
    // Destroys a then b: once a is gone its forwarders, which reach into b, no longer run.
    ~PeerPair();

    Signalling signalling; // outlives the peers: their callbacks may still send while they go
    Peer a, b;
};

// A config for tests on one machine: loopback host candidates only.
AgentConfig loopbackConfig(Role role);

// Sends `count` datagrams from one peer to the other, at most `window` unanswered at a time
// (so the kernel's socket buffers are not the thing under test); true when all arrived.
bool exchange(Peer& from, Peer& to, int count, size_t size, size_t window = 128,
              std::chrono::milliseconds timeout = 30s);

// What a failed test prints about one agent: states, restarts, disconnects, failures, pairs,
// DTLS outcomes and datagrams received.
std::string describe(const RecordedEvents& e);

int countOpenFds();
int countThreads();

} // namespace icepunch::test
