#include "impl/agent_impl.hpp"

#include "impl/context_driver.hpp"
#include "impl/conversions.hpp"
#include "impl/log_impl.hpp"
#include "impl/mdns_resolver.hpp"
#include "impl/net_util.hpp"
#include "impl/tls_bridge.hpp"
#include "impl/turn_probe.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <thread>

namespace icepunch {

namespace {

using Impl = Agent::Impl;

// Trampolines: libnice calls these on the loop thread; they never call user code directly and
// never let an exception into C.
void gatheringDoneCb(NiceAgent*, guint stream, gpointer data) {
    try {
        static_cast<Impl*>(data)->onGatheringDone(stream);
    } catch (...) {
    }
}

void stateChangedCb(NiceAgent*, guint stream, guint component, guint state, gpointer data) {
    try {
        static_cast<Impl*>(data)->onStateChanged(stream, component,
                                                 static_cast<NiceComponentState>(state));
    } catch (...) {
    }
}

void newCandidateCb(NiceAgent*, NiceCandidate* candidate, gpointer data) {
    try {
        static_cast<Impl*>(data)->onNewCandidate(candidate);
    } catch (...) {
    }
}

void selectedPairCb(NiceAgent*, guint stream, guint component, NiceCandidate* local,
                    NiceCandidate* remote, gpointer data) {
    try {
        static_cast<Impl*>(data)->onSelectedPair(stream, component, local, remote);
    } catch (...) {
    }
}

void receiveCb(NiceAgent*, guint stream, guint component, guint len, gchar* buf, gpointer data) {
    try {
        static_cast<Impl*>(data)->onReceive(stream, component, buf, len);
    } catch (...) {
    }
}

// What an asynchronous close keeps until libnice is done with it: the TLS bridges that carry
// its TURN-TLS deallocations, and a hold that keeps the loop running meanwhile.
struct CloseData {
    std::shared_ptr<void> loopHold;
    std::vector<std::unique_ptr<impl::TlsBridge>> bridges;
};

void discardCb(NiceAgent*, guint, guint, guint, gchar*, gpointer) {}

void closedCb(GObject* source, GAsyncResult*, gpointer data) {
    g_object_unref(source);
    delete static_cast<CloseData*>(data);
}

struct TimerData {
    std::weak_ptr<Impl> impl;
    std::function<void(Impl&)> fn;
};

// Runs the timer's function on its agent, if the agent still lives; `keep` says whether the
// source stays (a ticker) or goes (a one-shot timer).
template <gboolean keep> gboolean runTimer(gpointer p) {
    auto* data = static_cast<TimerData*>(p);
    if (auto impl = data->impl.lock()) {
        data->fn(*impl);
    }
    return keep;
}

void setTimerCallback(GSource* source, GSourceFunc run, std::weak_ptr<Impl> impl,
                      std::function<void(Impl&)> fn) {
    g_source_set_callback(source, run, new TimerData{std::move(impl), std::move(fn)},
                          [](gpointer p) { delete static_cast<TimerData*>(p); });
}

GSource* startTimer(GMainContext* context, std::chrono::milliseconds after,
                    std::weak_ptr<Impl> impl, std::function<void(Impl&)> fn) {
    GSource* source = g_timeout_source_new(static_cast<guint>(after.count()));
    setTimerCallback(source, runTimer<G_SOURCE_REMOVE>, std::move(impl), std::move(fn));
    g_source_attach(source, context);
    return source;
}

// A timer that stays attached and is armed with g_source_set_ready_time. Re-armed from its own
// callback it signals nothing (GLib wakes a context only for a source that is not dispatching),
// where a new timeout source per tick would wake the loop's context driver and allocate.
GSource* newTicker(GMainContext* context, std::weak_ptr<Impl> impl, std::function<void(Impl&)> fn) {
    static GSourceFuncs funcs = {
        nullptr,
        nullptr,
        [](GSource* source, GSourceFunc callback, gpointer data) -> gboolean {
            g_source_set_ready_time(source, -1);
            return callback(data);
        },
        nullptr,
        nullptr,
        nullptr};
    GSource* source = g_source_new(&funcs, sizeof(GSource));
    setTimerCallback(source, runTimer<G_SOURCE_CONTINUE>, std::move(impl), std::move(fn));
    g_source_attach(source, context);
    return source;
}

void stopTimer(GSource*& source) {
    if (source) {
        g_source_destroy(source);
        g_source_unref(source);
        source = nullptr;
    }
}

NiceRelayType relayType(const TurnServer& server) {
    return server.uri.effectiveTransport() == Transport::Udp ? NICE_RELAY_TYPE_TURN_UDP
                                                             : NICE_RELAY_TYPE_TURN_TCP;
}

std::string ms(std::chrono::milliseconds d) {
    return std::to_string(d.count()) + " ms";
}

} // namespace

Agent::Impl::Impl(AgentConfig config, Callbacks callbacks, std::shared_ptr<EventLoop> loop)
    : config_(std::move(config)), callbacks_(std::move(callbacks)), loop_(std::move(loop)) {}

Agent::Impl::~Impl() = default;

Status Agent::Impl::init() {
    for (const auto& turn : config_.turnServers) {
        if (!turn.uri.isTurn()) {
            return Error{"TURN server URI must use turn: or turns:, got " + turn.uri.toString()};
        }
        if (turn.sharedSecret.empty() && (turn.username.empty() || turn.password.empty())) {
            return Error{"TURN server " + turn.uri.toString() +
                         " needs a username and password or a shared secret"};
        }
    }
    for (const auto& stun : config_.stunServers) {
        if (stun.isTurn()) {
            return Error{"STUN server URI must use stun: or stuns:, got " + stun.toString()};
        }
    }
    if (config_.portMin > config_.portMax) {
        return Error{"port range is empty (" + std::to_string(config_.portMin) + " > " +
                     std::to_string(config_.portMax) + ")"};
    }

    if (config_.security.enabled) {
        const auto& sec = config_.security;
        auto certificate =
            sec.certificatePem.empty() && sec.privateKeyPem.empty()
                ? impl::DtlsCertificate::generate()
                : impl::DtlsCertificate::fromPem(sec.certificatePem, sec.privateKeyPem);
        if (!certificate) {
            return certificate.error();
        }
        certificate_ = std::move(*certificate);
        // The certificate holds them now.
        config_.security.certificatePem = {};
        config_.security.privateKeyPem = {};
    } else {
        // Unused without DTLS: the default SRTP profile list alone is three allocations, 144
        // bytes per agent.
        config_.security.srtpProfiles = {};
    }

    impl::installLibniceLogHandlers();
    for (const auto& turn : config_.turnServers) {
        addSecret(turn.password);
        addSecret(turn.sharedSecret);
    }

    auto flags = static_cast<NiceAgentOption>(0);
    auto addFlag = [&](NiceAgentOption f) {
        flags = static_cast<NiceAgentOption>(flags | f);
    };
    if (config_.trickle) {
        addFlag(NICE_AGENT_OPTION_ICE_TRICKLE);
    }
    if (config_.nomination == Nomination::Regular) {
        addFlag(NICE_AGENT_OPTION_REGULAR_NOMINATION);
    }
    if (config_.consentFreshness) {
        addFlag(NICE_AGENT_OPTION_CONSENT_FRESHNESS);
    }
    contextLease_ = loop_->impl().agentContext();
    context_ = contextLease_.get();
    agent_ = nice_agent_new_full(context_, NICE_COMPATIBILITY_RFC5245, flags);
    if (!agent_) {
        return Error{"libnice could not create an agent"};
    }
    g_object_set(agent_, "controlling-mode", config_.role == Role::Controlling, "upnp",
                 config_.upnp, "ice-udp", config_.udp, "ice-tcp", config_.tcp, "force-relay",
                 config_.policy == CandidatePolicy::RelayOnly, nullptr);
    g_object_set(
        agent_, "stun-pacing-timer", guint(std::max<int64_t>(1, config_.checkPacing.count())),
        "stun-initial-timeout", guint(std::max<int64_t>(1, config_.stunTimeout.count())),
        "stun-max-retransmissions", guint(std::max(1u, config_.stunRetransmissions)), nullptr);

    if (!config_.stunServers.empty()) {
        const auto& stun = config_.stunServers.front();
        // A name is resolved by libnice, asynchronously, with every address used.
        g_object_set(agent_, "stun-server", stun.host.c_str(), "stun-server-port", guint(stun.port),
                     nullptr);
    }

    auto addresses = impl::selectLocalAddresses(config_.interfaces, config_.ipv4, config_.ipv6);
    if (!addresses) {
        return addresses.error();
    }
    for (const auto& address : *addresses) {
        NiceAddress na;
        if (nice_address_set_from_string(&na, address.c_str())) {
            nice_agent_add_local_address(agent_, &na);
            localAddresses_.push_back(address);
        }
    }

    g_signal_connect(agent_, "candidate-gathering-done", G_CALLBACK(gatheringDoneCb), this);
    g_signal_connect(agent_, "component-state-changed", G_CALLBACK(stateChangedCb), this);
    g_signal_connect(agent_, "new-candidate-full", G_CALLBACK(newCandidateCb), this);
    g_signal_connect(agent_, "new-selected-pair-full", G_CALLBACK(selectedPairCb), this);
    return {};
}

Result<StreamId> Agent::Impl::addStream(unsigned components) {
    if (components < 1 || components > 256) {
        return Error{"a stream has 1..256 components, not " + std::to_string(components)};
    }
    return addNiceStream(components, 0);
}

// A libnice stream for the app's stream `user` (0: a new one, whose id it takes).
Result<StreamId> Agent::Impl::addNiceStream(unsigned components, StreamId user) {
    StreamId id = nice_agent_add_stream(agent_, components);
    if (id == 0) {
        return Error{"libnice could not add a stream"};
    }
    gchar* ufrag = nullptr;
    gchar* pwd = nullptr;
    if (nice_agent_get_local_credentials(agent_, id, &ufrag, &pwd)) {
        addSecret(pwd);
    }
    g_free(ufrag);
    g_free(pwd);
    std::unique_lock snapshot(snapshotMutex_);
    Stream& stream = streams_[id];
    stream.user = user ? user : id;
    stream.pending = user != 0;
    stream.components.resize(components);
    if (!user) {
        UserStream& u = users_[id];
        u.active = id;
        impl::Liveness::Config live;
        live.disconnectedAfter = config_.disconnectedTimeout;
        u.liveness.assign(components, impl::Liveness(live));
    }
    snapshot.unlock();
    updateIdleTimeout();
    for (unsigned c = 1; c <= components; ++c) {
        if (config_.portMin || config_.portMax) {
            nice_agent_set_port_range(agent_, id, c, config_.portMin, config_.portMax);
        }
        nice_agent_attach_recv(agent_, id, c, context_, receiveCb, this);
        std::lock_guard lock(countersMutex_);
        // The app's counters: a restart's stream adds to the same ones.
        auto& shared = counters_[{stream.user, c}];
        if (!shared) {
            shared = stream.components[c - 1].counters;
            shared->route = id;
            if (config_.security.enabled) {
                shared->secure = std::make_shared<Counters::Secure>();
            }
        }
        if (stream.components[c - 1].counters != shared) {
            stream.components[c - 1].counters = shared;
        }
    }
    // The first STUN server feeds libnice; every configured server gets a status report.
    for (const auto& stun : config_.stunServers) {
        ServerSlot slot;
        slot.status.uri = stun;
        stream.servers.push_back(std::move(slot));
    }
    for (size_t i = 0; i < config_.turnServers.size(); ++i) {
        ServerSlot slot;
        slot.status.uri = config_.turnServers[i].uri;
        slot.isTurn = true;
        slot.turnIndex = i;
        stream.servers.push_back(std::move(slot));
    }
    return id;
}

size_t Agent::Impl::stunProbedFrom() const {
    bool turnUdp = std::any_of(
        config_.turnServers.begin(), config_.turnServers.end(), [](const TurnServer& t) {
            return t.uri.scheme == UriScheme::Turn && t.uri.effectiveTransport() == Transport::Udp;
        });
    return turnUdp ? 0 : 1;
}

// A restart's gathering gets less time: its servers answered moments ago, and one that does not
// answer now (a TURN server that is restarting) is better tried again soon than waited for.
std::chrono::milliseconds Agent::Impl::gatherTimeoutOf(const Stream& stream) const {
    return stream.pending ? std::min(config_.gatherTimeout, kRestartGatherTimeout)
                          : config_.gatherTimeout;
}

Agent::Impl::Stream* Agent::Impl::findStream(StreamId id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : &it->second;
}

Status Agent::Impl::gatherStream(StreamId id) {
    Stream* stream = findStream(id);
    if (!stream) {
        return Error{"no stream " + std::to_string(id), ErrorCode::NoSuchStream};
    }
    if (stream->gatherStarted) {
        return Error{"stream " + std::to_string(id) + " is already gathering",
                     ErrorCode::InvalidState};
    }
    stream->gatherStart = Clock::now();
    for (size_t i = 0; i < stream->servers.size(); ++i) {
        ServerSlot& slot = stream->servers[i];
        if (!slot.isTurn) {
            continue;
        }
        const TurnServer& turn = config_.turnServers[slot.turnIndex];
        slot.resolvedIp = lowercase(turn.uri.host); // what "the same server" means to us
        for (size_t j = 0; j < i && !slot.sharesServerWith; ++j) {
            if (stream->servers[j].isTurn && stream->servers[j].resolvedIp == slot.resolvedIp) {
                slot.sharesServerWith = j;
            }
        }
        if (impl::isIpLiteral(turn.uri.host)) {
            addRelay(id, i, turn.uri.host);
            continue;
        }
        // A name is resolved here, without blocking the loop, and libnice gets one relay per
        // address: if libnice resolved it, the copies it appends per address would shift the
        // positions relaySlotOf() maps relays back with (and the TLS bridge needs addresses).
        // libnice takes relays added after gathering started; gathering is not declared done
        // while a lookup is pending.
        ++stream->pendingResolves;
        resolveAsync(turn.uri.host, [weak = weak_from_this(), id,
                                     i](Result<std::vector<std::string>> addresses) {
            auto self = weak.lock();
            Stream* stream = self && self->agent_ ? self->findStream(id) : nullptr;
            if (!stream || stream->discarded) {
                return; // torn down, or a restart's stream that is gone
            }
            --stream->pendingResolves;
            if (!addresses) {
                const ServerSlot& s = stream->servers[i];
                self->reportServer(id, i,
                                   {s.status.uri, false, {}, 0, addresses.error().message, {}});
                return;
            }
            for (const auto& address : *addresses) {
                self->addRelay(id, i, address);
            }
            self->finishGatheringIfDue(id);
        });
    }
    if (!nice_agent_gather_candidates(agent_, id)) {
        return Error{"gathering failed: no usable local address (check the interface list)"};
    }
    stream->gatherStarted = true;
    stream->gatherTimer = startTimer(context_, gatherTimeoutOf(*stream), weak_from_this(),
                                     [id](Impl& impl) { impl.onGatherTimeout(id); });
    // STUN servers beyond the first are not used by libnice: probe them for a status. With a
    // TURN/UDP server the srflx may come from its Allocate instead, so probe the first one too.
    // A TURN server listed again on the same address (turn:H and turn:H?transport=tcp) gets no
    // relay of its own from libnice, which drops a relay on an address it already has one on:
    // check it ourselves now, not seconds later when libnice declares gathering done.
    for (size_t i = stunProbedFrom(); i < stream->servers.size(); ++i) {
        const ServerSlot& slot = stream->servers[i];
        if (slot.reported || slot.probing || (slot.isTurn && !slot.sharesServerWith)) {
            continue;
        }
        probeServer(id, i, gatherTimeoutOf(*stream), "reachable");
    }
    return {};
}

void Agent::Impl::reportServer(StreamId id, size_t slotIndex, ServerStatus status) {
    Stream* stream = findStream(id);
    if (!stream || slotIndex >= stream->servers.size() || stream->servers[slotIndex].reported) {
        return;
    }
    ServerSlot& slot = stream->servers[slotIndex];
    slot.reported = true;
    slot.status = status;
    emit([this, id = userOf(id), status, described = isDescribed(id)] {
        if (described && callbacks_.serverStatus()) {
            callbacks_.serverStatus()(id, status);
        }
    });
    // Every server has answered: nothing more is coming, so end gathering now rather than wait
    // for libnice, which may hold on to a dropped STUN transaction for seconds.
    bool allReported = std::all_of(stream->servers.begin(), stream->servers.end(),
                                   [](const ServerSlot& s) { return s.reported; });
    if (allReported && stream->gatherStarted && stream->components.size() == 1) {
        finishGathering(id);
    }
    checkNoCandidates(id);
}

// Relay-only and every TURN server refused or never answered: nothing can ever connect, so say
// so now, with the servers' reasons, instead of after connectTimeout.
void Agent::Impl::checkNoCandidates(StreamId id) {
    Stream* stream = findStream(id);
    if (!stream || !stream->gatheringDone || config_.policy != CandidatePolicy::RelayOnly) {
        return;
    }
    bool allReported = std::all_of(stream->servers.begin(), stream->servers.end(),
                                   [](const ServerSlot& s) { return s.reported; });
    bool haveRelay =
        std::any_of(stream->localCandidates.begin(), stream->localCandidates.end(),
                    [](const Candidate& c) { return c.type == CandidateType::Relayed; });
    if (!allReported || haveRelay) {
        return;
    }
    std::string reasons;
    for (const auto& slot : stream->servers) {
        if (slot.isTurn) {
            reasons += (reasons.empty() ? "" : "; ") + slot.status.uri.toString() + ": " +
                       slot.status.message;
        }
    }
    for (unsigned c = 1; c <= stream->components.size(); ++c) {
        failComponent(id, c,
                      {FailureKind::NoCandidates,
                       "no relay candidate (relay-only), every TURN server failed: " + reasons});
    }
}

void Agent::Impl::failComponent(StreamId id, ComponentId c, Failure failure) {
    Stream* stream = findStream(id);
    if (!stream || stream->discarded) {
        return;
    }
    if (stream->pending) {
        // A restart's session: the app's stream goes on over the old one meanwhile.
        stopTimer(stream->connectTimer);
        onAttemptFailed(stream->user, id, failure.message);
        return;
    }
    Component& component = stream->components[c - 1];
    if (UserStream* u = findUser(stream->user);
        u && u->pending && !component.everConnected && component.state != ComponentState::Failed) {
        // The restart may still connect.
        component.heldFailure = std::make_unique<Failure>(std::move(failure));
        return;
    }
    if (component.state == ComponentState::Failed ||
        (failure.kind != FailureKind::NoCandidates && component.everConnected)) {
        return;
    }
    {
        std::lock_guard snapshot(snapshotMutex_);
        component.state = ComponentState::Failed;
    }
    stopTimer(stream->connectTimer);
    updateIdleTimeout();
    emit([this, id = userOf(id), c, failure = std::move(failure)] {
        if (callbacks_.stateChanged()) {
            callbacks_.stateChanged()(id, c, ComponentState::Failed);
        }
        if (callbacks_.failed()) {
            callbacks_.failed()(id, c, failure);
        }
    });
}

void Agent::Impl::onNewCandidate(NiceCandidate* nc) {
    Stream* stream = findStream(nc->stream_id);
    if (!stream || stream->discarded) {
        return;
    }
    // Candidates found after gathering was declared done (a second network, a slow server) are
    // trickled like any other: a peer that still takes candidates can use them.
    Candidate candidate = impl::fromNice(*nc);
    auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - stream->gatherStart);
    // Which server produced it: srflx comes from the first STUN server (the one libnice uses) or
    // a TURN/UDP Allocate; a relay's priority carries its server's position in the relay list.
    std::optional<size_t> slot;
    if (candidate.type == CandidateType::ServerReflexive && stunProbedFrom() == 1) {
        for (size_t i = 0; i < stream->servers.size() && !slot; ++i) {
            if (!stream->servers[i].isTurn) {
                slot = i;
            }
        }
    } else if (candidate.type == CandidateType::Relayed && candidate.component == 1) {
        slot = relaySlotOf(*stream, candidate);
    }
    {
        std::lock_guard snapshot(snapshotMutex_);
        stream->localCandidates.push_back(candidate);
    }
    StreamId id = nc->stream_id;
    // During a restart only the new session's candidates go to the peer: the old session's late
    // ones (a peer-reflexive, a slow server) would land in the new description.
    emit([this, id = userOf(id), candidate, described = isDescribed(id)] {
        if (described && callbacks_.localCandidate()) {
            callbacks_.localCandidate()(id, candidate);
        }
    });
    if (slot) {
        bool isTurn = stream->servers[*slot].isTurn;
        reportServer(id, *slot,
                     {stream->servers[*slot].status.uri, true, elapsed, 0,
                      isTurn ? "relay allocated" : "reachable", candidate});
        if (isTurn) {
            reportSiblingsOf(id, *slot);
            const ServerUri& uri = stream->servers[*slot].status.uri;
            if (uri.scheme == UriScheme::Turns || uri.effectiveTransport() == Transport::Tcp) {
                startUdpSilenceTimer(id, *slot, elapsed);
            }
        }
    }
}

// A server answered over TCP (a TURN/TCP or TLS relay) while nothing came back over UDP from
// the same host: UDP is most likely blocked on the way. Rather than hold gathering until the UDP
// transactions time out (seconds, what an offer/answer exchange without trickle waits for),
// give UDP as long again as TCP took (at least 300 ms: two retransmissions), then report the
// silent UDP servers on that host as failed. A late UDP answer still yields its candidates.
void Agent::Impl::startUdpSilenceTimer(StreamId id, size_t tcpSlot,
                                       std::chrono::milliseconds tcpElapsed) {
    Stream* stream = findStream(id);
    if (!stream || stream->udpSilenceTimer || stream->gatheringDone) {
        return;
    }
    std::string host = lowercase(stream->servers[tcpSlot].status.uri.host);
    auto grace = std::max(std::chrono::milliseconds(300), tcpElapsed);
    stream->udpSilenceTimer =
        startTimer(context_, grace, weak_from_this(), [id, host, tcpSlot](Impl& impl) {
            Stream* stream = impl.findStream(id);
            if (!stream) {
                return;
            }
            g_source_unref(stream->udpSilenceTimer); // fired: the source removes itself
            stream->udpSilenceTimer = nullptr;
            auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                Clock::now() - stream->gatherStart);
            std::string tcpUri = stream->servers[tcpSlot].status.uri.toString();
            for (size_t i = 0; i < stream->servers.size(); ++i) {
                const ServerSlot& slot = stream->servers[i];
                const ServerUri& uri = slot.status.uri;
                if (slot.reported || uri.scheme == UriScheme::Turns ||
                    uri.effectiveTransport() != Transport::Udp || lowercase(uri.host) != host) {
                    continue;
                }
                impl.reportServer(id, i,
                                  {uri,
                                   false,
                                   elapsed,
                                   0,
                                   "no answer over UDP within " + ms(elapsed) + ", while " +
                                       tcpUri +
                                       " on the same host answered over TCP (UDP "
                                       "blocked on the way, or nothing listens there)",
                                   {}});
            }
        });
}

std::string Agent::Impl::lowercase(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

// One relay for libnice: `address` is the server's IP literal, or (except for turns:) its host
// name, which libnice resolves itself.
void Agent::Impl::addRelay(StreamId id, size_t slotIndex, const std::string& address) {
    Stream* stream = findStream(id);
    const TurnServer& turn = config_.turnServers[stream->servers[slotIndex].turnIndex];
    if (stream->relayOrder.size() >= kMaxRelays) {
        reportServer(id, slotIndex,
                     {turn.uri,
                      false,
                      {},
                      0,
                      "not used: libnice takes at most " + std::to_string(kMaxRelays) +
                          " TURN servers (addresses) per component",
                      {}});
        return;
    }
    std::string relayIp = address;
    uint16_t relayPort = turn.uri.port;
    NiceRelayType type = relayType(turn);
    if (turn.uri.scheme == UriScheme::Turns) {
        // libnice's own TLS relay type does no TLS: it talks TURN-TCP to a local bridge.
        impl::TlsBridgeOptions options;
        options.serverAddress = address;
        options.serverPort = turn.uri.port;
        options.serverName = turn.uri.host;
        options.tls = turn.tls;
        options.onError = [weak = weak_from_this(), id, slotIndex, uri = turn.uri,
                           start = stream->gatherStart](const std::string& error) {
            auto self = weak.lock();
            if (!self) {
                return;
            }
            auto elapsed =
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
            self->loop_->post([weak, id, slotIndex, uri, elapsed, error] {
                if (auto s = weak.lock()) {
                    s->reportServer(id, slotIndex, {uri, false, elapsed, 0, error, {}});
                }
            });
        };
        auto bridge = impl::TlsBridge::start(std::move(options));
        if (!bridge) {
            reportServer(id, slotIndex, {turn.uri, false, {}, 0, bridge.error().message, {}});
            return;
        }
        relayIp = (*bridge)->localAddress();
        relayPort = (*bridge)->localPort();
        stream->servers[slotIndex].probeVia =
            impl::ProbeEndpoint{relayIp, relayPort, Transport::Tcp};
        type = NICE_RELAY_TYPE_TURN_TCP;
        bridges_.push_back(std::move(*bridge));
    }
    auto creds = turn.credentials();
    addSecret(creds.password);
    bool added = true;
    for (unsigned c = 1; c <= stream->components.size(); ++c) {
        added = nice_agent_set_relay_info(agent_, id, c, relayIp.c_str(), relayPort,
                                          creds.username.c_str(), creds.password.c_str(), type) &&
                added;
    }
    if (!added) {
        reportServer(id, slotIndex,
                     {turn.uri, false, {}, 0, "libnice did not take this TURN server", {}});
        return;
    }
    stream->relayOrder.push_back(slotIndex);
}

namespace {

struct ResolveData {
    bool ipv4, ipv6;
    std::function<void(Result<std::vector<std::string>>)> done;
};

void resolvedCb(GObject* source, GAsyncResult* result, gpointer user) {
    std::unique_ptr<ResolveData> data(static_cast<ResolveData*>(user));
    GError* error = nullptr;
    GList* list = g_resolver_lookup_by_name_finish(G_RESOLVER(source), result, &error);
    if (!list) {
        bool cancelled = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        std::string message = error ? error->message : "no address";
        g_clear_error(&error);
        if (!cancelled) {
            data->done(Error{"cannot resolve: " + message});
        }
        return;
    }
    std::vector<std::string> addresses;
    for (GList* item = list; item; item = item->next) {
        auto* address = G_INET_ADDRESS(item->data);
        bool v6 = g_inet_address_get_family(address) == G_SOCKET_FAMILY_IPV6;
        if ((v6 && !data->ipv6) || (!v6 && !data->ipv4)) {
            continue;
        }
        gchar* text = g_inet_address_to_string(address);
        addresses.emplace_back(text);
        g_free(text);
    }
    g_resolver_free_addresses(list);
    if (addresses.empty()) {
        data->done(
            Error{"cannot resolve: no address of an enabled family (AgentConfig::ipv4/ipv6)"});
        return;
    }
    data->done(std::move(addresses));
}

} // namespace

// GResolver on the loop's context: the lookup runs on GLib's resolver threads, the answer comes
// back on the loop; teardown cancels it.
void Agent::Impl::resolveAsync(const std::string& host,
                               std::function<void(Result<std::vector<std::string>>)> done) {
    if (!resolveCancel_) {
        resolveCancel_ = g_cancellable_new();
    }
    GResolver* resolver = g_resolver_get_default();
    g_resolver_lookup_by_name_async(resolver, host.c_str(), resolveCancel_, resolvedCb,
                                    new ResolveData{config_.ipv4, config_.ipv6, std::move(done)});
    g_object_unref(resolver);
}

// A relay's priority carries its TURN server's position in libnice's list (local preference
// bits 6-8, RFC 8445 5.1.2.1), which is the order relays were handed to libnice.
std::optional<size_t> Agent::Impl::relaySlotOf(const Stream& stream, const Candidate& relay) {
    size_t position = (relay.priority >> 14) & 7;
    if (relay.type != CandidateType::Relayed || position >= stream.relayOrder.size()) {
        return std::nullopt;
    }
    return stream.relayOrder[position];
}

std::optional<size_t> Agent::Impl::relaySibling(const Stream& stream, size_t slotIndex) const {
    const ServerSlot& slot = stream.servers[slotIndex];
    for (size_t j = 0; j < stream.servers.size(); ++j) {
        const ServerSlot& other = stream.servers[j];
        if (j != slotIndex && other.isTurn && !slot.resolvedIp.empty() &&
            other.resolvedIp == slot.resolvedIp && other.reported && other.status.candidate &&
            other.status.candidate->type == CandidateType::Relayed) {
            return j;
        }
    }
    return std::nullopt;
}

// A relay on a server address has arrived: slots on the same address whose own check answered
// will get no candidate from libnice; say so now.
void Agent::Impl::reportSiblingsOf(StreamId id, size_t slotIndex) {
    Stream* stream = findStream(id);
    for (size_t k = 0; k < stream->servers.size(); ++k) {
        ServerSlot& other = stream->servers[k];
        if (k != slotIndex && !other.reported && other.probed) {
            ServerStatus status = *other.probed;
            other.probed.reset();
            onProbeResult(id, k, status);
        }
    }
}

void Agent::Impl::onProbeResult(StreamId id, size_t slotIndex, ServerStatus status) {
    Stream* stream = findStream(id);
    if (!stream || slotIndex >= stream->servers.size()) {
        return;
    }
    ServerSlot& slot = stream->servers[slotIndex];
    slot.probing = false;
    if (slot.reported) {
        return;
    }
    if (slot.isTurn && status.ok && slot.sharesServerWith) {
        if (auto sibling = relaySibling(*stream, slotIndex)) {
            const ServerSlot& s = stream->servers[*sibling];
            status.message = "allocated, but no relay candidate of its own: libnice keeps one "
                             "relay per server address, and " +
                             s.status.uri.toString() + " has it";
            status.candidate = s.status.candidate;
            reportServer(id, slotIndex, std::move(status));
        } else if (!stream->gatheringDone) {
            slot.probed = std::move(status); // our own relay or a sibling's is still coming
        } else {
            reportServer(id, slotIndex, std::move(status));
        }
        return;
    }
    reportServer(id, slotIndex, std::move(status));
}

void Agent::Impl::onGatheringDone(StreamId id) {
    finishGathering(id);
}

// After a TURN name lookup: when every server has answered, gathering is done now; otherwise
// libnice, re-armed by the relays just added, signals gathering-done again.
void Agent::Impl::finishGatheringIfDue(StreamId id) {
    Stream* stream = findStream(id);
    if (!stream || stream->gatheringDone || stream->pendingResolves > 0) {
        return;
    }
    bool allReported = std::all_of(stream->servers.begin(), stream->servers.end(),
                                   [](const ServerSlot& s) { return s.reported; });
    if (allReported) {
        finishGathering(id);
    }
}

void Agent::Impl::onGatherTimeout(StreamId id) {
    Stream* stream = findStream(id);
    if (!stream) {
        return;
    }
    if (stream->gatherTimer) {
        g_source_unref(stream->gatherTimer); // fired: the source removes itself
        stream->gatherTimer = nullptr;
    }
    if (stream->gatheringDone) {
        return;
    }
    for (size_t i = 0; i < stream->servers.size(); ++i) {
        if (!stream->servers[i].reported) {
            const ServerUri& uri = stream->servers[i].status.uri;
            reportServer(
                id, i,
                {uri,
                 false,
                 gatherTimeoutOf(*stream),
                 0,
                 "no answer from " + uri.toString() + " within " + ms(gatherTimeoutOf(*stream)),
                 {}});
        }
    }
    finishGathering(id, true);
}

void Agent::Impl::finishGathering(StreamId id, bool timedOut) {
    Stream* stream = findStream(id);
    if (!stream || stream->gatheringDone) {
        return;
    }
    if (stream->pendingResolves > 0 && !timedOut) {
        return; // a relay is not even handed to libnice yet; libnice will signal again
    }
    {
        std::lock_guard snapshot(snapshotMutex_);
        stream->gatheringDone = true;
    }
    for (size_t i = 0; i < stream->servers.size(); ++i) {
        if (auto& held = stream->servers[i].probed; held && !stream->servers[i].reported) {
            ServerStatus status = *held;
            held.reset();
            onProbeResult(id, i, std::move(status));
        }
    }
    if (stream->gatherTimer) {
        GSource* timer = stream->gatherTimer;
        stream->gatherTimer = nullptr;
        g_source_destroy(timer);
        g_source_unref(timer);
    }
    stopTimer(stream->udpSilenceTimer);
    diagnoseServers(id);
    emit([this, id = userOf(id), described = isDescribed(id)] {
        if (described && callbacks_.gatheringDone()) {
            callbacks_.gatheringDone()(id);
        }
    });
    checkNoCandidates(id);
}

// ": turn:H: 401 Unauthorized ..." for every server that failed, so that a timeout names them.
std::string Agent::Impl::serverSummary(StreamId id) {
    Stream* stream = findStream(id);
    std::string out;
    for (const auto& slot : stream->servers) {
        if (slot.reported && !slot.status.ok) {
            out += (out.empty() ? "; servers that failed: " : "; ") + slot.status.uri.toString() +
                   ": " + slot.status.message;
        }
    }
    return out;
}

// libnice does not say why a server gave no candidate: ask the server ourselves, off the loop.
void Agent::Impl::diagnoseServers(StreamId id) {
    Stream* stream = findStream(id);
    bool haveSrflx =
        std::any_of(stream->localCandidates.begin(), stream->localCandidates.end(),
                    [](const Candidate& c) { return c.type == CandidateType::ServerReflexive; });
    auto remaining =
        gatherTimeoutOf(*stream) -
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - stream->gatherStart);
    for (size_t i = 0; i < stream->servers.size(); ++i) {
        if (!stream->servers[i].reported && !stream->servers[i].probing) {
            probeServer(id, i, std::max(remaining, std::chrono::milliseconds(500)),
                        haveSrflx ? "reachable"
                                  : "reachable (mapped address is a host address: no NAT)");
        }
    }
}

// Asks one server ourselves, off the loop (blocking probe on a short-lived thread), and reports
// the answer on the loop.
void Agent::Impl::probeServer(StreamId id, size_t slotIndex, std::chrono::milliseconds timeout,
                              std::string stunOkMessage) {
    Stream* stream = findStream(id);
    ServerSlot& slot = stream->servers[slotIndex];
    slot.probing = true;
    const ServerUri uri = slot.status.uri;
    if (!slot.probeVia && !impl::isIpLiteral(uri.host)) {
        // Resolved on the loop first: a probe thread blocked in getaddrinfo could not be
        // cancelled, and teardown joins it.
        resolveAsync(uri.host, [weak = weak_from_this(), id, slotIndex, timeout,
                                stunOkMessage](Result<std::vector<std::string>> addresses) {
            auto self = weak.lock();
            Stream* stream = self && self->agent_ ? self->findStream(id) : nullptr;
            if (!stream || stream->discarded) {
                return;
            }
            if (!addresses) {
                const ServerSlot& s = stream->servers[slotIndex];
                self->onProbeResult(id, slotIndex,
                                    {s.status.uri, false, {}, 0, addresses.error().message, {}});
                return;
            }
            // The first address of a family we gather on (a name often has both).
            const auto& local = stream->localCandidates;
            std::string address = addresses->front();
            for (const auto& a : *addresses) {
                bool v6 = a.find(':') != std::string::npos;
                if (std::any_of(local.begin(), local.end(),
                                [&](const Candidate& c) { return c.isIpv6() == v6; })) {
                    address = a;
                    break;
                }
            }
            self->startProbe(id, slotIndex, address, timeout, stunOkMessage);
        });
        return;
    }
    startProbe(id, slotIndex, uri.host, timeout, std::move(stunOkMessage));
}

void Agent::Impl::startProbe(StreamId id, size_t slotIndex, const std::string& address,
                             std::chrono::milliseconds timeout, std::string stunOkMessage) {
    Stream* stream = findStream(id);
    ServerSlot& slot = stream->servers[slotIndex];
    const ServerUri uri = slot.status.uri;
    impl::ProbeEndpoint endpoint{address, uri.port, uri.effectiveTransport()};
    if (slot.probeVia) {
        endpoint = *slot.probeVia; // turns: the TLS bridge carries the check too
    }
    std::optional<TurnCredentials> creds;
    if (slot.isTurn) {
        creds = config_.turnServers[slot.turnIndex].credentials();
    }
    if (!cancelProbes_) {
        cancelProbes_ = std::make_shared<std::atomic<bool>>(false);
    }
    probeThreads_.emplace_back([weak = weak_from_this(), endpoint, uri, id, slotIndex, creds,
                                timeout, stunOkMessage = std::move(stunOkMessage),
                                cancel = cancelProbes_, start = stream->gatherStart]() mutable {
        ServerStatus status{uri, false, {}, 0, {}, {}};
        if (creds) {
            auto r = impl::turnAllocate(endpoint, creds->username, creds->password, timeout,
                                        cancel.get(), true);
            status.ok = r.ok;
            status.stunError = r.stunError;
            status.message = r.ok ? "relay allocated by a check, but libnice got none" : r.message;
        } else {
            auto r = impl::stunBinding(endpoint, timeout, cancel.get());
            status.ok = r.ok;
            status.stunError = r.stunError;
            status.message = r.ok ? stunOkMessage : r.error;
        }
        status.elapsed =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
        auto self = weak.lock();
        if (!self || *cancel) {
            return;
        }
        self->loop_->post([weak, id, slotIndex, status] {
            if (auto s = weak.lock()) {
                s->onProbeResult(id, slotIndex, status);
            }
        });
    });
}

void Agent::Impl::setComponentState(StreamId id, ComponentId componentId, ComponentState state) {
    Stream* stream = findStream(id);
    if (!stream || stream->pending || stream->discarded || componentId < 1 ||
        componentId > stream->components.size()) {
        return;
    }
    Component& component = stream->components[componentId - 1];
    if (component.state == state) {
        return;
    }
    if (component.state == ComponentState::Failed) {
        return; // final: libnice may go on checking (new candidates, late answers), we do not
    }
    // Connected is always reported before Completed, even when libnice skips it.
    if (state == ComponentState::Completed && !component.everConnected) {
        setComponentState(id, componentId, ComponentState::Connected);
    }
    ComponentState previous = component.state;
    {
        std::lock_guard snapshot(snapshotMutex_);
        component.state = state;
    }
    if (config_.security.enabled && state == ComponentState::Connected) {
        // Not inside libnice's signal: the handshake's first flight goes out through it.
        later([user = stream->user, componentId](Impl& impl) {
            impl.startSecure(user, componentId);
        });
    }
    if (state == ComponentState::Connected && !component.everConnected) {
        component.everConnected = true;
        if (UserStream* u = findUser(stream->user)) {
            u->liveness[componentId - 1].connected(Clock::now());
        }
        startLivenessTimer();
        bool all = std::all_of(stream->components.begin(), stream->components.end(),
                               [](const Component& c) { return c.everConnected; });
        if (all) {
            stopTimer(stream->connectTimer);
        }
    }
    updateIdleTimeout();
    emit([this, id = userOf(id), componentId, state] {
        if (callbacks_.stateChanged()) {
            callbacks_.stateChanged()(id, componentId, state);
        }
    });
    if (state == ComponentState::Failed) {
        Failure failure;
        if (previous == ComponentState::Connected || previous == ComponentState::Completed) {
            failure = {FailureKind::ConsentLost, "the peer stopped answering (consent lost)"};
        } else {
            failure = {FailureKind::ChecksFailed,
                       "every candidate pair failed its checks" + serverSummary(id)};
            if (stream->localCandidates.empty()) {
                failure = {FailureKind::NoCandidates, "no local candidates were gathered"};
            }
        }
        emit([this, id = userOf(id), componentId, failure] {
            if (callbacks_.failed()) {
                callbacks_.failed()(id, componentId, failure);
            }
        });
    }
}

// When its checks have nothing left to do, libnice keeps ticking every Ta for "idle-timeout"
// (5 s) before stopping, the grace period before it declares a component with only failed pairs
// failed (and trickled candidates may still come). A connected component does not need it, yet
// each agent would wake 500 times after connecting; with thousands of agents on one loop that
// is most of the cost of connecting them. So: libnice's 5 s while anything is unconnected, its
// minimum (50 ms) once everything is. New checks (trickled candidates) restart the timer.
void Agent::Impl::updateIdleTimeout() {
    bool connected = !streams_.empty();
    for (const auto& [id, stream] : streams_) {
        if (stream.discarded) {
            continue; // replaced by a restart, lingering to receive what was in flight
        }
        for (const auto& c : stream.components) {
            connected = connected && (c.state == ComponentState::Connected ||
                                      c.state == ComponentState::Completed);
        }
    }
    g_object_set(agent_, "idle-timeout", guint(connected ? 50 : 5000), nullptr);
}

void Agent::Impl::onStateChanged(StreamId id, ComponentId component, NiceComponentState state) {
    ComponentState mapped = impl::fromNice(state);
    Stream* stream = findStream(id);
    if (!stream || stream->discarded || component < 1 || component > stream->components.size()) {
        return;
    }
    if (stream->pending) {
        onPendingState(id, component, state);
        return;
    }
    Component& c = stream->components[component - 1];
    if (c.everConnected && c.state != ComponentState::Failed) {
        // Connected once: from here on the liveness policy says whether the peer is reached.
        // libnice's FAILED is a consent timeout or a lost socket; the states it passes through
        // when a pair is re-armed (connecting, connected, ready) say nothing new.
        if (state == NICE_COMPONENT_STATE_FAILED) {
            onPathFailed(id, component);
        } else if (state == NICE_COMPONENT_STATE_READY && c.state == ComponentState::Connected) {
            setComponentState(id, component, ComponentState::Completed);
        }
        if (state == NICE_COMPONENT_STATE_READY) {
            pruneChecksOverTcpRelay(id, component);
        }
        return;
    }
    if (UserStream* u = findUser(stream->user);
        u && u->pending && mapped == ComponentState::Failed) {
        // Restarted before it connected: this session's failure waits for the restart's.
        c.heldFailure =
            std::make_unique<Failure>(FailureKind::ChecksFailed,
                                      "every candidate pair failed its checks" + serverSummary(id));
        return;
    }
    // Before remote candidates arrive libnice reports gathering/connecting; keep those as they are.
    setComponentState(id, component, mapped);
    if (state == NICE_COMPONENT_STATE_READY) {
        pruneChecksOverTcpRelay(id, component);
    }
}

// The selected pair's socket carries the call: room for a burst the app has not taken yet.
// Datagrams go to the app from libnice's read (deliverNow), so the socket's buffer is what
// absorbs a burst, and the kernel's default (208 KiB; about 120 small datagrams on loopback
// once UDP's lazy accounting of freed memory is counted) drops them early. The kernel caps the
// request at net.core.rmem_max (then doubles it): 416 KiB on a stock Debian 12. libnice hands
// out the socket of a direct UDP pair only; a relayed pair keeps the default.
void Agent::Impl::growReceiveBuffer(StreamId id, ComponentId component) {
    GSocket* socket = nice_agent_get_selected_socket(agent_, id, component);
    if (!socket) {
        return;
    }
    int size = kReceiveBufferBytes;
    if (setsockopt(g_socket_get_fd(socket), SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0) {
        impl::log(LogLevel::Debug,
                  std::string("SO_RCVBUF on the selected socket: ") + std::strerror(errno));
    }
    g_object_unref(socket);
}

void Agent::Impl::onSelectedPair(StreamId id, ComponentId componentId, NiceCandidate* local,
                                 NiceCandidate* remote) {
    Stream* stream = findStream(id);
    if (!stream || stream->discarded || componentId < 1 ||
        componentId > stream->components.size()) {
        return;
    }
    CandidatePair pair{impl::fromNice(*local), impl::fromNice(*remote), {}, {}};
    if (auto slot = relaySlotOf(*stream, pair.local)) {
        const ServerUri& uri = stream->servers[*slot].status.uri;
        pair.relayServer = uri;
        pair.relayProtocol = uri.scheme == UriScheme::Turns               ? "tls"
                             : uri.effectiveTransport() == Transport::Tcp ? "tcp"
                                                                          : "udp";
    }
    Component& component = stream->components[componentId - 1];
    bool same = component.pair && component.pair->local.endpoint() == pair.local.endpoint() &&
                component.pair->remote.endpoint() == pair.remote.endpoint() &&
                component.pair->local.transport == pair.local.transport;
    {
        std::lock_guard snapshot(snapshotMutex_);
        component.pair = pair;
    }
    if (!same) {
        growReceiveBuffer(id, componentId);
    }
    if (stream->pending) {
        maybePromote(id); // reported when it takes over
        return;
    }
    if (same) {
        return; // the pair re-armed after a consent timeout
    }
    if (component.everConnected) {
        if (UserStream* u = findUser(stream->user)) {
            u->liveness[componentId - 1].connected(Clock::now());
        }
    }
    emit([this, id = userOf(id), componentId, pair] {
        if (callbacks_.selectedPairChanged()) {
            callbacks_.selectedPairChanged()(id, componentId, pair);
        }
    });
}

void Agent::Impl::onReceive(StreamId id, ComponentId componentId, const char* data, size_t size) {
    Stream* stream = findStream(id);
    if (!stream || componentId < 1 || componentId > stream->components.size()) {
        return;
    }
    Component& component = stream->components[componentId - 1];
    auto& counters = *component.counters;
    auto bytes = std::span(reinterpret_cast<const std::byte*>(data), size);
    counters.bytesReceived += size;
    counters.packetsReceived += 1;
    // The session a restart replaced says the peer is alive, not that our new route works.
    if ((component.everConnected || stream->pending) && !stream->discarded) {
        if (UserStream* u = findUser(stream->user)) {
            u->liveness[componentId - 1].received(coarseNow());
            // Traffic is back: connected again at once, not at the next liveness tick.
            if (Stream* active = findUserStream(stream->user)) {
                Component& shown = active->components[componentId - 1];
                if (shown.state == ComponentState::Disconnected && !shown.pathLost) {
                    setUserState(u->active, componentId, ComponentState::Connected);
                    endRecovery(stream->user);
                }
            }
        }
    }
    if (counters.secure) {
        // RFC 7983. libnice keeps STUN; DTLS goes to the component's session; RTP/RTCP to the
        // app as it came, once secure; anything else is no one's.
        PacketKind kind = size ? classifyPacket(bytes[0]) : PacketKind::Other;
        if (kind == PacketKind::Dtls) {
            onSecureRecord(stream->user, componentId, bytes);
        } else if (kind == PacketKind::Rtp && counters.secure->srtp && callbacks_.receivedMedia() &&
                   !deliverNow(stream->user, componentId, bytes, true) &&
                   !enqueue(
                       Datagram{stream->user, componentId, {bytes.begin(), bytes.end()}, true})) {
            counters.packetsDropped += 1;
        }
        return;
    }
    if (!callbacks_.received()) {
        return;
    }
    // Behind queued events: queued as plain data, not as a closure (one copy, no other
    // allocation).
    if (!deliverNow(stream->user, componentId, bytes, false) &&
        !enqueue(Datagram{stream->user, componentId, {bytes.begin(), bytes.end()}})) {
        counters.packetsDropped += 1;
    }
}

Result<SessionDescription> Agent::Impl::localDescriptionOf(StreamId id) {
    // Any thread: libnice's credentials under its own lock, the rest from the snapshot.
    {
        std::lock_guard snapshot(snapshotMutex_);
        if (!findStream(id)) {
            return Error{"no stream " + std::to_string(id), ErrorCode::NoSuchStream};
        }
    }
    gchar* ufrag = nullptr;
    gchar* pwd = nullptr;
    if (!nice_agent_get_local_credentials(agent_, id, &ufrag, &pwd)) {
        return Error{"libnice has no credentials for stream " + std::to_string(id)};
    }
    SessionDescription description;
    description.ufrag = ufrag;
    description.pwd = pwd;
    g_free(ufrag);
    g_free(pwd);
    if (config_.trickle) {
        description.options.push_back("trickle");
    }
    std::lock_guard snapshot(snapshotMutex_);
    Stream* stream = findStream(id);
    if (!stream) {
        return Error{"no stream " + std::to_string(id), ErrorCode::NoSuchStream};
    }
    description.candidates = stream->localCandidates;
    description.endOfCandidates = stream->gatheringDone;
    if (certificate_) {
        description.fingerprints = {certificate_->fingerprint()};
        description.setup = config_.security.setup;
    }
    return description;
}

Status Agent::Impl::addRemoteCandidateTo(StreamId id, const Candidate& candidate) {
    Stream* stream = findStream(id);
    if (!stream) {
        return Error{"no stream " + std::to_string(id), ErrorCode::NoSuchStream};
    }
    if (candidate.component < 1 || candidate.component > stream->components.size()) {
        return Error{"candidate for component " + std::to_string(candidate.component) +
                     ", but the stream has " + std::to_string(stream->components.size())};
    }
    if (candidate.transport == Transport::Tcp && !config_.tcp) {
        return Error{"ICE-TCP candidate, and ICE-TCP is off (AgentConfig::tcp)"};
    }
    if (candidate.transport == Transport::Udp && !config_.udp) {
        return Error{"UDP candidate, and UDP is off (AgentConfig::udp)"};
    }
    if (stream->pending) {
        stream->remoteCandidates.push_back(candidate); // a later attempt may need them
    }
    if (isMdnsName(candidate.address)) {
        if (!config_.resolveMdns) {
            return Error{"mDNS name " + candidate.address +
                         ", and mDNS resolution is off (AgentConfig::resolveMdns)"};
        }
        resolveMdnsCandidate(id, candidate);
        return {};
    }
    auto nc = impl::toNice(candidate, id);
    if (!nc) {
        return nc.error();
    }
    GSList list{*nc, nullptr};
    int added = nice_agent_set_remote_candidates(agent_, id, candidate.component, &list);
    nice_candidate_free(*nc);
    if (added < 0) {
        return Error{"libnice rejected remote candidate " + candidate.toString()};
    }
    // Trickle: the peer's checks often arrive before its candidate, so the pair was selected
    // with a peer-reflexive remote; now that the peer named it, report what it really is.
    Component& component = stream->components[candidate.component - 1];
    if (component.pair && component.pair->remote.type == CandidateType::PeerReflexive &&
        component.pair->remote.endpoint() == candidate.endpoint() &&
        component.pair->remote.transport == candidate.transport) {
        CandidatePair pair = *component.pair;
        pair.remote = candidate;
        {
            std::lock_guard snapshot(snapshotMutex_);
            component.pair = pair;
        }
        emit([this, id = userOf(id), c = candidate.component, pair] {
            if (callbacks_.selectedPairChanged()) {
                callbacks_.selectedPairChanged()(id, c, pair);
            }
        });
    }
    startConnectTimer(id);
    return {};
}

Status Agent::Impl::setRemoteOf(StreamId id, const SessionDescription& description) {
    Stream* stream = findStream(id);
    if (!stream) {
        return Error{"no stream " + std::to_string(id), ErrorCode::NoSuchStream};
    }
    if (!nice_agent_set_remote_credentials(agent_, id, description.ufrag.c_str(),
                                           description.pwd.c_str())) {
        return Error{"libnice rejected the remote credentials"};
    }
    stream->remoteSet = true;
    stream->remoteUfrag = description.ufrag;
    stream->remotePwd = description.pwd;
    addSecret(description.pwd);
    auto skipped = [this, id](SkippedLine line) {
        emit([this, id = userOf(id), line = std::move(line)] {
            if (callbacks_.remoteCandidateSkipped()) {
                callbacks_.remoteCandidateSkipped()(id, line);
            }
        });
    };
    for (const auto& line : description.skipped) {
        skipped(line);
    }
    // RFC 8839: what cannot be used is ignored; it never spoils the other candidates.
    for (const auto& candidate : description.candidates) {
        if (auto status = addRemoteCandidateTo(id, candidate); !status) {
            skipped({0, "a=" + candidate.toString(), status.error().message});
        }
    }
    if (description.endOfCandidates) {
        return endOfRemoteCandidatesOf(id);
    }
    startConnectTimer(id);
    return {};
}

Status Agent::Impl::endOfRemoteCandidatesOf(StreamId id) {
    Stream* stream = findStream(id);
    if (!stream) {
        return Error{"no stream " + std::to_string(id), ErrorCode::NoSuchStream};
    }
    // Not while an mDNS name is being resolved: libnice would fail the component before the
    // resolved candidate arrives. Said once the last resolution is done.
    stream->remoteEnded = true;
    if (stream->mdnsPending == 0) {
        nice_agent_peer_candidate_gathering_done(agent_, id);
    }
    return {};
}

bool Agent::Impl::isMdnsName(const std::string& address) {
    constexpr std::string_view kLocal = ".local";
    std::string lower = lowercase(address);
    if (lower.ends_with(".")) {
        lower.pop_back();
    }
    return lower.size() > kLocal.size() && lower.ends_with(kLocal);
}

// RFC 8828: browsers hide their host address behind a random "<uuid>.local" name. Resolved with
// a one-shot mDNS query (RFC 6762) on the loop, bounded by kMdnsTimeout; the candidate is then
// added with the address, or skipped and reported.
void Agent::Impl::resolveMdnsCandidate(StreamId id, const Candidate& candidate) {
    if (!mdns_) {
        mdns_ = impl::MdnsResolver::create(context_);
    }
    ++findStream(id)->mdnsPending;
    mdns_->resolve(
        candidate.address, kMdnsTimeout,
        [weak = weak_from_this(), id, candidate](Result<std::vector<std::string>> addresses) {
            auto self = weak.lock();
            if (!self || !self->agent_) {
                return;
            }
            self->onMdnsResolved(id, candidate, std::move(addresses));
        });
}

void Agent::Impl::onMdnsResolved(StreamId id, Candidate candidate,
                                 Result<std::vector<std::string>> addresses) {
    Stream* stream = findStream(id);
    if (!stream) {
        return;
    }
    std::string name = candidate.address;
    std::string reason;
    if (!addresses) {
        reason = addresses.error().message;
    } else {
        for (const auto& address : *addresses) {
            bool v6 = address.find(':') != std::string::npos;
            if ((v6 && !config_.ipv6) || (!v6 && !config_.ipv4)) {
                continue;
            }
            candidate.address = address;
            if (auto status = addRemoteCandidateTo(id, candidate); status) {
                reason.clear();
                break;
            } else {
                reason = status.error().message;
            }
        }
        if (candidate.address == name && reason.empty()) {
            reason = "mDNS name " + name + " resolved only to addresses of a disabled family";
        }
    }
    if (!reason.empty()) {
        candidate.address = name;
        SkippedLine line{0, "a=" + candidate.toString(), reason};
        emit([this, id = userOf(id), line] {
            if (callbacks_.remoteCandidateSkipped()) {
                callbacks_.remoteCandidateSkipped()(id, line);
            }
        });
    }
    if (--stream->mdnsPending == 0 && stream->remoteEnded) {
        nice_agent_peer_candidate_gathering_done(agent_, id);
    }
}

void Agent::Impl::startConnectTimer(StreamId id) {
    Stream* stream = findStream(id);
    if (!stream || stream->connectTimer) {
        return;
    }
    bool all = std::all_of(stream->components.begin(), stream->components.end(),
                           [](const Component& c) { return c.everConnected; });
    if (all) {
        return;
    }
    stream->connectTimer = startTimer(context_, config_.connectTimeout, weak_from_this(),
                                      [id](Impl& impl) { impl.onConnectTimeout(id); });
}

void Agent::Impl::onConnectTimeout(StreamId id) {
    Stream* stream = findStream(id);
    if (!stream) {
        return;
    }
    if (stream->connectTimer) {
        g_source_unref(stream->connectTimer); // fired: the source removes itself
        stream->connectTimer = nullptr;
    }
    for (unsigned c = 1; c <= stream->components.size(); ++c) {
        failComponent(id, c,
                      {FailureKind::ConnectTimeout,
                       "not connected within " + ms(config_.connectTimeout) + serverSummary(id)});
    }
}

// ---- The app's streams, ICE restart and recovery ----

Agent::Impl::UserStream* Agent::Impl::findUser(StreamId user) {
    auto it = users_.find(user);
    return it == users_.end() ? nullptr : &it->second;
}

Agent::Impl::UserStream::Restarts& Agent::Impl::restartsOf(UserStream& u) {
    if (!u.restarts) {
        u.restarts = std::make_unique<UserStream::Restarts>();
        impl::Recovery::Config recovery;
        recovery.giveUpAfter = config_.connectTimeout;
        u.restarts->recovery = impl::Recovery(recovery);
    }
    return *u.restarts;
}

Agent::Impl::Stream* Agent::Impl::findUserStream(StreamId user) {
    UserStream* u = findUser(user);
    return u ? findStream(u->active) : nullptr;
}

// The libnice stream localDescription() describes: during a restart the new one.
bool Agent::Impl::isDescribed(StreamId id) {
    Stream* stream = findStream(id);
    UserStream* u = stream ? findUser(stream->user) : nullptr;
    return u && (u->pending ? u->pending : u->active) == id;
}

StreamId Agent::Impl::userOf(StreamId id) {
    Stream* stream = findStream(id);
    return stream ? stream->user : id;
}

namespace {

Error noStream(StreamId user) {
    return Error{"no stream " + std::to_string(user), ErrorCode::NoSuchStream};
}

} // namespace

Status Agent::Impl::gather(StreamId user) {
    UserStream* u = findUser(user);
    if (!u) {
        return noStream(user);
    }
    return gatherStream(u->active);
}

Result<SessionDescription> Agent::Impl::localDescription(StreamId user) {
    StreamId id = 0;
    {
        std::lock_guard snapshot(snapshotMutex_);
        UserStream* u = findUser(user);
        if (!u) {
            return noStream(user);
        }
        id = u->pending ? u->pending : u->active; // during a restart: the new session's
    }
    return localDescriptionOf(id);
}

Status Agent::Impl::setRemote(StreamId user, const SessionDescription& description) {
    UserStream* u = findUser(user);
    Stream* active = u ? findStream(u->active) : nullptr;
    if (!active) {
        return noStream(user);
    }
    if (config_.security.enabled && !description.fingerprints.empty()) {
        noteRemoteFingerprints(user, *u, description.fingerprints,
                               static_cast<unsigned>(active->components.size()));
    }
    if (description.setup) {
        u->remoteSetup = description.setup;
    }
    auto sameCredentials = [&](const Stream& s) {
        return s.remoteUfrag == description.ufrag && s.remotePwd == description.pwd;
    };
    Stream* pending = u->pending ? findStream(u->pending) : nullptr;
    StreamId target = 0;
    if (!active->remoteSet) {
        target = pending ? u->pending : u->active; // the first description
    } else if (sameCredentials(*active)) {
        target = u->active; // the same session again (more candidates, a re-read file)
    } else if (pending && (!pending->remoteSet || sameCredentials(*pending))) {
        target = u->pending; // the answer to our restart
    } else if (pending) {
        // Other credentials again while a restart is under way: the peer answered a restart of
        // ours we have replaced since, or restarted once more. The session under way takes
        // them (libnice replaces the remote credentials); restarting again here would answer
        // the peer's previous session each time and never meet it.
        target = u->pending;
    } else if (u->recovering() && u->restarts->attemptTimer) {
        // Between recovery attempts (ours failed; its backoff runs): the peer's answer to it,
        // arriving late, or the peer's own restart. The next attempt answers it (answerAt).
        auto& r = *u->restarts;
        if (r.peerSession && r.peerSession->ufrag == description.ufrag &&
            r.peerSession->pwd == description.pwd) {
            for (const auto& c : description.candidates) {
                r.peerSession->candidates.push_back(c);
            }
            r.peerSession->endOfCandidates |= description.endOfCandidates;
        } else {
            r.peerSession = std::make_unique<SessionDescription>(description);
        }
        auto now = Clock::now();
        auto at = r.recovery.answerAt(now);
        if (at < r.retryAt) {
            armRetry(user, std::chrono::ceil<std::chrono::milliseconds>(at - now));
        }
        return {};
    } else {
        // RFC 8445 section 9: other credentials are the peer's ICE restart; ours answers it.
        startRestart(user, "the peer restarted ICE (new ufrag " + description.ufrag + ")");
        target = u->pending;
    }
    if (!target) {
        return Error{"the peer restarted ICE and our restart failed to start"};
    }
    return setRemoteOf(target, description);
}

Status Agent::Impl::addRemoteCandidate(StreamId user, const Candidate& candidate) {
    UserStream* u = findUser(user);
    if (!u) {
        return noStream(user);
    }
    Stream* pending = u->pending ? findStream(u->pending) : nullptr;
    if (SessionDescription* peer = u->peerSession(); !pending && peer) {
        peer->candidates.push_back(candidate); // for the next attempt (see setRemote)
        return {};
    }
    return addRemoteCandidateTo(pending && pending->remoteSet ? u->pending : u->active, candidate);
}

Status Agent::Impl::endOfRemoteCandidates(StreamId user) {
    UserStream* u = findUser(user);
    if (!u) {
        return noStream(user);
    }
    Stream* pending = u->pending ? findStream(u->pending) : nullptr;
    if (SessionDescription* peer = u->peerSession(); !pending && peer) {
        peer->endOfCandidates = true;
        return {};
    }
    return endOfRemoteCandidatesOf(pending && pending->remoteSet ? u->pending : u->active);
}

Status Agent::Impl::restart(StreamId user) {
    Stream* active = findUserStream(user);
    if (!active) {
        return noStream(user);
    }
    if (!active->gatherStarted) {
        return Error{"stream " + std::to_string(user) + " has not gathered yet: nothing to restart",
                     ErrorCode::InvalidState};
    }
    startRestart(user, "restart requested by the app");
    if (!findUser(user)->pending) {
        return Error{"the restart could not start a new session"};
    }
    return {};
}

// Local addresses that appeared since the last gathering go to libnice, which gathers on them in
// new streams; gone ones fail to bind there and yield nothing. Returns what changed, in words.
std::string Agent::Impl::refreshLocalAddresses() {
    auto now = impl::selectLocalAddresses(config_.interfaces, config_.ipv4, config_.ipv6);
    if (!now) {
        return {};
    }
    std::string added, gone;
    for (const auto& address : *now) {
        if (std::find(localAddresses_.begin(), localAddresses_.end(), address) !=
            localAddresses_.end()) {
            continue;
        }
        NiceAddress na;
        if (nice_address_set_from_string(&na, address.c_str())) {
            nice_agent_add_local_address(agent_, &na);
            localAddresses_.push_back(address);
            added += (added.empty() ? "" : ", ") + address;
        }
    }
    for (const auto& address : localAddresses_) {
        if (std::find(now->begin(), now->end(), address) == now->end()) {
            gone += (gone.empty() ? "" : ", ") + address;
        }
    }
    std::string change;
    if (!added.empty()) {
        change = "new local address " + added;
    }
    if (!gone.empty()) {
        change += (change.empty() ? "" : ", ") + std::string("gone ") + gone;
    }
    return change;
}

// Make before break: a second libnice stream with new credentials gathers (new sockets, new
// srflx mappings and TURN allocations) and checks, while the current one goes on carrying data.
// It takes over once it has a pair for every component (promote).
void Agent::Impl::startRestart(StreamId user, std::string reason, const std::string& retry) {
    UserStream* u = findUser(user);
    Stream* active = u ? findStream(u->active) : nullptr;
    if (!active) {
        return;
    }
    // A restart replacing one under way keeps the peer's answer to it: the peer's new session
    // takes our new credentials when they reach it (see setRemote) and answers nothing more.
    // So does a recovery attempt after one that failed (see setRemote).
    auto& r = restartsOf(*u);
    std::optional<SessionDescription> answer;
    if (auto peer = std::exchange(r.peerSession, nullptr)) {
        answer = std::move(*peer);
    }
    if (Stream* replaced = u->pending ? findStream(u->pending) : nullptr;
        replaced && replaced->remoteSet) {
        answer = remoteSideOf(*replaced);
    }
    dropPending(*u);
    if (u->replaced) {
        removeStreamAfter(std::exchange(u->replaced, 0), {}); // its linger ends: a new one comes
    }
    if (std::string change = refreshLocalAddresses(); !change.empty()) {
        reason += "; " + change;
    }
    auto id = addNiceStream(static_cast<unsigned>(active->components.size()), user);
    if (!id) {
        impl::log(LogLevel::Warning, "ICE restart: " + id.error().message);
        return;
    }
    {
        std::lock_guard snapshot(snapshotMutex_);
        u->pending = *id;
    }
    r.reason = reason;
    reason += retry;
    impl::log(LogLevel::Info, "stream " + std::to_string(user) + ": ICE restart: " + reason);
    emit([this, user, reason] {
        if (callbacks_.restarted()) {
            callbacks_.restarted()(user, reason);
        }
    });
    if (Status status = gatherStream(*id); !status) {
        onAttemptFailed(user, *id, status.error().message);
        return;
    }
    if (u->pending == *id && answer) {
        if (Status status = setRemoteOf(*id, *answer); !status) {
            impl::log(LogLevel::Warning,
                      "ICE restart: the peer's answer to the replaced restart: " +
                          status.error().message);
        }
    }
    if (u->pending == *id) { // gathering can fail it at once (relay-only, no relay)
        armAttemptTimer(user, *id);
    }
}

// Recovering: a short attempt, then another. Otherwise (the app's or the peer's restart) the
// connect timeout; after it the current pair stays.
void Agent::Impl::armAttemptTimer(StreamId user, StreamId id) {
    auto& r = restartsOf(*findUser(user));
    stopTimer(r.attemptTimer);
    auto timeout =
        r.recovery.active() ? r.recovery.attemptTimeout(Clock::now()) : config_.connectTimeout;
    r.attemptTimer =
        startTimer(context_, timeout, weak_from_this(), [user, id, timeout](Impl& impl) {
            UserStream* us = impl.findUser(user);
            if (!us) {
                return;
            }
            g_source_unref(us->restarts->attemptTimer); // fired
            us->restarts->attemptTimer = nullptr;
            impl.onAttemptFailed(user, id, "no new pair within " + ms(timeout));
        });
}

SessionDescription Agent::Impl::remoteSideOf(const Stream& stream) {
    SessionDescription d;
    d.ufrag = stream.remoteUfrag;
    d.pwd = stream.remotePwd;
    d.candidates = stream.remoteCandidates;
    d.endOfCandidates = stream.remoteEnded;
    return d;
}

void Agent::Impl::armRetry(StreamId user, std::chrono::milliseconds delay) {
    auto& r = restartsOf(*findUser(user));
    stopTimer(r.attemptTimer);
    r.retryAt = Clock::now() + delay;
    r.attemptTimer = startTimer(context_, delay, weak_from_this(), [user](Impl& impl) {
        UserStream* us = impl.findUser(user);
        if (!us) {
            return;
        }
        auto& rs = *us->restarts;
        g_source_unref(rs.attemptTimer); // fired
        rs.attemptTimer = nullptr;
        impl.startRestart(user, rs.reason,
                          " (attempt " + std::to_string(rs.recovery.attempts()) +
                              "; the one before: " + rs.failure + ")");
    });
}

void Agent::Impl::beginRecovery(StreamId user, const std::string& reason) {
    UserStream* u = findUser(user);
    if (!config_.autoRestart || !u || !restartsOf(*u).recovery.begin(Clock::now())) {
        return;
    }
    if (u->pending) {
        // A restart is under way already (the peer's, answered): that one is the recovery. A
        // new one would throw away the session the peer is checking against.
        u->restarts->reason = reason;
        armAttemptTimer(user, u->pending);
        return;
    }
    startRestart(user, reason);
}

void Agent::Impl::endRecovery(StreamId user) {
    UserStream* u = findUser(user);
    if (!u || !u->recovering()) {
        return;
    }
    u->restarts->recovery.recovered();
    u->restarts->peerSession.reset();
    if (u->pending) {
        armAttemptTimer(user, u->pending); // now the connect timeout of an ordinary restart
    } else {
        stopTimer(u->restarts->attemptTimer); // a retry waiting out its backoff
    }
}

void Agent::Impl::onAttemptFailed(StreamId user, StreamId id, const std::string& reason) {
    UserStream* u = findUser(user);
    if (!u || u->pending != id) {
        return;
    }
    auto& r = restartsOf(*u);
    if (Stream* failed = findStream(id); failed && failed->remoteSet) {
        // The peer is on it: the next attempt answers it.
        r.peerSession = std::make_unique<SessionDescription>(remoteSideOf(*failed));
    }
    dropPending(*u);
    stopTimer(r.attemptTimer);
    Stream* active = findStream(u->active);
    if (!r.recovery.active()) {
        r.peerSession.reset();
        impl::log(LogLevel::Warning, "stream " + std::to_string(user) + ": ICE restart failed (" +
                                         reason + "); the current session stays");
        // A restart before anything connected: the current session's own failure, held back
        // while the restart could still connect, is final now.
        for (ComponentId c = 1; active && c <= active->components.size(); ++c) {
            if (auto held = std::exchange(active->components[c - 1].heldFailure, nullptr)) {
                failComponent(u->active, c, *held);
            }
        }
        return;
    }
    bool stillLost = false;
    if (active) {
        for (const auto& c : active->components) {
            stillLost = stillLost || c.pathLost || c.state == ComponentState::Disconnected;
        }
    }
    if (!stillLost) {
        endRecovery(user); // the old path came back meanwhile
        return;
    }
    auto decision = r.recovery.attemptFailed(Clock::now());
    if (decision.giveUp) {
        r.peerSession.reset();
        failConnected(user, "connection lost: " + r.reason + "; no new path within " +
                                ms(config_.connectTimeout) + " (last attempt: " + reason + ")");
        return;
    }
    impl::log(LogLevel::Info, "stream " + std::to_string(user) + ": recovery attempt " +
                                  std::to_string(r.recovery.attempts() - 1) + " failed (" + reason +
                                  "); the next in " + ms(decision.retryAfter));
    r.failure = reason;
    armRetry(user, decision.retryAfter);
}

void Agent::Impl::onPendingState(StreamId id, ComponentId c, NiceComponentState state) {
    Stream* stream = findStream(id);
    Component& component = stream->components[c - 1];
    if (state == NICE_COMPONENT_STATE_FAILED) {
        onAttemptFailed(stream->user, id,
                        "every candidate pair of the new session failed" + serverSummary(id));
        return;
    }
    component.state = impl::fromNice(state);
    maybePromote(id);
}

void Agent::Impl::maybePromote(StreamId id) {
    Stream* stream = findStream(id);
    if (!stream || !stream->pending || stream->discarded) {
        return;
    }
    for (const auto& c : stream->components) {
        if (!c.pair ||
            (c.state != ComponentState::Connected && c.state != ComponentState::Completed)) {
            return;
        }
    }
    promote(stream->user);
}

void Agent::Impl::promote(StreamId user) {
    UserStream* u = findUser(user);
    Stream* next = u && u->pending ? findStream(u->pending) : nullptr;
    if (!next) {
        return;
    }
    StreamId oldId = u->active;
    StreamId newId = u->pending;
    Stream* old = findStream(oldId);
    std::vector<ComponentState> before;
    for (size_t c = 0; c < next->components.size(); ++c) {
        before.push_back(old ? old->components[c].state : ComponentState::Disconnected);
    }
    {
        std::lock_guard snapshot(snapshotMutex_);
        next->pending = false;
        next->remoteCandidates = {}; // only a restart under way hands them on
        for (auto& c : next->components) {
            c.everConnected = true;
        }
        u->active = newId;
        u->pending = 0;
    }
    for (auto& c : next->components) {
        c.counters->route = newId;
    }
    stopTimer(next->connectTimer);
    if (auto& r = u->restarts) {
        stopTimer(r->attemptTimer);
        r->recovery.recovered();
        r->peerSession.reset();
    }
    if (old) {
        // Removed (its TURN allocations released) after kReplacedSessionLinger, by when the
        // peer is on the new session too; one replaced earlier goes now.
        if (u->replaced) {
            removeStreamAfter(std::exchange(u->replaced, 0), {});
        }
        discardStream(oldId, kReplacedSessionLinger);
        u->replaced = oldId;
    }
    auto now = Clock::now();
    for (ComponentId c = 1; c <= next->components.size(); ++c) {
        u->liveness[c - 1].connected(now);
        if (next->components[c - 1].state == ComponentState::Completed) {
            pruneChecksOverTcpRelay(newId, c);
        }
        CandidatePair pair = *next->components[c - 1].pair;
        ComponentState state = next->components[c - 1].state;
        emit([this, user, c, pair, state, changed = before[c - 1] != state] {
            if (callbacks_.selectedPairChanged()) {
                callbacks_.selectedPairChanged()(user, c, pair);
            }
            if (changed && callbacks_.stateChanged()) {
                callbacks_.stateChanged()(user, c, state);
            }
        });
    }
    impl::log(LogLevel::Info,
              "stream " + std::to_string(user) + ": the restarted session took over");
    updateIdleTimeout();
    startLivenessTimer();
    if (config_.security.enabled) {
        // The first connection may come through a restart: its Connected never passed
        // setComponentState. Idempotent when the association exists.
        for (ComponentId c = 1; c <= next->components.size(); ++c) {
            later([user, c](Impl& impl) { impl.startSecure(user, c); });
        }
    }
}

// Removed soon, not now: this may run inside one of the stream's own signals. What arrives on it
// meanwhile still reaches the app (onReceive does not look at discarded).
void Agent::Impl::discardStream(StreamId id, std::chrono::milliseconds linger) {
    Stream* stream = findStream(id);
    if (!stream || stream->discarded) {
        return;
    }
    stream->discarded = true;
    stopTimer(stream->gatherTimer);
    stopTimer(stream->connectTimer);
    stopTimer(stream->udpSilenceTimer);
    removeStreamAfter(id, linger);
}

// libnice's stream goes after `delay`, unless it went already.
void Agent::Impl::removeStreamAfter(StreamId id, std::chrono::milliseconds delay) {
    later(delay, [id](Impl& impl) {
        auto it = impl.streams_.find(id);
        if (it == impl.streams_.end()) {
            return; // removed early (a restart ended its linger)
        }
        if (UserStream* u = impl.findUser(it->second.user); u && u->replaced == id) {
            u->replaced = 0;
        }
        nice_agent_remove_stream(impl.agent_, id);
        {
            std::lock_guard snapshot(impl.snapshotMutex_);
            impl.streams_.erase(id);
        }
        impl.updateIdleTimeout();
    });
}

// On the loop, once the current signal emission is over; not after teardown (which closes the
// agent, streams and all).
void Agent::Impl::later(std::function<void(Impl&)> fn) {
    later(std::chrono::milliseconds(0), std::move(fn));
}

void Agent::Impl::later(std::chrono::milliseconds after, std::function<void(Impl&)> fn) {
    GSource* source =
        startTimer(context_, after, weak_from_this(), [fn = std::move(fn)](Impl& impl) {
            if (impl.agent_) {
                fn(impl);
            }
        });
    g_source_unref(source); // the context keeps it until it has run
}

// Selects the component's selected pair again, soon: libnice then frees the stream's check list,
// allows sending again after a consent timeout and sends a consent check at once. False when
// libnice has no selected pair any more.
bool Agent::Impl::reselectLater(StreamId id, ComponentId c) {
    NiceCandidate* local = nullptr;
    NiceCandidate* remote = nullptr;
    if (!nice_agent_get_selected_pair(agent_, id, c, &local, &remote)) {
        return false;
    }
    later([id, c, lf = std::string(local->foundation),
           rf = std::string(remote->foundation)](Impl& impl) {
        Stream* s = impl.findStream(id);
        if (s && !s->discarded &&
            !nice_agent_set_selected_pair(impl.agent_, id, c, lf.c_str(), rf.c_str())) {
            impl.onPathLost(id, c, "the selected pair is gone (its socket closed)");
        }
    });
    return true;
}

void Agent::Impl::dropPending(UserStream& u) {
    if (u.pending) {
        discardStream(u.pending);
        std::lock_guard snapshot(snapshotMutex_);
        u.pending = 0;
    }
}

// The same abort as at teardown can come mid-call: a TURN/TCP or TLS connection that closes
// (a server restart) while its relay carries the selected pair and another pair is nominated.
// Once checks are over (READY) on such a pair, re-selecting it makes libnice free the check
// list (conn_check_prune_stream): nothing left to re-evaluate. A UDP path is never upgraded
// to from there, but READY means no check was in progress anyway; recovery finds one.
void Agent::Impl::pruneChecksOverTcpRelay(StreamId id, ComponentId) {
    Stream* stream = findStream(id);
    // Re-selecting frees the check list of the whole stream: not while a component checks.
    bool allReady =
        std::all_of(stream->components.begin(), stream->components.end(), [](const Component& c) {
            return c.state == ComponentState::Completed && c.pair;
        });
    if (!allReady) {
        return;
    }
    for (ComponentId c = 1; c <= stream->components.size(); ++c) {
        Component& component = stream->components[c - 1];
        bool overTcp = component.pair->local.transport == Transport::Tcp ||
                       component.pair->relayProtocol == "tcp" ||
                       component.pair->relayProtocol == "tls";
        if (component.checksPruned || !overTcp || !reselectLater(id, c)) {
            continue;
        }
        for (auto& other : stream->components) {
            other.checksPruned = true; // one re-selection empties the stream's list
        }
        return;
    }
}

// libnice failed a connected component: 10 s without a consent answer, or its socket is gone.
void Agent::Impl::onPathFailed(StreamId id, ComponentId c) {
    startLivenessTimer(); // a quiet call's timer sleeps: the re-armed window needs it again
    Stream* stream = findStream(id);
    UserStream* u = findUser(stream->user);
    NiceCandidate* local = nullptr;
    NiceCandidate* remote = nullptr;
    if (!nice_agent_get_selected_pair(agent_, id, c, &local, &remote)) {
        // libnice dropped the pair with its socket (a TCP connection closed): not consent.
        onPathLost(id, c, "the selected pair is gone (its socket closed)");
        return;
    }
    auto action = u->liveness[c - 1].consentTimeout(Clock::now());
    impl::log(LogLevel::Info, "stream " + std::to_string(stream->user) + " component " +
                                  std::to_string(c) +
                                  ": no consent answer for 10 s (libnice's limit), " +
                                  (action == impl::Liveness::ConsentAction::Rearm
                                       ? "re-armed: RFC 7675 allows 30 s"
                                       : "and none for 30 s: consent expired"));
    bool othersChecking = std::any_of(stream->components.begin(), stream->components.end(),
                                      [](const Component& o) { return !o.everConnected; });
    if (action == impl::Liveness::ConsentAction::Rearm && othersChecking) {
        // Re-arming frees the whole stream's check list, which another component still needs.
        onPathLost(id, c, "no consent answer for 10 s while another component is still checking");
        return;
    }
    if (action == impl::Liveness::ConsentAction::Rearm) {
        reselectLater(id, c); // RFC 7675 gives the pair 30 s: re-arm it
        return;
    }
    onPathLost(id, c, "consent expired: no answer to consent checks for 30 s (RFC 7675)");
}

void Agent::Impl::onPathLost(StreamId id, ComponentId c, const std::string& reason) {
    startLivenessTimer();
    Stream* stream = findStream(id);
    if (!stream || stream->pending || stream->discarded) {
        return;
    }
    Component& component = stream->components[c - 1];
    component.pathLost = true;
    if (!config_.autoRestart) {
        failConnected(stream->user, "connection lost: " + reason);
        return;
    }
    if (component.state == ComponentState::Connected ||
        component.state == ComponentState::Completed) {
        setUserState(id, c, ComponentState::Disconnected);
        emit([this, user = stream->user, c, reason] {
            if (callbacks_.disconnected()) {
                callbacks_.disconnected()(user, c, reason);
            }
        });
    }
    beginRecovery(stream->user, reason);
}

void Agent::Impl::failConnected(StreamId user, const std::string& message) {
    UserStream* u = findUser(user);
    Stream* stream = u ? findStream(u->active) : nullptr;
    if (!stream) {
        return;
    }
    dropPending(*u);
    if (auto& r = u->restarts) {
        stopTimer(r->attemptTimer);
        r->recovery.recovered();
    }
    for (ComponentId c = 1; c <= stream->components.size(); ++c) {
        Component& component = stream->components[c - 1];
        if (component.state == ComponentState::Failed) {
            continue;
        }
        {
            std::lock_guard snapshot(snapshotMutex_);
            component.state = ComponentState::Failed;
        }
        emit([this, user, c, message] {
            if (callbacks_.stateChanged()) {
                callbacks_.stateChanged()(user, c, ComponentState::Failed);
            }
            if (callbacks_.failed()) {
                callbacks_.failed()(user, c, {FailureKind::ConsentLost, message});
            }
        });
    }
    updateIdleTimeout();
}

// After connecting: Connected, Completed and Disconnected as the liveness policy sees them.
void Agent::Impl::setUserState(StreamId id, ComponentId c, ComponentState state) {
    Stream* stream = findStream(id);
    if (!stream || stream->pending || stream->discarded) {
        return;
    }
    Component& component = stream->components[c - 1];
    if (component.state == state || component.state == ComponentState::Failed) {
        return;
    }
    {
        std::lock_guard snapshot(snapshotMutex_);
        component.state = state;
    }
    updateIdleTimeout();
    emit([this, user = stream->user, c, state] {
        if (callbacks_.stateChanged()) {
            callbacks_.stateChanged()(user, c, state);
        }
    });
}

void Agent::Impl::startLivenessTimer(std::optional<std::chrono::milliseconds> after) {
    if (livenessArmed_ || !agent_) {
        return;
    }
    livenessAsleep_ = false;
    auto period =
        after.value_or(std::max(std::chrono::milliseconds(100), config_.disconnectedTimeout / 4));
    if (!livenessTimer_) {
        livenessTimer_ = newTicker(context_, weak_from_this(), [](Impl& impl) {
            impl.livenessArmed_ = false;
            impl.onLivenessTick();
        });
    }
    livenessArmed_ = true;
    g_source_set_ready_time(
        livenessTimer_, g_get_monotonic_time() +
                            std::chrono::duration_cast<std::chrono::microseconds>(period).count());
}

void Agent::Impl::wakeLiveness() {
    loop_->post([weak = weak_from_this()] {
        if (auto impl = weak.lock()) {
            impl->startLivenessTimer();
        }
    });
}

void Agent::Impl::onLivenessTick() {
    auto now = Clock::now();
    bool watching = false;
    bool quiet = true;
    // The newest send on any watched component, to tell whether one came while going to sleep.
    auto newestSend = [this] {
        int64_t newest = 0;
        for (auto& [user, u] : users_) {
            if (Stream* stream = findStream(u.active)) {
                for (auto& component : stream->components) {
                    newest = std::max(newest, component.counters->lastSentNs.load());
                }
            }
        }
        return newest;
    };
    int64_t newest = newestSend();
    auto next = std::max(std::chrono::milliseconds(100), config_.disconnectedTimeout / 4);
    for (auto& [user, u] : users_) {
        Stream* stream = findStream(u.active);
        if (!stream || stream->discarded) {
            continue;
        }
        for (ComponentId c = 1; c <= stream->components.size(); ++c) {
            Component& component = stream->components[c - 1];
            if (!component.everConnected || component.state == ComponentState::Failed) {
                continue;
            }
            watching = true;
            impl::Liveness& live = u.liveness[c - 1];
            if (int64_t ns = component.counters->lastSentNs.load(std::memory_order_relaxed)) {
                live.sent(Clock::time_point(Clock::duration(ns)));
            }
            auto verdict = live.evaluate(now);
            if (verdict.disconnected) {
                if (component.state != ComponentState::Disconnected) {
                    setUserState(u.active, c, ComponentState::Disconnected);
                    emit([this, user = user, c, reason = verdict.reason] {
                        if (callbacks_.disconnected()) {
                            callbacks_.disconnected()(user, c, reason);
                        }
                    });
                }
                beginRecovery(user, verdict.reason);
            } else if (component.state == ComponentState::Disconnected && !component.pathLost) {
                setUserState(u.active, c, ComponentState::Connected);
                endRecovery(user);
            }
            quiet = quiet && component.state != ComponentState::Disconnected && !u.recovering() &&
                    live.quiet(now);
            if (auto due = live.silenceDue(); due && *due > now) {
                // Silence reaches the limit then: look at that moment, not up to a tick later.
                auto until = std::chrono::ceil<std::chrono::milliseconds>(*due - now);
                next = std::min(next, std::max(std::chrono::milliseconds(10), until));
            }
        }
    }
    if (!watching) {
        return;
    }
    if (quiet) {
        // Asleep first, then look again at the send times: a send racing this either sees the
        // flag and wakes the timer, or is seen here (seq_cst stores and loads on both sides).
        livenessAsleep_.store(true);
        if (newestSend() == newest) {
            return;
        }
        livenessAsleep_ = false;
    }
    startLivenessTimer(next);
}

void Agent::Impl::teardown() {
    if (!agent_) {
        return;
    }
    if (cancelProbes_) {
        *cancelProbes_ = true;
    }
    if (resolveCancel_) {
        g_cancellable_cancel(resolveCancel_);
        g_object_unref(resolveCancel_);
        resolveCancel_ = nullptr;
    }
    // Cancelled probes return within 50 ms (their poll slice): no thread of ours outlives us.
    for (auto& thread : probeThreads_) {
        thread.join();
    }
    probeThreads_.clear();
    if (mdns_) {
        mdns_->cancelAll();
        mdns_.reset();
    }
    g_signal_handlers_disconnect_by_data(agent_, this);
    stopTimer(livenessTimer_);
    {
        std::lock_guard lock(countersMutex_);
        for (auto& [key, counters] : counters_) {
            if (!counters->secure) {
                continue;
            }
            impl::DtlsTransport::Output out;
            {
                std::lock_guard secureLock(counters->secure->mutex);
                if (counters->secure->transport) {
                    counters->secure->transport->close(out); // close_notify
                }
                counters->secure->connected = false;
            }
            stopTimer(counters->secure->timer);
            sendRecords(*counters, key.second, out.send);
        }
    }
    for (auto& [user, u] : users_) {
        if (u.restarts) {
            stopTimer(u.restarts->attemptTimer);
        }
    }
    for (auto& [id, stream] : streams_) {
        // Empty the check list before the deallocations below. After a TCP allocation's
        // Refresh(0) is answered the server (or the TLS bridge) closes the connection; when
        // that EOF is read while the relay is the selected pair's local candidate and another
        // pair is nominated, libnice 0.1.21 clears the selected pair and then re-evaluates the
        // nominated pairs against priority 0: g_assert (priority > 0) in
        // priv_prune_pending_checks aborts the process (component.c:190, then
        // conn_check_prune_socket -> conn_check_update_check_list_state_for_ready). A restart
        // frees every pair but keeps the stream, its sockets and its TURN refreshes, so the
        // deallocations still complete. (Seen in the NAT lab's 20 % loss cell, 1 run in ~20
        // under load; none in 300 runs with this.)
        nice_agent_restart_stream(agent_, id);
        for (unsigned c = 1; c <= stream.components.size(); ++c) {
            // Not detached: libnice reads a component's sockets only while a receive callback
            // is attached, and the answers to its TURN deallocations arrive there.
            nice_agent_attach_recv(agent_, id, c, context_, discardCb, nullptr);
        }
        stopTimer(stream.gatherTimer);
        stopTimer(stream.connectTimer);
        stopTimer(stream.udpSilenceTimer);
    }
    // libnice deallocates every TURN allocation (Refresh, lifetime 0) and calls back once they
    // are answered or timed out; turns: allocations go through a bridge, so it lives till then.
    nice_agent_close_async(agent_, closedCb,
                           new CloseData{loop_->impl().holdForClose(), std::move(bridges_)});
    bridges_.clear();
    for (auto handle : secrets_) {
        impl::releaseSecret(handle);
    }
    secrets_.clear();
    agent_ = nullptr;
}

void Agent::Impl::addSecret(std::string_view secret) {
    impl::SecretHandle handle = impl::holdSecret(secret);
    if (!handle) {
        return;
    }
    if (std::find(secrets_.begin(), secrets_.end(), handle) != secrets_.end()) {
        impl::releaseSecret(handle); // held already
        return;
    }
    secrets_.push_back(handle);
}

void Agent::Impl::logQueuedCallFailure(const char* what, const std::string& message) {
    impl::log(LogLevel::Warning,
              std::string(what) + " (queued from another event loop's thread) failed: " + message);
}

void Agent::Impl::emit(std::function<void()> event) {
    enqueue(Event{std::move(event)});
}

bool Agent::Impl::enqueue(Event event) {
    if (!agent_) {
        return true; // torn down: nothing more reaches the app
    }
    {
        std::lock_guard lock(queueMutex_);
        if (std::holds_alternative<Datagram>(event)) {
            if (queuedDatagrams_ >= config_.receiveQueueLimit) {
                return false; // the app is not keeping up: dropped (counted by the caller)
            }
            ++queuedDatagrams_;
        }
        queue_.push_back(std::move(event));
        if (drainScheduled_) {
            return true;
        }
        drainScheduled_ = true;
    }
    auto drain = [weak = weak_from_this()] {
        if (auto self = weak.lock()) {
            self->drain();
        }
    };
    if (config_.executor) {
        config_.executor(std::move(drain));
    } else {
        loop_->post(std::move(drain));
    }
    return true;
}

// The common case on the data path: nothing is queued and the app's callbacks run on this loop,
// so the datagram goes to the app straight from libnice's buffer, inside libnice's receive
// callback (which libnice runs with its agent unlocked, on the thread that owns the context).
// No copy, no queue, no hop through the loop. Anything queued (an event, earlier datagrams)
// must reach the app first: then the caller queues this one behind it. So must what comes past
// a turn's budget: libnice reads until the socket is empty, and an app slower than the traffic
// would otherwise keep the loop there (timers, consent included, stalled; the kernel dropping
// what no one counts). Past the budget datagrams wait in the bounded queue, counted when dropped.
bool Agent::Impl::deliverNow(StreamId user, ComponentId component, std::span<const std::byte> data,
                             bool media) {
    if (config_.executor) {
        return false;
    }
    if (uint64_t turn = impl::ContextDriver::currentTurn(); turn != directTurn_) {
        directTurn_ = turn;
        directInTurn_ = 0;
    }
    if (directInTurn_ >= std::min(config_.receiveQueueLimit, kDirectPerTurn)) {
        return false;
    }
    {
        std::lock_guard lock(queueMutex_);
        if (drainScheduled_ || !agent_) {
            return false;
        }
    }
    ++directInTurn_; // counts what went to the app, not what was turned to the queue
    // The app may drop its Agent from the callback: what runs the callback stays alive.
    auto self = shared_from_this();
    std::lock_guard lock(gate_->mutex);
    if (!gate_->closed) {
        (media ? callbacks_.receivedMedia() : callbacks_.received())(user, component, data);
    }
    return true;
}

// One drain at a time, until the queue is empty: with an executor that runs work on several
// threads, a second drain could otherwise deliver later events before the first is done.
void Agent::Impl::drain() {
    auto gate = gate_;
    for (;;) {
        std::vector<Event> batch;
        {
            std::lock_guard lock(queueMutex_);
            if (queue_.empty()) {
                drainScheduled_ = false;
                return;
            }
            batch.swap(queue_);
            queuedDatagrams_ = 0;
        }
        for (auto& event : batch) {
            std::lock_guard lock(gate->mutex);
            if (gate->closed) {
                return; // drainScheduled_ stays set: nothing is delivered any more
            }
            if (auto* datagram = std::get_if<Datagram>(&event)) {
                auto& deliver =
                    datagram->media ? callbacks_.receivedMedia() : callbacks_.received();
                if (deliver) {
                    deliver(datagram->stream, datagram->component,
                            std::span<const std::byte>(datagram->data));
                }
            } else {
                std::get<std::function<void()>>(event)();
            }
        }
    }
}

// ------------------------------------------------------------------------------------ DTLS

// The peer's fingerprints from a description. Another set than before ends the association only
// if it no longer names the certificate the handshake is checking against (RFC 8842: another
// certificate is another association); more lines or another order are the same peer.
void Agent::Impl::noteRemoteFingerprints(StreamId user, UserStream& u,
                                         const std::vector<Fingerprint>& fingerprints,
                                         unsigned components) {
    auto names = [&](const Fingerprint& f) {
        return std::find(fingerprints.begin(), fingerprints.end(), f) != fingerprints.end();
    };
    bool hadNone = u.remoteFingerprints.empty();
    bool stillNamed =
        hadNone || std::any_of(u.remoteFingerprints.begin(), u.remoteFingerprints.end(), names);
    for (ComponentId c = 1; c <= components; ++c) {
        auto counters = this->counters(user, c);
        bool started = false;
        if (counters && counters->secure) {
            std::lock_guard lock(counters->secure->mutex);
            started = counters->secure->transport != nullptr;
        }
        if (started && !stillNamed) {
            failSecure(user, c,
                       "the peer's description changed its certificate fingerprint (to " +
                           fingerprints.front().toString() + ") during the session");
        }
    }
    if (!stillNamed || hadNone) {
        u.remoteFingerprints = fingerprints;
    } else {
        for (const auto& f : fingerprints) { // keep the old ones the handshake may check
            if (std::find(u.remoteFingerprints.begin(), u.remoteFingerprints.end(), f) ==
                u.remoteFingerprints.end()) {
                u.remoteFingerprints.push_back(f);
            }
        }
    }
    if (hadNone) {
        // ICE may have connected before the fingerprint came (written after the credentials).
        for (ComponentId c = 1; c <= components; ++c) {
            later([user, c](Impl& impl) { impl.startSecure(user, c); });
        }
    }
}

bool Agent::Impl::ensureTransport(StreamId user, ComponentId c, Secure& secure, bool controlling) {
    if (secure.transport) {
        return true;
    }
    if (!secure.failure.empty()) {
        return false;
    }
    UserStream* u = findUser(user);
    if (!u || u->remoteFingerprints.empty()) {
        return false; // not yet: see startSecure
    }
    // RFC 8842 roles; both actpass: the ICE-controlled side is the client (as it would be
    // the answerer's choice in offer/answer, RFC 5763 section 5).
    DtlsSetup local = config_.security.setup;
    DtlsSetup remote = u->remoteSetup.value_or(DtlsSetup::ActPass);
    bool client = false;
    if (local == DtlsSetup::ActPass && remote == DtlsSetup::ActPass) {
        client = !controlling;
    } else if (local == remote) {
        secure.failure = std::string("both sides are DTLS ") + std::string(toString(local)) +
                         " (a=setup): one must be the client, the other the server";
        return false;
    } else {
        client = local == DtlsSetup::Active || remote == DtlsSetup::Passive;
    }
    impl::DtlsTransport::Config config;
    config.client = client;
    config.certificate = certificate_;
    config.peerFingerprints = u->remoteFingerprints;
    config.srtpProfiles = config_.security.srtpProfiles;
    config.rto = config_.security.handshakeRto;
    config.handshakeTimeout = config_.security.handshakeTimeout;
    auto transport = impl::DtlsTransport::create(std::move(config));
    if (!transport) {
        secure.failure = transport.error().message;
        return false;
    }
    secure.transport = std::move(*transport);
    secure.note = "stream " + std::to_string(user) + " component " + std::to_string(c) + ": DTLS " +
                  (client ? "client" : "server") + " (setup " + std::string(toString(local)) +
                  " vs the peer's " + std::string(toString(remote)) + ")";
    return true;
}

bool Agent::Impl::controlling() {
    gboolean controlling = FALSE;
    g_object_get(agent_, "controlling-mode", &controlling, nullptr);
    return controlling;
}

void Agent::Impl::withSecure(StreamId user, ComponentId c,
                             const std::function<void(Secure&, impl::DtlsTransport::Output&)>& fn) {
    auto counters = this->counters(user, c);
    if (!counters || !counters->secure) {
        return;
    }
    Secure& secure = *counters->secure;
    impl::DtlsTransport::Output out;
    {
        std::lock_guard lock(secure.mutex);
        fn(secure, out);
    }
    afterSecure(user, c, secure, out);
}

// ICE is connected: the handshake starts (the client's first flight; the server's clock). The
// peer's fingerprint may still be on its way (a description written in pieces): it gets
// kFingerprintGrace, then the component fails.
void Agent::Impl::startSecure(StreamId user, ComponentId c) {
    // Only over a connected component: a first flight sent before ICE has a pair is lost and
    // costs a retransmission (200 ms). A fingerprint that comes first waits for Connected.
    Stream* active = findUserStream(user);
    if (!active || c < 1 || c > active->components.size() ||
        (active->components[c - 1].state != ComponentState::Connected &&
         active->components[c - 1].state != ComponentState::Completed)) {
        return;
    }
    bool controlling = this->controlling();
    withSecure(user, c, [&](Secure& secure, impl::DtlsTransport::Output& out) {
        if (ensureTransport(user, c, secure, controlling)) {
            if (!secure.transport->started()) {
                secure.transport->start(out);
            }
        } else if (secure.failure.empty() && !secure.fingerprintDeadline) {
            secure.fingerprintDeadline = Clock::now() + kFingerprintGrace;
        }
    });
}

void Agent::Impl::onSecureRecord(StreamId user, ComponentId c, std::span<const std::byte> data) {
    bool controlling = this->controlling();
    withSecure(user, c, [&](Secure& secure, impl::DtlsTransport::Output& out) {
        // A record can come before our own side saw the pair selected: the server takes the
        // client's first flight at once rather than waiting for its retransmission. Before
        // the peer's fingerprint is known it is dropped (the client sends it again).
        if (ensureTransport(user, c, secure, controlling)) {
            secure.transport->receive(data, out);
        }
    });
}

void Agent::Impl::afterSecure(StreamId user, ComponentId c, Secure& secure,
                              impl::DtlsTransport::Output& out) {
    auto counters = this->counters(user, c);
    if (!counters) {
        return;
    }
    sendRecords(*counters, c, out.send);
    std::optional<SecureInfo> connected;
    std::string ended;
    std::string note;
    {
        std::lock_guard lock(secure.mutex);
        note = std::move(secure.note);
        secure.note.clear();
        if (!secure.transport && secure.failure.empty() && secure.fingerprintDeadline &&
            Clock::now() >= *secure.fingerprintDeadline) {
            secure.failure = "the peer's description has no usable a=fingerprint (none came "
                             "within " +
                             std::to_string(kFingerprintGrace.count()) +
                             " ms of connecting): security is on (AgentConfig::security), so "
                             "nothing is sent to it";
        }
        auto state =
            secure.transport ? secure.transport->state() : impl::DtlsTransport::State::Failed;
        if (state == impl::DtlsTransport::State::Connected && !secure.reportedConnected) {
            secure.reportedConnected = true;
            connected = secure.transport->info();
            secure.srtp = connected->srtp.has_value();
            secure.connected = true;
        } else if ((state == impl::DtlsTransport::State::Failed ||
                    state == impl::DtlsTransport::State::Closed) &&
                   !secure.reportedEnd) {
            if (secure.transport) {
                secure.failure = secure.transport->error();
            }
            if (!secure.failure.empty()) {
                secure.reportedEnd = true;
                secure.connected = false;
                ended = secure.failure;
            }
        }
    }
    if (!note.empty()) {
        impl::log(LogLevel::Info, note);
    }
    if (connected) {
        impl::log(LogLevel::Info, "stream " + std::to_string(user) + " component " +
                                      std::to_string(c) + ": DTLS " + connected->version + " " +
                                      connected->cipher + ", peer fingerprint verified");
        emit([this, user, c, info = *connected] {
            if (callbacks_.secureConnected()) {
                callbacks_.secureConnected()(user, c, info);
            }
        });
    }
    // After secureConnected: what came with the handshake's last flight is delivered after it.
    for (auto& datagram : out.received) {
        if (callbacks_.received() && !enqueue(Datagram{user, c, std::move(datagram)})) {
            counters->packetsDropped += 1;
        }
    }
    if (!ended.empty()) {
        impl::log(LogLevel::Warning, "stream " + std::to_string(user) + " component " +
                                         std::to_string(c) + ": DTLS: " + ended);
        emit([this, user, c, ended] {
            if (callbacks_.secureFailed()) {
                callbacks_.secureFailed()(user, c, ended);
            }
        });
    }
    armSecureTimer(user, c);
}

void Agent::Impl::failSecure(StreamId user, ComponentId c, const std::string& why) {
    withSecure(user, c, [&](Secure& secure, impl::DtlsTransport::Output& out) {
        if (secure.transport) {
            secure.transport->close(out); // close_notify: the peer stops too
            secure.transport.reset();
        }
        if (secure.failure.empty()) {
            secure.failure = why;
        }
    });
}

void Agent::Impl::armSecureTimer(StreamId user, ComponentId c) {
    auto counters = this->counters(user, c);
    if (!counters || !counters->secure || !agent_) {
        return;
    }
    Secure& secure = *counters->secure;
    stopTimer(secure.timer);
    std::optional<std::chrono::milliseconds> after;
    {
        std::lock_guard lock(secure.mutex);
        if (secure.transport) {
            after = secure.transport->timeout();
        } else if (secure.failure.empty() && secure.fingerprintDeadline) {
            after = std::max(std::chrono::milliseconds(0),
                             std::chrono::duration_cast<std::chrono::milliseconds>(
                                 *secure.fingerprintDeadline - Clock::now()));
        }
    }
    if (!after) {
        return;
    }
    secure.timer = startTimer(context_, *after, weak_from_this(), [user, c, counters](Impl& impl) {
        g_source_unref(counters->secure->timer); // fired
        counters->secure->timer = nullptr;
        impl.withSecure(user, c, [](Secure& s, auto& out) {
            if (s.transport) {
                s.transport->handleTimeout(out);
            }
        });
    });
}

void Agent::Impl::sendRecords(Counters& counters, ComponentId c,
                              const std::vector<impl::DtlsTransport::Datagram>& records) {
    for (const auto& record : records) {
        sendOnRoute(counters, c, record);
    }
}

std::shared_ptr<Agent::Impl::Counters> Agent::Impl::counters(StreamId id, ComponentId component) {
    std::lock_guard lock(countersMutex_);
    auto it = counters_.find({id, component});
    return it == counters_.end() ? nullptr : it->second;
}

} // namespace icepunch
