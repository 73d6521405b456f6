#include <icepunch/agent.hpp>

#include "impl/agent_impl.hpp"

#include <chrono>
#include <ctime>
#include <ostream>

namespace icepunch {

namespace {

const Error kLoopStopped{"the event loop has stopped", ErrorCode::LoopStopped};

// How a call reaches the agent's loop: inline on that loop's thread; queued without waiting from
// the thread of another loop, where waiting could deadlock two loops whose agents call each
// other from callbacks (its outcome is then logged, not returned); waited for from any other
// thread.
template <typename Fn>
Status dispatch(const std::shared_ptr<Agent::Impl>& impl, const char* what, Fn fn) {
    auto& loop = impl->loop_->impl();
    if (loop.isLoopThread()) {
        return fn(*impl);
    }
    if (EventLoop::Impl::onAnyLoopThread()) {
        impl->loop_->post([weak = std::weak_ptr<Agent::Impl>(impl), what, fn]() mutable {
            if (auto self = weak.lock(); self && self->agent_) { // not after teardown
                if (Status status = fn(*self); !status) {
                    self->logQueuedCallFailure(what, status.error().message);
                }
            }
        });
        return {};
    }
    Status result = kLoopStopped;
    loop.invoke([&] { result = fn(*impl); });
    return result;
}

} // namespace

std::string_view toString(ComponentState state) {
    switch (state) {
    case ComponentState::Disconnected:
        return "disconnected";
    case ComponentState::Gathering:
        return "gathering";
    case ComponentState::Checking:
        return "checking";
    case ComponentState::Connected:
        return "connected";
    case ComponentState::Completed:
        return "completed";
    case ComponentState::Failed:
        return "failed";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& os, ComponentState state) {
    return os << toString(state);
}

Agent::Agent(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Agent>> Agent::create(AgentConfig config, Callbacks callbacks,
                                             std::shared_ptr<EventLoop> loop) {
    if (!loop) {
        loop = EventLoop::defaultLoop();
    }
    auto impl = std::make_shared<Impl>(std::move(config), std::move(callbacks), loop);
    Status status = Error{kLoopStopped};
    loop->invoke([&] { status = impl->init(); });
    if (!status) {
        loop->invoke([&] { impl->teardown(); });
        return status.error();
    }
    return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

Agent::~Agent() {
    {
        // Waits for a callback running on another thread; passes at once inside our own callback.
        std::lock_guard lock(impl_->gate_->mutex);
        impl_->gate_->closed = true;
    }
    auto impl = impl_;
    if (!impl->loop_->isLoopThread() && EventLoop::Impl::onAnyLoopThread()) {
        // From another loop's thread: no waiting (see dispatch). The gate is closed, so no
        // callback runs after this returns; the impl lives until its teardown has run.
        impl->loop_->post([impl] { impl->teardown(); });
        return;
    }
    impl->loop_->invoke([impl] { impl->teardown(); });
}

Result<StreamId> Agent::addStream(unsigned components) {
    Result<StreamId> result = kLoopStopped;
    impl_->loop_->invoke([&] { result = impl_->addStream(components); });
    return result;
}

Status Agent::gather(StreamId stream) {
    return dispatch(impl_, "gather", [stream](Impl& impl) { return impl.gather(stream); });
}

Result<SessionDescription> Agent::localDescription(StreamId stream) const {
    return impl_->localDescription(stream);
}

Status Agent::setRemoteDescription(StreamId stream, const SessionDescription& description) {
    return dispatch(impl_, "setRemoteDescription", [stream, description](Impl& impl) {
        return impl.setRemote(stream, description);
    });
}

Status Agent::addRemoteCandidate(StreamId stream, const Candidate& candidate) {
    return dispatch(impl_, "addRemoteCandidate", [stream, candidate](Impl& impl) {
        return impl.addRemoteCandidate(stream, candidate);
    });
}

Status Agent::endOfRemoteCandidates(StreamId stream) {
    return dispatch(impl_, "endOfRemoteCandidates",
                    [stream](Impl& impl) { return impl.endOfRemoteCandidates(stream); });
}

Status Agent::restart(StreamId stream) {
    return dispatch(impl_, "restart", [stream](Impl& impl) { return impl.restart(stream); });
}

namespace {

// The checks every send makes: size, then the component's counters.
Result<std::shared_ptr<Agent::Impl::Counters>> countersToSend(Agent::Impl& impl, StreamId stream,
                                                              ComponentId component,
                                                              std::span<const std::byte> data,
                                                              const char* what) {
    if (data.empty()) {
        return Error{std::string("an empty ") + what + " cannot be sent", ErrorCode::Empty};
    }
    if (data.size() > kMaxDatagramSize) {
        return Error{std::string(what) + " of " + std::to_string(data.size()) +
                         " bytes is over the limit of " + std::to_string(kMaxDatagramSize) +
                         " (kMaxDatagramSize)",
                     ErrorCode::TooLarge};
    }
    auto counters = impl.counters(stream, component);
    if (!counters) {
        return Error{"no stream " + std::to_string(stream) + " component " +
                         std::to_string(component),
                     ErrorCode::NoSuchStream};
    }
    return counters;
}

} // namespace

Status Agent::send(StreamId stream, ComponentId component, std::span<const std::byte> data) {
    auto counters = countersToSend(*impl_, stream, component, data, "datagram");
    if (!counters) {
        return counters.error();
    }
    if ((*counters)->secure) {
        return impl_->sendSecure(**counters, component, data);
    }
    return impl_->sendRaw(stream, **counters, component, data);
}

Status Agent::sendMedia(StreamId stream, ComponentId component, std::span<const std::byte> packet) {
    if (!packet.empty() && classifyPacket(packet[0]) != PacketKind::Rtp) {
        return Error{"not RTP or RTCP: the first byte must be 128..191 (RFC 7983)",
                     ErrorCode::InvalidArgument};
    }
    auto counters = countersToSend(*impl_, stream, component, packet, "packet");
    if (!counters) {
        return counters.error();
    }
    if ((*counters)->secure && !(*counters)->secure->connected) {
        return impl_->notSecure(**counters);
    }
    if ((*counters)->secure && !(*counters)->secure->srtp) {
        // No keys: RTP would go out in the clear while security is on.
        return Error{"no DTLS-SRTP profile was negotiated (SecurityConfig::srtpProfiles, or the "
                     "peer offered none): no SRTP keys to protect media with",
                     ErrorCode::NotSecure};
    }
    return impl_->sendRaw(stream, **counters, component, packet);
}

Status Agent::send(StreamId stream, ComponentId component, std::string_view data) {
    return send(
        stream, component,
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()));
}

// Getters read the snapshot the loop keeps under snapshotMutex_: they never wait for the loop.
ComponentState Agent::state(StreamId stream, ComponentId component) const {
    std::lock_guard lock(impl_->snapshotMutex_);
    if (auto* s = impl_->findUserStream(stream);
        s && component >= 1 && component <= s->components.size()) {
        return s->components[component - 1].state;
    }
    return ComponentState::Disconnected;
}

Result<PairStats> Agent::stats(StreamId stream, ComponentId component) const {
    std::lock_guard lock(impl_->snapshotMutex_);
    auto* s = impl_->findUserStream(stream);
    if (!s || component < 1 || component > s->components.size()) {
        return Error{"no stream " + std::to_string(stream) + " component " +
                         std::to_string(component),
                     ErrorCode::NoSuchStream};
    }
    const auto& c = s->components[component - 1];
    PairStats stats;
    stats.pair = c.pair;
    stats.bytesSent = c.counters->bytesSent;
    stats.bytesReceived = c.counters->bytesReceived;
    stats.packetsSent = c.counters->packetsSent;
    stats.packetsReceived = c.counters->packetsReceived;
    stats.packetsDropped = c.counters->packetsDropped;
    return stats;
}

Role Agent::role() const {
    return impl_->config_.role;
}

} // namespace icepunch

namespace icepunch {

Agent::Impl::Clock::time_point Agent::Impl::coarseNow() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return Clock::time_point(std::chrono::seconds(ts.tv_sec) +
                             std::chrono::nanoseconds(ts.tv_nsec));
}

// On the libnice stream that carries the app's stream (a restart moves it). nice_agent_send is
// thread-safe (agent lock) and emits no signal for datagram agents, so the data path skips the
// hop through the loop.
int Agent::Impl::sendOnRoute(Counters& counters, ComponentId component,
                             std::span<const std::byte> data) {
    unsigned route = counters.route.load();
    gint sent = nice_agent_send(agent_, route, component, static_cast<guint>(data.size()),
                                reinterpret_cast<const gchar*>(data.data()));
    if (sent < 0 && counters.route.load() != route) {
        // A restart's session took over meanwhile and the old stream is gone: send on the new.
        sent = nice_agent_send(agent_, counters.route.load(), component,
                               static_cast<guint>(data.size()),
                               reinterpret_cast<const gchar*>(data.data()));
    }
    // seq_cst, as is the flag's load: with the tick's own seq_cst store and load, either the
    // tick sees this send or this send sees the tick asleep (no fences: TSan cannot model them).
    counters.lastSentNs.store(coarseNow().time_since_epoch().count());
    if (livenessAsleep_.load() && livenessAsleep_.exchange(false)) {
        wakeLiveness(); // an idle call's first send: the traffic rule watches again
    }
    return sent;
}

Status Agent::Impl::sendRaw(StreamId stream, Counters& counters, ComponentId component,
                            std::span<const std::byte> data) {
    int sent = sendOnRoute(counters, component, data);
    if (sent < 0) {
        bool failed = false;
        {
            std::lock_guard lock(snapshotMutex_);
            auto* s = findUserStream(stream);
            failed = s && component >= 1 && component <= s->components.size() &&
                     s->components[component - 1].state == ComponentState::Failed;
        }
        if (failed) {
            return Error{"connection lost: the path failed (consent lost or checks failed)",
                         ErrorCode::ConsentLost};
        }
        return Error{"not connected: no selected pair to send on", ErrorCode::NotConnected};
    }
    counters.bytesSent += static_cast<uint64_t>(sent);
    counters.packetsSent += 1;
    return {};
}

Status Agent::Impl::notSecure(Counters& counters) {
    std::lock_guard lock(counters.secure->mutex);
    if (!counters.secure->failure.empty()) {
        return Error{"no secure session: " + counters.secure->failure, ErrorCode::NotSecure};
    }
    return Error{"the DTLS handshake is not done yet (wait for Callbacks::secureConnected)",
                 ErrorCode::NotSecure};
}

// One datagram, one record. Encrypted under the session's lock, sent outside it.
Status Agent::Impl::sendSecure(Counters& counters, ComponentId component,
                               std::span<const std::byte> data) {
    Secure& secure = *counters.secure;
    if (!secure.connected) {
        return notSecure(counters);
    }
    impl::DtlsTransport::Output out;
    {
        std::lock_guard lock(secure.mutex);
        if (!secure.transport) {
            return Error{"no secure session: " + secure.failure, ErrorCode::NotSecure};
        }
        if (Status status = secure.transport->write(data, out); !status) {
            return status;
        }
    }
    int sent = -1;
    for (const auto& record : out.send) {
        sent = std::max(sent, sendOnRoute(counters, component, record));
    }
    if (sent < 0) {
        return Error{"not connected: no selected pair to send on", ErrorCode::NotConnected};
    }
    counters.bytesSent += data.size();
    counters.packetsSent += 1;
    return {};
}

} // namespace icepunch
