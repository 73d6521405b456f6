#include "impl/mdns_resolver.hpp"

#include "impl/log_impl.hpp"
#include "impl/mdns_message.hpp"

#include <glib-unix.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <utility>

namespace icepunch::impl {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// When each query goes out, from the start of the resolution (if the timeout allows).
constexpr std::array<milliseconds, 3> kSendAt = {milliseconds(0), milliseconds(200),
                                                 milliseconds(600)};
constexpr std::size_t kMaxPacket = 9000; // RFC 6762 17
constexpr int kMaxReadsPerWakeup = 64;   // other sources get their turn under a flood

std::string errnoText(const char* what, int err = errno) {
    return std::string(what) + ": " + std::strerror(err);
}

void debug(const std::string& message) {
    if (logEnabled(LogLevel::Debug)) {
        log(LogLevel::Debug, "mDNS: " + message);
    }
}

// The interfaces a query goes out on: up, multicast-capable, not loopback, with an IPv4 address.
std::vector<ip_mreqn> multicastInterfaces() {
    std::vector<ip_mreqn> out;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) {
        return out;
    }
    std::set<unsigned> seen;
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
        if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) {
            continue;
        }
        unsigned flags = i->ifa_flags;
        if (!(flags & IFF_UP) || !(flags & IFF_MULTICAST) || (flags & IFF_LOOPBACK)) {
            continue;
        }
        unsigned index = if_nametoindex(i->ifa_name);
        if (index == 0 || !seen.insert(index).second) {
            continue;
        }
        ip_mreqn interface {};
        interface.imr_ifindex = static_cast<int>(index);
        interface.imr_address = reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr;
        out.push_back(interface);
    }
    freeifaddrs(list);
    return out;
}

} // namespace

struct MdnsResolver::Request {
    uint64_t id = 0;
    std::string name;
    milliseconds timeout{0};
    std::vector<uint8_t> query;
    Done done;
    Clock::time_point start;
    std::size_t sends = 0; // how many of kSendAt have gone
    bool sentOnce = false; // some query left on some interface
    std::string sendError; // the last failure to send, for the timeout's message
    GSource* timer = nullptr;
    std::optional<Error> failure; // known before any query (bad name, no socket): given at once
};

// What a GSource knows of its resolver: a weak reference, so a dropped resolver is never touched.
struct MdnsResolver::TimerTag {
    std::weak_ptr<MdnsResolver> resolver;
    uint64_t id = 0;
};

std::shared_ptr<MdnsResolver> MdnsResolver::create(GMainContext* context) {
    return std::shared_ptr<MdnsResolver>(new MdnsResolver(context));
}

MdnsResolver::MdnsResolver(GMainContext* context) : context_(g_main_context_ref(context)) {}

MdnsResolver::~MdnsResolver() {
    cancelAll();
    g_main_context_unref(context_);
}

void MdnsResolver::resolve(std::string name, milliseconds timeout, Done done) {
    assert(g_main_context_is_owner(context_));
    auto request = std::make_unique<Request>();
    request->id = nextId_++;
    request->name = std::move(name);
    request->timeout = std::max(timeout, milliseconds(0));
    request->done = std::move(done);
    request->start = Clock::now();
    if (auto valid = validateMdnsName(request->name); !valid) {
        request->failure = valid.error();
    } else if (auto opened = openSocket(); !opened) {
        request->failure = opened.error();
    } else {
        // Legacy unicast (RFC 6762 6.7) responders echo the id; it is not checked, so 0.
        request->query = buildMdnsQuery(request->name, 0);
    }
    Request& r = *request;
    pending_.emplace(r.id, std::move(request));
    schedule(r);
}

void MdnsResolver::cancelAll() {
    auto dropped = std::exchange(pending_, {});
    for (auto& [id, request] : dropped) {
        if (request->timer != nullptr) {
            g_source_destroy(request->timer);
            g_source_unref(request->timer);
            request->timer = nullptr;
        }
    }
    closeSocket();
    if (!dropped.empty()) {
        debug("cancelled " + std::to_string(dropped.size()) + " resolution(s)");
    }
    // `dropped` goes here: the done callbacks are destroyed, not called.
}

Status MdnsResolver::openSocket() {
    if (fd_ >= 0) {
        return {};
    }
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return Error{errnoText("cannot open a UDP socket for mDNS queries")};
    }
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(INADDR_ANY);
    local.sin_port = 0; // one-shot queries come from an ephemeral port, never 5353
    int ttl = 255;      // RFC 6762 11
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
        ::setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) != 0) {
        Error error{errnoText("cannot set up a UDP socket for mDNS queries")};
        ::close(fd);
        return error;
    }
    fd_ = fd;
    readSource_ = g_unix_fd_source_new(fd_, G_IO_IN);
    g_source_set_callback(readSource_, G_SOURCE_FUNC(readableThunk),
                          new TimerTag{weak_from_this(), 0},
                          [](gpointer data) { delete static_cast<TimerTag*>(data); });
    g_source_attach(readSource_, context_);
    return {};
}

void MdnsResolver::closeSocket() {
    if (readSource_ != nullptr) {
        g_source_destroy(readSource_);
        g_source_unref(readSource_);
        readSource_ = nullptr;
    }
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

void MdnsResolver::schedule(Request& request) {
    if (request.timer != nullptr) {
        g_source_destroy(request.timer);
        g_source_unref(request.timer);
    }
    auto next = request.start + request.timeout;
    if (request.failure) {
        next = request.start;
    } else if (request.sends < kSendAt.size()) {
        next = std::min(next, request.start + kSendAt[request.sends]);
    }
    // Rounded up: a timer that fires early would only be set again.
    auto wait = std::chrono::ceil<milliseconds>(std::max(next - Clock::now(), Clock::duration(0)));
    request.timer = g_timeout_source_new(static_cast<guint>(wait.count()));
    g_source_set_callback(request.timer, timerThunk, new TimerTag{weak_from_this(), request.id},
                          [](gpointer data) { delete static_cast<TimerTag*>(data); });
    g_source_attach(request.timer, context_);
}

gboolean MdnsResolver::timerThunk(gpointer data) {
    auto* tag = static_cast<TimerTag*>(data);
    // Held for the call: a done that drops the last owner destroys the resolver after it.
    if (auto self = tag->resolver.lock()) {
        self->onTimer(tag->id);
    }
    return G_SOURCE_REMOVE;
}

gboolean MdnsResolver::readableThunk(gint, GIOCondition, gpointer data) {
    auto* tag = static_cast<TimerTag*>(data);
    if (auto self = tag->resolver.lock()) {
        self->onReadable();
    }
    return G_SOURCE_CONTINUE; // closeSocket() destroys it
}

void MdnsResolver::onTimer(uint64_t id) {
    auto it = pending_.find(id);
    if (it == pending_.end()) {
        return;
    }
    Request& request = *it->second;
    g_source_unref(request.timer); // the dispatch holds its own reference until it returns
    request.timer = nullptr;
    if (request.failure) {
        finish(id, *request.failure);
        return;
    }
    auto now = Clock::now();
    if (now >= request.start + request.timeout) {
        std::string message = "no answer from an mDNS responder for " + request.name + " within " +
                              std::to_string(request.timeout.count()) + " ms";
        if (!request.sentOnce && !request.sendError.empty()) {
            message += " (no query could be sent: " + request.sendError + ")";
        }
        finish(id, Error{message, ErrorCode::Failed});
        return;
    }
    if (request.sends < kSendAt.size() && now >= request.start + kSendAt[request.sends]) {
        send(request);
        ++request.sends;
    }
    schedule(request);
}

void MdnsResolver::send(Request& request) {
    sockaddr_in group{};
    group.sin_family = AF_INET;
    group.sin_port = htons(kMdnsPort);
    inet_pton(AF_INET, kMdnsGroupIpv4, &group.sin_addr);
    auto sendOnce = [&]() {
        if (::sendto(fd_, request.query.data(), request.query.size(), 0,
                     reinterpret_cast<const sockaddr*>(&group), sizeof group) < 0) {
            request.sendError = std::strerror(errno);
            return false;
        }
        request.sentOnce = true;
        return true;
    };
    auto interfaces = multicastInterfaces();
    std::size_t sent = 0;
    for (const ip_mreqn& interface : interfaces) {
        if (::setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_IF, &interface, sizeof interface) != 0) {
            request.sendError = std::strerror(errno);
            continue;
        }
        sent += sendOnce() ? 1 : 0;
    }
    if (interfaces.empty()) {
        sent += sendOnce() ? 1 : 0; // let the routing table pick
    }
    debug("query " + std::to_string(request.sends + 1) + " for " + request.name + " sent on " +
          std::to_string(sent) + " interface(s)" +
          (request.sendError.empty() ? "" : " (last error: " + request.sendError + ")"));
}

void MdnsResolver::onReadable() {
    std::vector<uint8_t> buffer(kMaxPacket);
    for (int reads = 0; reads < kMaxReadsPerWakeup && fd_ >= 0; ++reads) {
        sockaddr_in from{};
        socklen_t fromLength = sizeof from;
        ssize_t got = ::recvfrom(fd_, buffer.data(), buffer.size(), 0,
                                 reinterpret_cast<sockaddr*>(&from), &fromLength);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            continue; // e.g. an ICMP error reported on the socket
        }
        char source[INET_ADDRSTRLEN] = {};
        inet_ntop(AF_INET, &from.sin_addr, source, sizeof source);
        if (ntohs(from.sin_port) != kMdnsPort) {
            debug(std::string("ignored a packet from ") + source + ":" +
                  std::to_string(ntohs(from.sin_port)) + ", not from port 5353");
            continue;
        }
        std::span<const uint8_t> packet(buffer.data(), static_cast<std::size_t>(got));
        // One packet may answer several requests; each finish() may change pending_.
        for (bool matched = true; matched;) {
            matched = false;
            for (auto& [id, request] : pending_) {
                if (request->failure) {
                    continue;
                }
                auto answers = parseMdnsAnswers(packet, request->name);
                if (!answers) {
                    debug(std::string("ignored a packet from ") + source + ": " +
                          answers.error().message);
                    break; // malformed for every name alike
                }
                if (!answers->empty()) {
                    std::string list;
                    for (const auto& a : *answers) {
                        list += (list.empty() ? "" : " ") + a;
                    }
                    debug(request->name + " is " + list + " (from " + source + ")");
                    finish(id, std::move(*answers));
                    matched = true;
                    break;
                }
            }
        }
    }
}

void MdnsResolver::finish(uint64_t id, Result<std::vector<std::string>> result) {
    auto it = pending_.find(id);
    if (it == pending_.end()) {
        return;
    }
    std::unique_ptr<Request> request = std::move(it->second);
    pending_.erase(it);
    if (request->timer != nullptr) {
        g_source_destroy(request->timer);
        g_source_unref(request->timer);
        request->timer = nullptr;
    }
    if (pending_.empty()) {
        closeSocket();
    }
    Done done = std::move(request->done);
    request.reset();
    done(std::move(result));
}

} // namespace icepunch::impl
