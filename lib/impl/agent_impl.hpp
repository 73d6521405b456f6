#pragma once

#include <icepunch/agent.hpp>

#include "impl/event_loop_impl.hpp"
#include "impl/tls_bridge.hpp"
#include "impl/turn_probe.hpp"

#include <agent.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <variant>
#include <vector>

namespace icepunch {

// Closed by the Agent's destructor; every callback runs holding it, so once the destructor has
// closed it no callback starts. Recursive: the destructor may run inside a callback.
struct CallbackGate {
    std::recursive_mutex mutex;
    bool closed = false;
};

struct Agent::Impl : std::enable_shared_from_this<Agent::Impl> {
    using Clock = std::chrono::steady_clock;

    struct Counters {
        std::atomic<uint64_t> bytesSent{0}, bytesReceived{0}, packetsSent{0}, packetsReceived{0};
    };

    struct Component {
        ComponentState state = ComponentState::Disconnected;
        bool everConnected = false;
        std::optional<CandidatePair> pair;
        std::shared_ptr<Counters> counters = std::make_shared<Counters>();
    };

    struct ServerSlot {
        ServerStatus status;
        bool reported = false;
        bool isTurn = false;
        size_t turnIndex = 0;
        std::optional<impl::ProbeEndpoint> probeVia; // where to send a diagnostic check
    };

    struct Stream {
        std::vector<Component> components; // index = component id - 1
        std::vector<Candidate> localCandidates;
        std::vector<ServerSlot> servers;
        bool gatherStarted = false;
        bool gatheringDone = false;
        bool remoteSet = false;
        std::vector<size_t> relayOrder; // server slot of each relay given to libnice, in order
        Clock::time_point gatherStart;
        GSource* gatherTimer = nullptr;
        GSource* connectTimer = nullptr;
    };

    Impl(AgentConfig config, Callbacks callbacks, std::shared_ptr<EventLoop> loop);
    ~Impl();

    // Loop-thread only from here on.
    Status init();
    Result<StreamId> addStream(unsigned components);
    Status gather(StreamId id);
    Result<SessionDescription> localDescription(StreamId id);
    Status setRemote(StreamId id, const SessionDescription& description);
    Status addRemoteCandidate(StreamId id, const Candidate& candidate);
    Status endOfRemoteCandidates(StreamId id);
    void teardown();

    // Signal handlers (trampolines call these).
    void onGatheringDone(StreamId id);
    void onStateChanged(StreamId id, ComponentId component, NiceComponentState state);
    void onNewCandidate(NiceCandidate* candidate);
    void onSelectedPair(StreamId id, ComponentId component, NiceCandidate* local,
                        NiceCandidate* remote);
    void onReceive(StreamId id, ComponentId component, const char* data, size_t size);

    void finishGathering(StreamId id);
    void onGatherTimeout(StreamId id);
    void onConnectTimeout(StreamId id);
    void diagnoseServers(StreamId id);
    void probeServer(StreamId id, size_t slotIndex, std::chrono::milliseconds timeout,
                     std::string stunOkMessage);
    void reportServer(StreamId id, size_t slot, ServerStatus status);
    void setComponentState(StreamId id, ComponentId component, ComponentState state);
    void updateIdleTimeout();
    void startConnectTimer(StreamId id);
    Stream* findStream(StreamId id);
    // Index of the first STUN server whose status comes from a probe rather than a srflx.
    size_t stunProbedFrom() const;

    // A received datagram, or any other user callback; delivered in order on the loop thread or
    // the executor.
    struct Datagram {
        StreamId stream;
        ComponentId component;
        std::vector<std::byte> data;
    };
    using Event = std::variant<std::function<void()>, Datagram>;
    void emit(std::function<void()> event);
    void enqueue(Event event);
    void drain();

    std::shared_ptr<Counters> counters(StreamId id, ComponentId component);

    AgentConfig config_;
    Callbacks callbacks_;
    std::shared_ptr<EventLoop> loop_;
    NiceAgent* agent_ = nullptr;
    std::shared_ptr<CallbackGate> gate_ = std::make_shared<CallbackGate>();
    std::map<StreamId, Stream> streams_;
    std::vector<std::unique_ptr<impl::TlsBridge>> bridges_; // one per turns: server and stream
    std::shared_ptr<std::atomic<bool>> cancelProbes_ = std::make_shared<std::atomic<bool>>(false);

    std::mutex queueMutex_;
    std::deque<Event> queue_;
    bool drainScheduled_ = false;

    // send() runs on the caller's thread; it reads this map under countersMutex_.
    std::mutex countersMutex_;
    std::map<std::pair<StreamId, ComponentId>, std::shared_ptr<Counters>> counters_;
};

} // namespace icepunch
