#pragma once

#include <icepunch/candidate.hpp>
#include <icepunch/config.hpp>
#include <icepunch/event_loop.hpp>
#include <icepunch/export.hpp>
#include <icepunch/result.hpp>
#include <icepunch/security.hpp>
#include <icepunch/server_uri.hpp>
#include <icepunch/session_description.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace icepunch {

using StreamId = unsigned;

// The largest datagram send() takes: what fits one UDP/IPv4 packet (65,507 bytes) with room for
// TURN's Send indication and ICE-TCP's framing.
inline constexpr std::size_t kMaxDatagramSize = 65000;
using ComponentId = unsigned;

enum class ComponentState {
    Disconnected, // nothing yet, or, after Connected, the peer is not heard for now
    Gathering,
    Checking,  // connectivity checks running
    Connected, // a pair is selected and data can flow
    Completed, // checks ended
    Failed,
};
ICEPUNCH_EXPORT std::string_view toString(ComponentState state);
ICEPUNCH_EXPORT std::ostream& operator<<(std::ostream& os, ComponentState state);

struct CandidatePair {
    Candidate local;
    Candidate remote;
    // When the local candidate is a relay: how it reaches its TURN server ("udp", "tcp" or
    // "tls", WebRTC's relayProtocol) and which server that is. Empty otherwise.
    std::string relayProtocol;
    std::optional<ServerUri> relayServer;
    // Direct means neither side is a relay candidate.
    bool isRelayed() const {
        return icepunch::isRelayed(local.type) || icepunch::isRelayed(remote.type);
    }
};

// How a STUN or TURN server answered during gathering.
struct ServerStatus {
    ServerUri uri;
    bool ok = false;
    std::chrono::milliseconds elapsed{0}; // from gather start to the answer (or the timeout)
    int stunError = 0;                    // STUN error code (401, 437, 438, 441, 486, 508 ...)
    std::string message;                  // "reachable", or the failure in words
    std::optional<Candidate> candidate;   // the srflx or relay candidate it produced
};

enum class FailureKind {
    ChecksFailed,   // every candidate pair failed
    ConnectTimeout, // AgentConfig::connectTimeout elapsed
    ConsentLost,    // RFC 7675 consent expired after connecting
    NoCandidates,   // gathering produced nothing usable
    Internal,
};

struct Failure {
    FailureKind kind = FailureKind::Internal;
    std::string message;
};

struct PairStats {
    std::optional<CandidatePair> pair;
    std::optional<std::chrono::microseconds> rtt; // from connectivity checks / consent
    uint64_t bytesSent = 0;
    uint64_t bytesReceived = 0;
    uint64_t packetsSent = 0;
    uint64_t packetsReceived = 0;
    // Received but dropped because AgentConfig::receiveQueueLimit datagrams were already waiting
    // for the app's received callback (a slow callback or executor).
    uint64_t packetsDropped = 0;
};

// An ICE agent. All methods are safe from any thread. Callbacks run on the event loop thread (or
// the configured executor), never inside libnice's signal emission. The Agent may be destroyed from
// any thread, also from inside its own callback; once the destructor returns no callback runs.
class ICEPUNCH_EXPORT Agent {
public:
    struct Callbacks {
        std::function<void(StreamId, const Candidate&)> localCandidate;
        std::function<void(StreamId)> gatheringDone;
        std::function<void(StreamId, const ServerStatus&)> serverStatus;
        std::function<void(StreamId, ComponentId, ComponentState)> stateChanged;
        std::function<void(StreamId, ComponentId, const CandidatePair&)> selectedPairChanged;
        std::function<void(StreamId, ComponentId, const Failure&)> failed;
        std::function<void(StreamId, ComponentId, std::span<const std::byte>)> received;
        // A remote candidate that is not used (malformed, over a limit, a hostname that could
        // not be resolved, a transport that is off, refused by ICE), with the reason. The rest
        // of the description is used as if the line were not there.
        std::function<void(StreamId, const SkippedLine&)> remoteCandidateSkipped;
        // ICE restarted on the stream (Agent::restart, the peer's restart, or recovery), and
        // why. New credentials and candidates: send localDescription() to the peer again (and
        // the candidates that follow through localCandidate, gatheringDone at the end).
        std::function<void(StreamId, const std::string& reason)> restarted;
        // A connected component lost its peer for now (stateChanged says Disconnected), and why.
        std::function<void(StreamId, ComponentId, const std::string& reason)> disconnected;
        // AgentConfig::security: the component's DTLS handshake is done and the peer's
        // certificate matched its fingerprint. Data sent and received from now on is
        // encrypted; nothing was delivered or sent before.
        std::function<void(StreamId, ComponentId, const SecureInfo&)> secureConnected;
        // AgentConfig::security: the component carries no data, and why: a fingerprint
        // mismatch, no fingerprint from the peer, conflicting roles, no handshake in time, the
        // peer's close_notify. Final for the component.
        std::function<void(StreamId, ComponentId, const std::string& reason)> secureFailed;
        // RTP or RTCP (first byte 128..191, RFC 7983), as it came: SRTP for the app to
        // unprotect with SecureInfo::srtp. Only once secure when security is on.
        std::function<void(StreamId, ComponentId, std::span<const std::byte>)> receivedMedia;
    };

    static Result<std::unique_ptr<Agent>> create(AgentConfig config, Callbacks callbacks,
                                                 std::shared_ptr<EventLoop> loop = nullptr);
    ~Agent();
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;

    Result<StreamId> addStream(unsigned components = 1);
    // Starts gathering; candidates arrive through Callbacks::localCandidate.
    Status gather(StreamId stream);
    // Credentials, options and the candidates gathered so far; endOfCandidates once gathering is
    // done.
    Result<SessionDescription> localDescription(StreamId stream) const;
    // Remote credentials and any candidates in it; end-of-candidates if it says so. Candidates
    // that cannot be used are skipped and reported (Callbacks::remoteCandidateSkipped); only bad
    // credentials fail the call.
    Status setRemoteDescription(StreamId stream, const SessionDescription& description);
    Status addRemoteCandidate(StreamId stream, const Candidate& candidate);
    Status endOfRemoteCandidates(StreamId stream);
    // ICE restart (RFC 8445 section 9): new credentials, a new gathering, the same role. The
    // new local description and its candidates come through the callbacks (restarted first);
    // the current pair carries data until the new session has selected one. A remote
    // description with other credentials than before is the peer's restart and answered so.
    Status restart(StreamId stream);
    // Sends one datagram on the selected pair. Fails with ErrorCode::Empty, TooLarge (over
    // kMaxDatagramSize), NotConnected (no pair yet), ConsentLost (the path was lost) or
    // NoSuchStream.
    Status send(StreamId stream, ComponentId component, std::span<const std::byte> data);
    Status send(StreamId stream, ComponentId component, std::string_view data);
    // Sends an RTP or RTCP packet (first byte 128..191) as it is, beside DTLS: SRTP the app
    // protected with SecureInfo::srtp. With security on, only once the component is secure
    // (ErrorCode::NotSecure before).
    Status sendMedia(StreamId stream, ComponentId component, std::span<const std::byte> packet);

    ComponentState state(StreamId stream, ComponentId component) const;
    Result<PairStats> stats(StreamId stream, ComponentId component) const;
    // The role this agent was configured with (a role conflict is settled inside ICE).
    Role role() const;

    struct ICEPUNCH_NO_EXPORT Impl;

private:
    ICEPUNCH_NO_EXPORT explicit Agent(std::shared_ptr<Impl> impl);
    std::shared_ptr<Impl> impl_;
};

} // namespace icepunch
