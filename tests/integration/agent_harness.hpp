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
#include <vector>

namespace icepunch::test {

using namespace std::chrono_literals;

// Events of one agent, recorded thread-safely.
class Recorder {
public:
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<Candidate> candidates;
    std::vector<ServerStatus> servers;
    std::vector<ComponentState> states; // component 1, in order
    std::optional<CandidatePair> pair;
    std::vector<Failure> failures;
    std::vector<SkippedLine> skipped; // remote candidates not used, with the reason
    bool gatheringDone = false;
    uint64_t received = 0;
    uint64_t receivedBytes = 0;
    std::vector<std::string> payloads; // kept when keepPayloads
    bool keepPayloads = false;
    std::chrono::steady_clock::time_point connectedAt{};

    // Runs after the recorder notes each event (e.g. to forward a candidate to the peer).
    std::function<void(StreamId, const Candidate&)> onCandidate;
    std::function<void(StreamId)> onGatheringDone;
    std::function<void(ComponentState)> onState;
    std::function<void(std::span<const std::byte>)> onReceive;

    Agent::Callbacks callbacks();

    // Waits until pred() (evaluated under the lock) holds; false on timeout.
    template <typename Pred> bool waitFor(Pred pred, std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lock(mutex);
        return changed.wait_for(lock, timeout, pred);
    }
    bool waitConnected(std::chrono::milliseconds timeout = 10s);
    bool hasState(ComponentState state);
};

struct Peer {
    // Declared first so it outlives the agent whose callbacks write to it.
    std::shared_ptr<Recorder> events = std::make_shared<Recorder>();
    std::unique_ptr<Agent> agent;
    StreamId stream = 0;
};

// Two agents on loopback. Peer a is controlling, b controlled, unless configs say otherwise.
class PeerPair {
public:
    PeerPair(AgentConfig configA, AgentConfig configB, std::shared_ptr<EventLoop> loop = nullptr);

    // Exchanges credentials, gathers, and trickles candidates to the other side as they come.
    void startTrickle();
    // Gathers both, waits for gathering done, then exchanges whole descriptions.
    bool startNonTrickle(std::chrono::milliseconds timeout = 10s);
    bool waitConnected(std::chrono::milliseconds timeout = 10s);

    Peer a, b;
};

// A config for tests on one machine: loopback host candidates only.
AgentConfig loopbackConfig(Role role);

// Sends `count` datagrams from one peer to the other, at most `window` unanswered at a time
// (so the kernel's socket buffers are not the thing under test); true when all arrived.
bool exchange(Peer& from, Peer& to, int count, size_t size, size_t window = 128,
              std::chrono::milliseconds timeout = 30s);

int countOpenFds();
int countThreads();

} // namespace icepunch::test
