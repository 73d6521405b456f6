#include <icepunch/agent.hpp>

#include "impl/agent_impl.hpp"

#include <ostream>

namespace icepunch {

namespace {

const Error kLoopStopped{"the event loop has stopped"};

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
    impl->loop_->invoke([impl] { impl->teardown(); });
}

Result<StreamId> Agent::addStream(unsigned components) {
    Result<StreamId> result = kLoopStopped;
    impl_->loop_->invoke([&] { result = impl_->addStream(components); });
    return result;
}

Status Agent::gather(StreamId stream) {
    Status result = kLoopStopped;
    impl_->loop_->invoke([&] { result = impl_->gather(stream); });
    return result;
}

Result<SessionDescription> Agent::localDescription(StreamId stream) const {
    Result<SessionDescription> result = kLoopStopped;
    impl_->loop_->invoke([&] { result = impl_->localDescription(stream); });
    return result;
}

Status Agent::setRemoteDescription(StreamId stream, const SessionDescription& description) {
    Status result = kLoopStopped;
    impl_->loop_->invoke([&] { result = impl_->setRemote(stream, description); });
    return result;
}

Status Agent::addRemoteCandidate(StreamId stream, const Candidate& candidate) {
    Status result = kLoopStopped;
    impl_->loop_->invoke([&] { result = impl_->addRemoteCandidate(stream, candidate); });
    return result;
}

Status Agent::endOfRemoteCandidates(StreamId stream) {
    Status result = kLoopStopped;
    impl_->loop_->invoke([&] { result = impl_->endOfRemoteCandidates(stream); });
    return result;
}

Status Agent::send(StreamId stream, ComponentId component, std::span<const std::byte> data) {
    auto counters = impl_->counters(stream, component);
    if (!counters) {
        return Error{"no stream " + std::to_string(stream) + " component " +
                     std::to_string(component)};
    }
    // nice_agent_send is thread-safe (agent lock) and emits no signal for datagram agents, so
    // the data path skips the hop through the loop.
    gint sent = nice_agent_send(impl_->agent_, stream, component, static_cast<guint>(data.size()),
                                reinterpret_cast<const gchar*>(data.data()));
    if (sent < 0) {
        return Error{"not connected: no selected pair to send on"};
    }
    counters->bytesSent += static_cast<uint64_t>(sent);
    counters->packetsSent += 1;
    return {};
}

Status Agent::send(StreamId stream, ComponentId component, std::string_view data) {
    return send(
        stream, component,
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()));
}

ComponentState Agent::state(StreamId stream, ComponentId component) const {
    ComponentState state = ComponentState::Disconnected;
    impl_->loop_->invoke([&] {
        if (auto* s = impl_->findStream(stream);
            s && component >= 1 && component <= s->components.size()) {
            state = s->components[component - 1].state;
        }
    });
    return state;
}

Result<PairStats> Agent::stats(StreamId stream, ComponentId component) const {
    Result<PairStats> result = kLoopStopped;
    impl_->loop_->invoke([&] {
        auto* s = impl_->findStream(stream);
        if (!s || component < 1 || component > s->components.size()) {
            result = Error{"no stream " + std::to_string(stream) + " component " +
                           std::to_string(component)};
            return;
        }
        const auto& c = s->components[component - 1];
        PairStats stats;
        stats.pair = c.pair;
        stats.bytesSent = c.counters->bytesSent;
        stats.bytesReceived = c.counters->bytesReceived;
        stats.packetsSent = c.counters->packetsSent;
        stats.packetsReceived = c.counters->packetsReceived;
        result = stats;
    });
    return result;
}

Role Agent::role() const {
    gboolean controlling = TRUE;
    impl_->loop_->invoke([&] {
        if (impl_->agent_) {
            g_object_get(impl_->agent_, "controlling-mode", &controlling, nullptr);
        }
    });
    return controlling ? Role::Controlling : Role::Controlled;
}

} // namespace icepunch
