#include "impl/stun_nat.hpp"

#include <stun/stunagent.h>
#include <stun/stunmessage.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace icepunch::impl {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint16_t kAttrResponsePort = 0x0027; // RFC 5780
constexpr uint16_t kAttrOtherAddress = 0x802C; // RFC 5780
constexpr uint32_t kChangeIp = 0x4;
constexpr uint32_t kChangePort = 0x2;
constexpr milliseconds kInitialRto{100};

const uint16_t kKnownAttributes[] = {
    STUN_ATTRIBUTE_MAPPED_ADDRESS,
    STUN_ATTRIBUTE_RESPONSE_ADDRESS,
    STUN_ATTRIBUTE_CHANGE_REQUEST,
    STUN_ATTRIBUTE_SOURCE_ADDRESS,
    STUN_ATTRIBUTE_CHANGED_ADDRESS,
    STUN_ATTRIBUTE_ERROR_CODE,
    STUN_ATTRIBUTE_UNKNOWN_ATTRIBUTES,
    STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
    0x0026, // PADDING
    0x0027, // RESPONSE-PORT
    0,
};

std::optional<sockaddr_storage> toSockaddr(const NatEndpoint& endpoint, socklen_t& length) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* info = nullptr;
    std::string service = std::to_string(endpoint.port);
    if (getaddrinfo(endpoint.host.c_str(), service.c_str(), &hints, &info) != 0 || !info)
        return std::nullopt;
    sockaddr_storage storage{};
    std::memcpy(&storage, info->ai_addr, info->ai_addrlen);
    length = info->ai_addrlen;
    freeaddrinfo(info);
    return storage;
}

NatEndpoint fromSockaddr(const sockaddr_storage& storage) {
    char text[INET6_ADDRSTRLEN] = {};
    NatEndpoint endpoint;
    if (storage.ss_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
        endpoint.port = ntohs(in->sin_port);
    } else if (storage.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
        endpoint.port = ntohs(in6->sin6_port);
    }
    endpoint.host = text;
    return endpoint;
}

// One UDP socket; a fresh one is a fresh NAT mapping.
class UdpSocket {
public:
    UdpSocket() = default;
    ~UdpSocket() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    UdpSocket(const UdpSocket&) = delete;
    UdpSocket& operator=(const UdpSocket&) = delete;

    bool open(int family, const std::string& localAddress, std::string& error) {
        fd_ = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            error = std::string("cannot open a UDP socket: ") + std::strerror(errno);
            return false;
        }
        sockaddr_storage local{};
        socklen_t length = 0;
        if (!localAddress.empty()) {
            auto parsed = toSockaddr({localAddress, 0}, length);
            if (!parsed || parsed->ss_family != family) {
                error = "\"" + localAddress + "\" is not a local address of the server's family";
                return false;
            }
            local = *parsed;
        } else {
            local.ss_family = static_cast<sa_family_t>(family);
            length = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        }
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), length) != 0) {
            error = std::string("cannot bind a UDP socket: ") + std::strerror(errno);
            return false;
        }
        return true;
    }

    uint16_t localPort() const {
        sockaddr_storage local{};
        socklen_t length = sizeof local;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &length);
        return fromSockaddr(local).port;
    }

    bool sendTo(const uint8_t* data, std::size_t length, const NatEndpoint& to) {
        socklen_t addressLength = 0;
        auto address = toSockaddr(to, addressLength);
        if (!address)
            return false;
        return ::sendto(fd_, data, length, 0, reinterpret_cast<const sockaddr*>(&*address),
                        addressLength) >= 0;
    }

    // One datagram, or nullopt at `until`.
    std::optional<std::vector<uint8_t>> receive(Clock::time_point until, NatEndpoint* from) {
        for (;;) {
            auto now = Clock::now();
            if (now >= until)
                return std::nullopt;
            int ms = static_cast<int>(duration_cast<milliseconds>(until - now).count()) + 1;
            pollfd pfd{fd_, POLLIN, 0};
            int n = ::poll(&pfd, 1, ms);
            if (n < 0 && errno != EINTR)
                return std::nullopt;
            if (n <= 0)
                continue;
            std::vector<uint8_t> buffer(65536);
            sockaddr_storage source{};
            socklen_t sourceLength = sizeof source;
            ssize_t got = ::recvfrom(fd_, buffer.data(), buffer.size(), 0,
                                     reinterpret_cast<sockaddr*>(&source), &sourceLength);
            if (got < 0)
                continue; // e.g. ICMP port unreachable reported on the socket
            buffer.resize(static_cast<std::size_t>(got));
            if (from)
                *from = fromSockaddr(source);
            return buffer;
        }
    }

private:
    int fd_ = -1;
};

struct Answer {
    NatProbe probe;
    std::chrono::microseconds rtt{0};
    int errorCode = 0;
};

struct Request {
    std::vector<uint8_t> bytes;
    StunTransactionId id{};
};

Request makeBinding(StunAgent& agent, uint32_t changeRequest, uint16_t responsePort) {
    Request request;
    uint8_t buffer[STUN_MAX_MESSAGE_SIZE_IPV6];
    StunMessage message{};
    if (!stun_agent_init_request(&agent, &message, buffer, sizeof buffer, STUN_BINDING))
        return request;
    if (changeRequest != 0 && stun_message_append32(&message, STUN_ATTRIBUTE_CHANGE_REQUEST,
                                                    changeRequest) != STUN_MESSAGE_RETURN_SUCCESS)
        return request;
    // RESPONSE-PORT: the port in the high 16 bits, then 2 bytes of padding.
    if (responsePort != 0 &&
        stun_message_append32(&message, StunAttribute(kAttrResponsePort),
                              uint32_t(responsePort) << 16) != STUN_MESSAGE_RETURN_SUCCESS)
        return request;
    std::size_t length = stun_agent_finish_message(&agent, &message, nullptr, 0);
    if (length == 0)
        return request;
    stun_message_id(&message, request.id);
    request.bytes.assign(buffer, buffer + length);
    return request;
}

bool sameTransaction(const std::vector<uint8_t>& packet, const StunTransactionId id) {
    return packet.size() >= 20 && std::memcmp(packet.data() + 4, id, 16) == 0; // cookie + id
}

bool endsWithFingerprint(const std::vector<uint8_t>& packet) {
    return packet.size() >= 28 && packet[packet.size() - 8] == 0x80 &&
           packet[packet.size() - 7] == 0x28;
}

// A Binding transaction on `socket` to `server`, retransmitted (RFC 5389 7.2.1 from 100 ms)
// until `timeout`. The answer from `expected` ends it; one from elsewhere (any address may send
// one to a mapping the filter lets through) is kept only in case none from `expected` comes.
Answer binding(UdpSocket& socket, const NatEndpoint& server, milliseconds timeout,
               const NatEndpoint& expected, uint32_t changeRequest = 0) {
    Answer answer;
    StunAgent agent{};
    stun_agent_init(&agent, kKnownAttributes, STUN_COMPATIBILITY_RFC5389,
                    STUN_AGENT_USAGE_USE_FINGERPRINT);
    Request request = makeBinding(agent, changeRequest, 0);
    if (request.bytes.empty())
        return answer;
    answer.probe.sent = true;
    auto start = Clock::now();
    auto deadline = start + timeout;
    auto rto = kInitialRto;
    auto nextSend = start;
    while (Clock::now() < deadline) {
        if (Clock::now() >= nextSend) {
            socket.sendTo(request.bytes.data(), request.bytes.size(), server);
            nextSend = Clock::now() + rto;
            rto = std::min(rto * 2, milliseconds(1600));
        }
        NatEndpoint from;
        auto packet = socket.receive(std::min(nextSend, deadline), &from);
        if (!packet)
            continue;
        StunMessage message{};
        // Validated on a copy: a valid response retires its transaction in the agent, and one
        // from the wrong source must not stop the right one from being matched.
        StunAgent scratch = agent;
        // coturn leaves FINGERPRINT out of CHANGE-REQUEST answers: accept those without one.
        if (!endsWithFingerprint(*packet))
            scratch.usage_flags =
                StunAgentUsageFlags(scratch.usage_flags & ~STUN_AGENT_USAGE_USE_FINGERPRINT);
        if (stun_agent_validate(&scratch, &message, packet->data(), packet->size(), nullptr,
                                nullptr) != STUN_VALIDATION_SUCCESS)
            continue;
        if (stun_message_get_method(&message) != STUN_BINDING)
            continue;
        if (stun_message_get_class(&message) == STUN_ERROR) {
            int code = 0;
            stun_message_find_error(&message, &code);
            answer.probe.source = from;
            answer.errorCode = code;
            return answer;
        }
        if (stun_message_get_class(&message) != STUN_RESPONSE)
            continue;
        if (answer.probe.answered && !(from == expected))
            continue; // already have an answer from the wrong place
        sockaddr_storage address{};
        socklen_t length = sizeof address;
        if (stun_message_find_xor_addr(&message, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, &address,
                                       &length) != STUN_MESSAGE_RETURN_SUCCESS) {
            length = sizeof address;
            if (stun_message_find_addr(&message, STUN_ATTRIBUTE_MAPPED_ADDRESS, &address,
                                       &length) != STUN_MESSAGE_RETURN_SUCCESS)
                continue;
        }
        NatProbe probe;
        probe.sent = true;
        probe.answered = true;
        probe.source = from;
        probe.mapped = fromSockaddr(address);
        length = sizeof address;
        if (stun_message_find_addr(&message, StunAttribute(kAttrOtherAddress), &address, &length) ==
            STUN_MESSAGE_RETURN_SUCCESS)
            probe.other = fromSockaddr(address);
        answer.probe = probe;
        answer.rtt = duration_cast<std::chrono::microseconds>(Clock::now() - start);
        if (from == expected)
            return answer;
    }
    return answer;
}

// The local address the kernel would use towards the server (connect() on a scratch socket).
std::string sourceAddressTowards(const NatEndpoint& server, int family) {
    socklen_t length = 0;
    auto address = toSockaddr(server, length);
    int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || !address)
        return {};
    std::string result;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&*address), length) == 0) {
        sockaddr_storage local{};
        socklen_t localLength = sizeof local;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &localLength) == 0)
            result = fromSockaddr(local).host;
    }
    ::close(fd);
    return result;
}

// RFC 5780 4.6: bind a fresh mapping, stay silent for `wait`, then ask the server from a second
// socket to answer to the first mapping's port (RESPONSE-PORT). True when the answer got through.
std::optional<bool> bindingAliveAfter(const NatDiscoveryOptions& options, int family,
                                      const NatEndpoint& server, seconds wait) {
    UdpSocket first, second;
    std::string error;
    if (!first.open(family, options.localAddress, error) ||
        !second.open(family, options.localAddress, error))
        return std::nullopt;
    Answer initial = binding(first, server, options.testTimeout, server);
    if (!initial.probe.answered)
        return std::nullopt;
    std::this_thread::sleep_for(wait);
    StunAgent agent{};
    stun_agent_init(&agent, kKnownAttributes, STUN_COMPATIBILITY_RFC5389,
                    STUN_AGENT_USAGE_USE_FINGERPRINT);
    Request request = makeBinding(agent, 0, initial.probe.mapped.port);
    auto deadline = Clock::now() + options.testTimeout;
    auto rto = kInitialRto;
    auto nextSend = Clock::now();
    while (Clock::now() < deadline) {
        if (Clock::now() >= nextSend) {
            second.sendTo(request.bytes.data(), request.bytes.size(), server);
            nextSend = Clock::now() + rto;
            rto = std::min(rto * 2, milliseconds(1600));
        }
        auto packet = first.receive(std::min(nextSend, deadline), nullptr);
        if (packet && sameTransaction(*packet, request.id))
            return true;
    }
    return false;
}

// Runs the probes for `waits` in parallel and returns the alive ones in order (nullopt: broken).
std::vector<std::optional<bool>> probeLifetimes(const NatDiscoveryOptions& options, int family,
                                                const NatEndpoint& server,
                                                const std::vector<seconds>& waits) {
    std::vector<std::optional<bool>> alive(waits.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < waits.size(); ++i)
        threads.emplace_back(
            [&, i] { alive[i] = bindingAliveAfter(options, family, server, waits[i]); });
    for (auto& t : threads)
        t.join();
    return alive;
}

void measureLifetime(const NatDiscoveryOptions& options, int family, const NatEndpoint& server,
                     NatDiscoveryResult& result) {
    // Round 1: 0, 1, 2, 4 ... max seconds in parallel; round 2 refines between the last alive
    // and the first gone wait, so the total stays below twice the maximum.
    std::vector<seconds> waits{seconds(0)};
    for (seconds s{1}; s < options.lifetimeMax; s *= 2)
        waits.push_back(s);
    if (options.lifetimeMax > seconds(0))
        waits.push_back(options.lifetimeMax);
    auto alive = probeLifetimes(options, family, server, waits);
    if (!alive[0] || !*alive[0]) {
        result.lifetimeNote = "the server does not answer to RESPONSE-PORT (RFC 5780 4.6), so the "
                              "binding lifetime cannot be measured";
        return;
    }
    std::optional<seconds> lastAlive, firstGone;
    for (std::size_t i = 0; i < waits.size(); ++i) {
        if (alive[i] && *alive[i])
            lastAlive = waits[i];
        else if (alive[i] && !*alive[i] && !firstGone)
            firstGone = waits[i];
    }
    if (firstGone && lastAlive && *firstGone > *lastAlive + seconds(1)) {
        std::vector<seconds> refine;
        auto step = std::max(seconds(1), (*firstGone - *lastAlive) / 5);
        for (auto s = *lastAlive + step; s < *firstGone; s += step)
            refine.push_back(s);
        auto more = probeLifetimes(options, family, server, refine);
        for (std::size_t i = 0; i < refine.size(); ++i) {
            if (more[i] && *more[i] && refine[i] > *lastAlive && refine[i] < *firstGone)
                lastAlive = refine[i];
        }
        for (std::size_t i = 0; i < refine.size(); ++i) {
            if (more[i] && !*more[i] && refine[i] > *lastAlive && refine[i] < *firstGone)
                firstGone = refine[i];
        }
    }
    result.lifetimeAlive = lastAlive;
    result.lifetimeGone = firstGone;
}

void applyClassification(const NatClassification& c, NatDiscoveryResult& result) {
    result.behindNat = c.behindNat;
    result.rfc5780 = c.rfc5780;
    result.otherAddress = c.other.host;
    result.otherPort = c.other.port;
    result.mapping = c.mapping;
    result.filtering = c.filtering;
    result.classicName = c.classicName;
    result.notes.insert(result.notes.end(), c.notes.begin(), c.notes.end());
}

} // namespace

NatDiscoveryResult discoverNat(const NatDiscoveryOptions& options) {
    NatDiscoveryResult result;
    socklen_t length = 0;
    auto serverAddress = toSockaddr({options.serverAddress, options.serverPort}, length);
    if (!serverAddress) {
        result.error = "\"" + options.serverAddress + "\" is not an IP address";
        return result;
    }
    // As inet_ntop writes it, to compare with the sources of the answers.
    NatEndpoint server = fromSockaddr(*serverAddress);
    int family = serverAddress->ss_family;
    std::string error;
    NatObservations observations;
    observations.server = server;

    // Test I on the mapping socket.
    UdpSocket mappingSocket;
    if (!mappingSocket.open(family, options.localAddress, error)) {
        result.error = error;
        return result;
    }
    std::string localHost = sourceAddressTowards(server, family);
    if (!options.localAddress.empty()) {
        socklen_t localLength = 0;
        auto local = toSockaddr({options.localAddress, 0}, localLength);
        localHost = local ? fromSockaddr(*local).host : options.localAddress;
    }
    result.localAddress = localHost;
    result.localPort = mappingSocket.localPort();
    observations.local = {result.localAddress, result.localPort};
    Answer test1 = binding(mappingSocket, server, options.testTimeout, server);
    observations.test1 = test1.probe;
    if (!test1.probe.answered) {
        if (test1.errorCode != 0) {
            result.error = "the server answered the Binding request with error " +
                           std::to_string(test1.errorCode);
            return result;
        }
        result.udpBlocked = true;
        result.classicName = "UDP blocked";
        result.error = "no answer from " + toString(server) + " over UDP within " +
                       std::to_string(options.testTimeout.count()) +
                       " ms: UDP is blocked or the server is down";
        return result;
    }
    result.ok = true;
    result.rtt = test1.rtt;
    result.mappedAddress = test1.probe.mapped.host;
    result.mappedPort = test1.probe.mapped.port;
    NatClassification first = classifyNat(observations); // is the rest of RFC 5780 possible?
    if (!first.rfc5780) {
        applyClassification(first, result);
        if (options.lifetime)
            measureLifetime(options, family, server, result);
        return result;
    }
    const NatEndpoint other = test1.probe.other;

    // Filtering (4.4) before the mapping tests reach the other address: a router may open its
    // filter to an address for every mapping of a host once any of them sent there. Each test
    // on a fresh socket (a fresh mapping) that has only sent to the primary address.
    auto filteringTest = [&](NatProbe& base, NatProbe& probe, NatTest test, uint32_t change) {
        UdpSocket socket;
        if (!socket.open(family, options.localAddress, error)) {
            result.notes.push_back("no socket for a filtering test: " + error);
            return;
        }
        base = binding(socket, server, options.testTimeout, server).probe;
        if (base.answered && base.source == server)
            probe = binding(socket, server, options.testTimeout,
                            expectedSource(test, server, other), change)
                        .probe;
    };
    filteringTest(observations.filtering2Base, observations.filtering2, NatTest::Filtering2,
                  kChangeIp | kChangePort);
    if (!(observations.filtering2.answered &&
          observations.filtering2.source == expectedSource(NatTest::Filtering2, server, other)))
        filteringTest(observations.filtering3Base, observations.filtering3, NatTest::Filtering3,
                      kChangePort);

    // Mapping (4.3) on the mapping socket: test II to the other IP, test III to the other port.
    if (first.behindNat) {
        NatEndpoint alternateIp = expectedSource(NatTest::Mapping2, server, other);
        observations.mapping2 =
            binding(mappingSocket, alternateIp, options.testTimeout, alternateIp).probe;
        const NatProbe& test2 = observations.mapping2;
        if (test2.answered && test2.source == alternateIp && !(test2.mapped == test1.probe.mapped))
            observations.mapping3 = binding(mappingSocket, other, options.testTimeout, other).probe;
    }
    applyClassification(classifyNat(observations), result);

    // Hairpinning (4.5): a second socket sends to the first one's mapped address.
    if (options.hairpinning) {
        UdpSocket hairpin;
        if (hairpin.open(family, options.localAddress, error)) {
            StunAgent agent{};
            stun_agent_init(&agent, kKnownAttributes, STUN_COMPATIBILITY_RFC5389,
                            STUN_AGENT_USAGE_USE_FINGERPRINT);
            Request request = makeBinding(agent, 0, 0);
            auto deadline = Clock::now() + options.testTimeout;
            auto rto = kInitialRto;
            auto nextSend = Clock::now();
            bool seen = false;
            while (!seen && Clock::now() < deadline) {
                if (Clock::now() >= nextSend) {
                    hairpin.sendTo(request.bytes.data(), request.bytes.size(), test1.probe.mapped);
                    nextSend = Clock::now() + rto;
                    rto = std::min(rto * 2, milliseconds(1600));
                }
                auto packet = mappingSocket.receive(std::min(nextSend, deadline), nullptr);
                seen = packet && sameTransaction(*packet, request.id);
            }
            result.hairpinning = seen;
        }
    }
    if (options.lifetime)
        measureLifetime(options, family, server, result);
    return result;
}

} // namespace icepunch::impl
