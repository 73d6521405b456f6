#pragma once

#include <icepunch/agent.hpp>

#include "impl/callback_set.hpp"
#include "impl/dtls_transport.hpp"
#include "impl/event_loop_impl.hpp"
#include "impl/liveness.hpp"
#include "impl/log_impl.hpp"
#include "impl/mdns_resolver.hpp"
#include "impl/tls_bridge.hpp"
#include "impl/turn_probe.hpp"

#include <agent.h>
#include <gio/gio.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
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
    // steady_clock's epoch at a tick's resolution (CLOCK_MONOTONIC_COARSE, a few ms here): for
    // the per-datagram send and receive times liveness judges in seconds. A precise clock read
    // per datagram was 1 % of the data path's CPU in the datapath bench (perf).
    static Clock::time_point coarseNow();

    struct Counters {
        std::atomic<uint64_t> bytesSent{0}, bytesReceived{0}, packetsSent{0}, packetsReceived{0},
            packetsDropped{0};
        std::atomic<unsigned> route{0};     // the libnice stream send() goes out on
        std::atomic<int64_t> lastSentNs{0}; // steady_clock, of the last datagram sent
        // DTLS of the app's component (AgentConfig::security), null when off. One association
        // for the component's life: a restart moves the route, not the session.
        struct Secure {
            std::mutex mutex; // guards transport; never held across a libnice call
            std::unique_ptr<impl::DtlsTransport> transport;
            std::atomic<bool> connected{false};
            std::string failure;            // under mutex: why no data flows, once it failed
            GSource* timer = nullptr;       // loop thread: the transport's next deadline
            bool reportedConnected = false; // loop thread
            bool reportedEnd = false;       // loop thread: secureFailed said
            std::atomic<bool> srtp{false};  // connected with a DTLS-SRTP profile
            std::string note;               // under mutex: a log line to write after unlocking
            // under mutex: ICE connected without the peer's fingerprint; fails after this
            std::optional<std::chrono::steady_clock::time_point> fingerprintDeadline;
        };
        std::shared_ptr<Secure> secure;
    };

    struct Component {
        ComponentState state = ComponentState::Disconnected;
        bool everConnected = false;
        bool pathLost = false;     // after connecting: the selected pair is gone or lost consent
        bool checksPruned = false; // see pruneChecksOverTcpRelay
        // Before the first connection, while a restart runs: this session's failure, reported
        // only if the restart fails too.
        std::unique_ptr<Failure> heldFailure; // (not inline: 48 bytes per idle component)
        std::optional<CandidatePair> pair;
        std::shared_ptr<Counters> counters = std::make_shared<Counters>();
    };

    struct ServerSlot {
        ServerStatus status;
        bool reported = false;
        bool isTurn = false;
        size_t turnIndex = 0;
        std::optional<impl::ProbeEndpoint> probeVia; // where to send a diagnostic check
        std::string resolvedIp;                      // the server's address, once resolved
        // An earlier TURN slot on the same server address: libnice keeps one relay candidate
        // per relayed address, so at most one of the two yields a candidate of its own.
        std::optional<size_t> sharesServerWith;
        bool probing = false;               // a check of ours is under way
        std::optional<ServerStatus> probed; // its answer, held until the relay picture is clear
    };

    // One libnice stream. The app's stream (its StreamId, the id of the first libnice stream)
    // is carried by one at a time; during an ICE restart a second, pending one gathers and
    // checks until it has a pair for every component, then takes over.
    struct Stream {
        StreamId user = 0;    // the app's stream it carries
        bool pending = false; // a restart's session, not yet carrying the app's stream
        // Being removed: its late signals are ignored; datagrams that still arrive on it (the
        // session a restart replaced, see kReplacedSessionLinger) reach the app.
        bool discarded = false;
        std::string remoteUfrag, remotePwd;
        // As the app gave them, while pending: a restart that replaces this one carries them
        // (an idle agent's active session keeps none: 160 bytes each).
        std::vector<Candidate> remoteCandidates;
        std::vector<Component> components; // index = component id - 1
        std::vector<Candidate> localCandidates;
        std::vector<ServerSlot> servers;
        bool gatherStarted = false;
        bool gatheringDone = false;
        bool remoteSet = false;
        bool remoteEnded = false;       // the peer said end-of-candidates
        unsigned mdnsPending = 0;       // .local candidates being resolved
        unsigned pendingResolves = 0;   // TURN host names being resolved
        std::vector<size_t> relayOrder; // server slot of each relay given to libnice, in order
        Clock::time_point gatherStart;
        GSource* gatherTimer = nullptr;
        GSource* connectTimer = nullptr;
        GSource* udpSilenceTimer = nullptr; // see startUdpSilenceTimer
    };

    // The app's view of a stream: which libnice stream carries it, and its liveness.
    struct UserStream {
        StreamId active = 0;
        StreamId pending = 0;
        StreamId replaced = 0; // the session the last restart replaced, while it lingers
        std::vector<impl::Liveness> liveness; // per component
        // Restarts and recovery: made by the first restart (a call that never restarts keeps
        // none of it: 160 bytes per idle agent).
        struct Restarts {
            impl::Recovery recovery;
            std::string reason;              // of the restart under way
            GSource* attemptTimer = nullptr; // a recovery attempt's timeout, or its backoff
            // Between recovery attempts: the peer's side of the session to answer next (its
            // answer to the attempt that failed, or its own restart since), with what it
            // trickled since.
            std::unique_ptr<SessionDescription> peerSession; // (not inline: 176 bytes)
            std::chrono::steady_clock::time_point retryAt{}; // when the next attempt starts
            std::string failure;                             // why the last attempt failed
        };
        std::unique_ptr<Restarts> restarts;
        bool recovering() const { return restarts && restarts->recovery.active(); }
        SessionDescription* peerSession() const {
            return restarts ? restarts->peerSession.get() : nullptr;
        }
        // From the peer's description (AgentConfig::security).
        std::vector<Fingerprint> remoteFingerprints;
        std::optional<DtlsSetup> remoteSetup;
    };

    Impl(AgentConfig config, Callbacks callbacks, std::shared_ptr<EventLoop> loop);
    ~Impl();

    // Loop-thread only from here on.
    Status init();
    // The app's calls, by the app's StreamId.
    Result<StreamId> addStream(unsigned components);
    Status gather(StreamId user);
    Result<SessionDescription> localDescription(StreamId user);
    Status setRemote(StreamId user, const SessionDescription& description);
    Status addRemoteCandidate(StreamId user, const Candidate& candidate);
    Status endOfRemoteCandidates(StreamId user);
    Status restart(StreamId user);

    // The same on one libnice stream.
    Result<StreamId> addNiceStream(unsigned components, StreamId user);
    Status gatherStream(StreamId id);
    Result<SessionDescription> localDescriptionOf(StreamId id);
    Status setRemoteOf(StreamId id, const SessionDescription& description);
    Status addRemoteCandidateTo(StreamId id, const Candidate& candidate);
    Status endOfRemoteCandidatesOf(StreamId id);

    // Restarts and recovery (loop thread).
    UserStream* findUser(StreamId user);
    UserStream::Restarts& restartsOf(UserStream& u); // made on first need
    Stream* findUserStream(StreamId user); // the active libnice stream (snapshot readers too)
    StreamId userOf(StreamId id);
    bool isDescribed(StreamId id);
    // Traffic came back while recovering: recovery ends, a restart under way may still finish.
    void endRecovery(StreamId user);
    // `reason` is the trouble (kept for the final failure); `retry` says which try this is.
    void startRestart(StreamId user, std::string reason, const std::string& retry = {});
    // The next recovery attempt, `delay` from now (replaces the backoff armed).
    void armRetry(StreamId user, std::chrono::milliseconds delay);
    static SessionDescription remoteSideOf(const Stream& stream);
    void beginRecovery(StreamId user, const std::string& reason);
    void armAttemptTimer(StreamId user, StreamId id);
    void onAttemptFailed(StreamId user, StreamId id, const std::string& reason);
    void promote(StreamId user);
    // The stream's signals are ignored from now on and libnice's stream is removed after
    // `linger` (0: as soon as the current signal emission ends).
    void discardStream(StreamId id, std::chrono::milliseconds linger = {});
    void removeStreamAfter(StreamId id, std::chrono::milliseconds delay);
    void dropPending(UserStream& u); // discards the restart under way, if any
    void later(std::function<void(Impl&)> fn);
    void later(std::chrono::milliseconds after, std::function<void(Impl&)> fn);
    bool reselectLater(StreamId id, ComponentId component);
    void onPathFailed(StreamId id, ComponentId component);
    void pruneChecksOverTcpRelay(StreamId id, ComponentId component);
    void onPathLost(StreamId id, ComponentId component, const std::string& reason);
    void failConnected(StreamId user, const std::string& message);
    void setUserState(StreamId id, ComponentId component, ComponentState state);
    void onLivenessTick();
    // Next tick after `after`, or the default period (a quarter of disconnectedTimeout).
    void startLivenessTimer(std::optional<std::chrono::milliseconds> after = std::nullopt);
    // From any thread, after a send: the liveness timer was asleep, start it again.
    void wakeLiveness();
    std::string refreshLocalAddresses();
    void onPendingState(StreamId id, ComponentId component, NiceComponentState state);
    void maybePromote(StreamId id);
    void teardown();
    // DTLS over the selected pair (loop thread). Records go out on the route; what they carry
    // goes to the app; every state change is reported once.
    using Secure = Counters::Secure;
    void startSecure(StreamId user, ComponentId component);
    // Runs fn on the component's session under its lock, then sends and reports what it made.
    void withSecure(StreamId user, ComponentId component,
                    const std::function<void(Secure&, impl::DtlsTransport::Output&)>& fn);
    // Under secure.mutex: the transport, made on first need; false (and failed) if it cannot be.
    bool ensureTransport(StreamId user, ComponentId component, Secure& secure, bool controlling);
    bool controlling(); // libnice's role, after any role conflict
    void noteRemoteFingerprints(StreamId user, UserStream& u,
                                const std::vector<Fingerprint>& fingerprints, unsigned components);
    static constexpr std::chrono::milliseconds kFingerprintGrace{1000};
    void onSecureRecord(StreamId user, ComponentId component, std::span<const std::byte> data);
    void afterSecure(StreamId user, ComponentId component, Secure& secure,
                     impl::DtlsTransport::Output& out);
    void armSecureTimer(StreamId user, ComponentId component);
    void failSecure(StreamId user, ComponentId component, const std::string& why);
    // Sends DTLS records on the component's route (any thread).
    void sendRecords(Counters& counters, ComponentId component,
                     const std::vector<impl::DtlsTransport::Datagram>& records);
    std::shared_ptr<impl::DtlsCertificate> certificate_;
    // The data path, on the caller's thread (agent.cpp).
    int sendOnRoute(Counters& counters, ComponentId component, std::span<const std::byte> data);
    Status sendRaw(StreamId user, Counters& counters, ComponentId component,
                   std::span<const std::byte> data);
    Status sendSecure(Counters& counters, ComponentId component, std::span<const std::byte> data);
    Status notSecure(Counters& counters);
    static bool isMdnsName(const std::string& address);
    static std::string lowercase(std::string text);
    static std::optional<size_t> relaySlotOf(const Stream& stream, const Candidate& relay);
    void addRelay(StreamId id, size_t slotIndex, const std::string& address);
    void resolveAsync(const std::string& host,
                      std::function<void(Result<std::vector<std::string>>)> done);
    static constexpr size_t kMaxRelays = 8; // libnice's NICE_CANDIDATE_MAX_TURN_SERVERS
    void resolveMdnsCandidate(StreamId id, const Candidate& candidate);
    void onMdnsResolved(StreamId id, Candidate candidate,
                        Result<std::vector<std::string>> addresses);
    static constexpr std::chrono::milliseconds kMdnsTimeout{1500};
    // A call queued from another loop's thread failed: nobody is waiting for its Status.
    void logQueuedCallFailure(const char* what, const std::string& message);

    // Signal handlers (trampolines call these).
    void onGatheringDone(StreamId id);
    void onStateChanged(StreamId id, ComponentId component, NiceComponentState state);
    void onNewCandidate(NiceCandidate* candidate);
    void onSelectedPair(StreamId id, ComponentId component, NiceCandidate* local,
                        NiceCandidate* remote);
    void onReceive(StreamId id, ComponentId component, const char* data, size_t size);

    // Not before pending TURN name lookups are done, unless the gather timer ran out.
    void finishGathering(StreamId id, bool timedOut = false);
    void finishGatheringIfDue(StreamId id);
    void startProbe(StreamId id, size_t slotIndex, const std::string& address,
                    std::chrono::milliseconds timeout, std::string stunOkMessage);
    void onGatherTimeout(StreamId id);
    void onConnectTimeout(StreamId id);
    void diagnoseServers(StreamId id);
    void probeServer(StreamId id, size_t slotIndex, std::chrono::milliseconds timeout,
                     std::string stunOkMessage);
    void reportServer(StreamId id, size_t slot, ServerStatus status);
    void onProbeResult(StreamId id, size_t slot, ServerStatus status);
    // A slot on the same server address as `slot` that has a relay candidate of its own.
    std::optional<size_t> relaySibling(const Stream& stream, size_t slot) const;
    void reportSiblingsOf(StreamId id, size_t slot);
    void setComponentState(StreamId id, ComponentId component, ComponentState state);
    // Failed with this reason (final); no-op for a component that failed already.
    void failComponent(StreamId id, ComponentId component, Failure failure);
    void checkNoCandidates(StreamId id);
    void startUdpSilenceTimer(StreamId id, size_t tcpSlot, std::chrono::milliseconds tcpElapsed);
    std::string serverSummary(StreamId id);
    void updateIdleTimeout();
    void startConnectTimer(StreamId id);
    Stream* findStream(StreamId id);
    std::chrono::milliseconds gatherTimeoutOf(const Stream& stream) const;
    static constexpr std::chrono::milliseconds kRestartGatherTimeout{1500};
    // How long the session a restart replaced still receives: the peer switches to the new one
    // a little before or after us (a check's round trip and its nomination, usually well under
    // a second), and what it sent meanwhile on the old path is delivered. A new restart ends
    // the linger at once (no third set of sockets and allocations).
    static constexpr std::chrono::milliseconds kReplacedSessionLinger{2000};
    // Index of the first STUN server whose status comes from a probe rather than a srflx.
    size_t stunProbedFrom() const;

    // A received datagram, or any other user callback; delivered in order on the loop thread or
    // the executor.
    struct Datagram {
        StreamId stream;
        ComponentId component;
        std::vector<std::byte> data;
        bool media = false; // RTP/RTCP as it came (Callbacks::receivedMedia)
    };
    using Event = std::variant<std::function<void()>, Datagram>;
    void emit(std::function<void()> event);
    // False when a datagram is dropped: receiveQueueLimit of them are waiting already.
    bool enqueue(Event event);
    static constexpr int kReceiveBufferBytes = 1 << 20;
    void growReceiveBuffer(StreamId id, ComponentId component);
    bool deliverNow(StreamId user, ComponentId component, std::span<const std::byte> data,
                    bool media);
    void drain();

    std::shared_ptr<Counters> counters(StreamId id, ComponentId component);

    AgentConfig config_;
    impl::CallbackSet callbacks_;
    std::shared_ptr<EventLoop> loop_;
    // The context of the loop's that runs this agent's sources (see EventLoop::Impl).
    std::shared_ptr<GMainContext> contextLease_;
    GMainContext* context_ = nullptr;
    NiceAgent* agent_ = nullptr;
    std::shared_ptr<CallbackGate> gate_ = std::make_shared<CallbackGate>();
    std::map<StreamId, Stream> streams_;      // by libnice stream id
    std::map<StreamId, UserStream> users_;    // by the app's StreamId (snapshot readers too)
    std::vector<std::string> localAddresses_; // given to libnice, for new streams too
    // Persistent: re-armed from its own callback, which wakes nothing (see newTicker).
    GSource* livenessTimer_ = nullptr;
    bool livenessArmed_ = false;
    // Every component is quiet (Liveness::quiet) and the timer sleeps: the next send wakes it.
    std::atomic<bool> livenessAsleep_{false};
    std::vector<std::unique_ptr<impl::TlsBridge>> bridges_; // one per turns: address
    std::shared_ptr<impl::MdnsResolver> mdns_;              // made on the first .local candidate
    GCancellable* resolveCancel_ = nullptr;                 // pending host name lookups
    std::vector<impl::SecretHandle> secrets_;               // held for log redaction until teardown
    void addSecret(std::string_view secret);
    std::shared_ptr<std::atomic<bool>> cancelProbes_; // made with the first probe

    // Getters read streams_ from any thread without waiting for the loop: the loop thread takes
    // this lock when it changes what they read (the stream map, component states and pairs,
    // local candidates, gathering done). Never held across a libnice call or a callback.
    mutable std::mutex snapshotMutex_;

    std::mutex queueMutex_;
    // A vector, not a deque: an empty deque still holds a 512-byte block, and every idle agent
    // kept one (0.5 KiB of its 33).
    std::vector<Event> queue_;
    // Datagrams delivered from libnice's buffer in the loop's current turn (deliverNow).
    static constexpr size_t kDirectPerTurn = 256;
    uint64_t directTurn_ = 0; // loop thread only, as are the two below
    size_t directInTurn_ = 0;
    size_t queuedDatagrams_ = 0;  // of queue_, bounded by receiveQueueLimit
    bool drainScheduled_ = false; // a drain is scheduled or running: at most one at a time
    std::vector<std::thread> probeThreads_; // joined in teardown

    // send() runs on the caller's thread; it reads this map under countersMutex_.
    std::mutex countersMutex_;
    std::map<std::pair<StreamId, ComponentId>, std::shared_ptr<Counters>> counters_;
};

} // namespace icepunch
