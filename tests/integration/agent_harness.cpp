#include "agent_harness.hpp"

#include <dirent.h>

#include <cstring>

namespace icepunch::test {

Agent::Callbacks Recorder::callbacks() {
    // Holds the recorder weakly-by-value: the test keeps it alive longer than the agent.
    Recorder* self = this;
    Agent::Callbacks cb;
    cb.localCandidate = [self](StreamId stream, const Candidate& c) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->candidates.push_back(c);
        }
        self->changed.notify_all();
        if (self->onCandidate) {
            self->onCandidate(stream, c);
        }
    };
    cb.gatheringDone = [self](StreamId stream) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->gatheringDone = true;
        }
        self->changed.notify_all();
        if (self->onGatheringDone) {
            self->onGatheringDone(stream);
        }
    };
    cb.serverStatus = [self](StreamId, const ServerStatus& s) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->servers.push_back(s);
        }
        self->changed.notify_all();
    };
    cb.stateChanged = [self](StreamId, ComponentId component, ComponentState state) {
        self->noteCallback();
        if (component != 1) {
            return;
        }
        {
            std::lock_guard lock(self->mutex);
            self->states.push_back(state);
            if (state == ComponentState::Connected) {
                self->connectedAt = std::chrono::steady_clock::now();
            }
        }
        self->changed.notify_all();
        if (self->onState) {
            self->onState(state);
        }
    };
    cb.selectedPairChanged = [self](StreamId, ComponentId, const CandidatePair& pair) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->pair = pair;
            self->pairs.push_back(pair);
        }
        self->changed.notify_all();
    };
    cb.failed = [self](StreamId, ComponentId, const Failure& f) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->failures.push_back(f);
        }
        self->changed.notify_all();
    };
    cb.received = [self](StreamId, ComponentId, std::span<const std::byte> data) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->received += 1;
            self->receivedBytes += data.size();
            if (self->keepPayloads) {
                self->payloads.emplace_back(reinterpret_cast<const char*>(data.data()),
                                            data.size());
            }
        }
        self->changed.notify_all();
        if (self->onReceive) {
            self->onReceive(data);
        }
    };
    cb.restarted = [self](StreamId stream, const std::string& reason) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->restarts.push_back(reason);
            self->gatheringDone = false; // a new gathering
        }
        self->changed.notify_all();
        if (self->onRestarted) {
            self->onRestarted(stream, reason);
        }
    };
    cb.disconnected = [self](StreamId, ComponentId, const std::string& reason) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->disconnects.push_back(reason);
        }
        self->changed.notify_all();
    };
    cb.secureConnected = [self](StreamId, ComponentId, const SecureInfo& info) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->secured.push_back(info);
        }
        self->changed.notify_all();
    };
    cb.secureFailed = [self](StreamId, ComponentId, const std::string& reason) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->insecure.push_back(reason);
        }
        self->changed.notify_all();
    };
    cb.receivedMedia = [self](StreamId, ComponentId, std::span<const std::byte> packet) {
        self->noteCallback();
        {
            std::lock_guard lock(self->mutex);
            self->media.emplace_back(packet.begin(), packet.end());
        }
        self->changed.notify_all();
    };
    cb.remoteCandidateSkipped = [self](StreamId, const SkippedLine& line) {
        std::lock_guard lock(self->mutex);
        self->skipped.push_back(line);
        self->changed.notify_all();
    };
    return cb;
}

void Recorder::noteCallback() {
    if (agentGone) {
        ++callbacksAfterGone;
    }
}

bool RecordedEvents::hasState(ComponentState state) const {
    for (auto s : states) {
        if (s == state) {
            return true;
        }
    }
    return false;
}

RecordedEvents Recorder::snapshot() {
    std::lock_guard lock(mutex);
    return *this;
}

bool Recorder::waitConnected(std::chrono::milliseconds timeout) {
    return waitFor([this] { return hasState(ComponentState::Connected) && pair.has_value(); },
                   timeout);
}

void Peer::destroyAgent() {
    std::unique_ptr<Agent> gone;
    {
        std::lock_guard lock(agentMutex_);
        gone = std::move(agent);
    }
    // Outside the lock: the destructor waits for running callbacks, which may be forwarders
    // waiting for this very lock.
    if (gone) {
        gone.reset();
        events->agentGone = true;
    }
}

AgentConfig loopbackConfig(Role role) {
    AgentConfig config;
    config.role = role;
    config.interfaces = {"127.0.0.1"};
    config.ipv6 = false;
    config.resolveMdns = false; // a test outside a namespace of its own sends no multicast
    return config;
}

PeerPair::PeerPair(AgentConfig configA, AgentConfig configB, std::shared_ptr<EventLoop> loop) {
    auto make = [&](Peer& peer, AgentConfig config) {
        auto agent = Agent::create(std::move(config), peer.events->callbacks(), loop);
        if (agent) {
            peer.agent = std::move(*agent);
            peer.stream = peer.agent->addStream(1).value();
        }
    };
    make(a, std::move(configA));
    make(b, std::move(configB));
}

void Signalling::setLatency(std::chrono::milliseconds latency) {
    std::lock_guard lock(mutex_);
    latency_ = latency;
}

void Signalling::send(std::function<void()> deliver) {
    std::unique_lock lock(mutex_);
    if (stopped_) {
        return;
    }
    if (latency_.count() == 0) {
        lock.unlock();
        deliver();
        return;
    }
    queue_.emplace_back(Clock::now() + latency_, std::move(deliver));
    if (!thread_.joinable()) {
        thread_ = std::thread([this] { run(); });
    }
    changed_.notify_all();
}

void Signalling::run() {
    std::unique_lock lock(mutex_);
    while (!stopped_) {
        if (queue_.empty()) {
            changed_.wait(lock);
            continue;
        }
        auto due = queue_.front().first;
        if (Clock::now() < due) {
            changed_.wait_until(lock, due); // the latency itself
            continue;
        }
        auto deliver = std::move(queue_.front().second);
        queue_.erase(queue_.begin());
        lock.unlock();
        deliver();
        lock.lock();
    }
}

void Signalling::stop() {
    {
        std::lock_guard lock(mutex_);
        stopped_ = true;
        queue_.clear();
    }
    changed_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
        thread_.join();
    }
}

void PeerPair::startTrickle(std::chrono::milliseconds latency) {
    signalling.setLatency(latency);
    auto wire = [this](Peer& self, Peer& other) {
        auto credentials = self.agent->localDescription(self.stream).value();
        other.agent->setRemoteDescription(other.stream, credentials);
        // Looked up at delivery time: a test may destroy the other agent meanwhile.
        Peer* peer = &other;
        Signalling* channel = &signalling;
        self.events->onCandidate = [peer, channel](StreamId, const Candidate& c) {
            channel->send([peer, c] {
                peer->withAgent([&](Agent& agent) { agent.addRemoteCandidate(peer->stream, c); });
            });
        };
        self.events->onGatheringDone = [peer, channel](StreamId) {
            channel->send([peer] {
                peer->withAgent([&](Agent& agent) { agent.endOfRemoteCandidates(peer->stream); });
            });
        };
        // An ICE restart (ours, or answering the peer's): the new credentials go over, as a
        // signalling channel would carry them; the candidates follow as they are gathered.
        // Our own agent is alive inside its callback (its destructor waits for it).
        Agent* mine = self.agent.get();
        StreamId myStream = self.stream;
        self.events->onRestarted = [mine, myStream, peer, channel](StreamId, const std::string&) {
            auto description = mine->localDescription(myStream);
            if (description) {
                channel->send([peer, d = *description] {
                    peer->withAgent(
                        [&](Agent& agent) { agent.setRemoteDescription(peer->stream, d); });
                });
            }
        };
    };
    wire(a, b);
    wire(b, a);
    a.agent->gather(a.stream);
    b.agent->gather(b.stream);
}

bool PeerPair::startNonTrickle(std::chrono::milliseconds timeout) {
    a.agent->gather(a.stream);
    b.agent->gather(b.stream);
    if (!a.events->waitFor([&] { return a.events->gatheringDone; }, timeout) ||
        !b.events->waitFor([&] { return b.events->gatheringDone; }, timeout)) {
        return false;
    }
    auto da = a.agent->localDescription(a.stream).value();
    auto db = b.agent->localDescription(b.stream).value();
    // Through text, as a signalling channel would carry it.
    auto pa = SessionDescription::parse(da.toString());
    auto pb = SessionDescription::parse(db.toString());
    if (!pa || !pb) {
        return false;
    }
    return a.agent->setRemoteDescription(a.stream, *pb).ok() &&
           b.agent->setRemoteDescription(b.stream, *pa).ok();
}

bool PeerPair::waitConnected(std::chrono::milliseconds timeout) {
    return a.events->waitConnected(timeout) && b.events->waitConnected(timeout);
}

PeerPair::~PeerPair() {
    signalling.stop(); // nothing more reaches a peer that is going
    a.destroyAgent();
    b.destroyAgent();
}

bool exchange(Peer& from, Peer& to, int count, size_t size, size_t window,
              std::chrono::milliseconds timeout) {
    uint64_t base;
    {
        std::lock_guard lock(to.events->mutex);
        base = to.events->received;
    }
    std::string payload(size, 'x');
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (int i = 0; i < count; ++i) {
        std::memcpy(payload.data(), &i, std::min(sizeof i, size));
        bool roomy = to.events->waitFor(
            [&] { return to.events->received - base + window > static_cast<uint64_t>(i); },
            std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now()));
        if (!roomy || !from.agent->send(from.stream, 1, payload)) {
            return false;
        }
    }
    return to.events->waitFor(
        [&] { return to.events->received - base >= static_cast<uint64_t>(count); },
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                              std::chrono::steady_clock::now()));
}

std::string describe(const RecordedEvents& e) {
    std::string out = "states:";
    for (auto s : e.states) {
        out += " " + std::string(toString(s));
    }
    out += "\nrestarts:";
    for (const auto& r : e.restarts) {
        out += "\n  " + r;
    }
    out += "\ndisconnects:";
    for (const auto& r : e.disconnects) {
        out += "\n  " + r;
    }
    for (const auto& f : e.failures) {
        out += "\nfailure: " + f.message;
    }
    out += "\npairs:";
    for (const auto& p : e.pairs) {
        out += "\n  " + p.local.toString() + " -> " + p.remote.toString();
    }
    out += "\nsecured " + std::to_string(e.secured.size()) + " times";
    for (const auto& f : e.insecure) {
        out += "\nDTLS failure: " + f;
    }
    out += "\nreceived " + std::to_string(e.received) + " datagrams";
    return out;
}

static int countDir(const char* path) {
    int n = 0;
    if (DIR* dir = opendir(path)) {
        while (dirent* e = readdir(dir)) {
            if (e->d_name[0] != '.') {
                ++n;
            }
        }
        closedir(dir);
    }
    return n;
}

int countOpenFds() {
    return countDir("/proc/self/fd");
}
int countThreads() {
    return countDir("/proc/self/task");
}

} // namespace icepunch::test
