#include "impl/turn_probe.hpp"

#include <stun/stunagent.h>
#include <stun/stunmessage.h>
#include <stun/usages/bind.h>
#include <stun/usages/turn.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <utility>
#include <vector>

namespace icepunch::impl {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr milliseconds kSlice{50};         // cancellation latency
constexpr milliseconds kInitialRto{100};   // RFC 5389 7.2.1 (LAN-friendly start)
constexpr milliseconds kMaxRto{1600};      // keep retrying until the deadline
constexpr std::size_t kMaxMessage = 65536; // one datagram / one framed message
constexpr milliseconds kProbeAfter{300};   // see Transactor::probeWithBinding()

constexpr uint16_t kAttrResponseOrigin = 0x802B; // RFC 5780
constexpr uint16_t kAttrOtherAddress = 0x802C;   // RFC 5780

// Comprehension-required attributes we understand in answers (the agent reports others).
const uint16_t kKnownAttributes[] = {
    STUN_ATTRIBUTE_MAPPED_ADDRESS,
    STUN_ATTRIBUTE_RESPONSE_ADDRESS,
    STUN_ATTRIBUTE_CHANGE_REQUEST,
    STUN_ATTRIBUTE_SOURCE_ADDRESS,
    STUN_ATTRIBUTE_CHANGED_ADDRESS,
    STUN_ATTRIBUTE_USERNAME,
    STUN_ATTRIBUTE_MESSAGE_INTEGRITY,
    STUN_ATTRIBUTE_ERROR_CODE,
    STUN_ATTRIBUTE_UNKNOWN_ATTRIBUTES,
    STUN_ATTRIBUTE_CHANNEL_NUMBER,
    STUN_ATTRIBUTE_LIFETIME,
    STUN_ATTRIBUTE_BANDWIDTH,
    STUN_ATTRIBUTE_XOR_PEER_ADDRESS,
    STUN_ATTRIBUTE_DATA,
    STUN_ATTRIBUTE_REALM,
    STUN_ATTRIBUTE_NONCE,
    STUN_ATTRIBUTE_XOR_RELAYED_ADDRESS,
    STUN_ATTRIBUTE_REQUESTED_ADDRESS_TYPE,
    STUN_ATTRIBUTE_EVEN_PORT,
    STUN_ATTRIBUTE_REQUESTED_TRANSPORT,
    STUN_ATTRIBUTE_DONT_FRAGMENT,
    STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
    STUN_ATTRIBUTE_RESERVATION_TOKEN,
    0x0026, // PADDING (RFC 5780)
    0x0027, // RESPONSE-PORT (RFC 5780)
    0,
};

// ---- addresses ----------------------------------------------------------------------------

struct Address {
    sockaddr_storage storage{};
    socklen_t length = 0;
};

std::optional<Address> parseAddress(const std::string& host, uint16_t port) {
    std::string literal = host;
    if (literal.size() >= 2 && literal.front() == '[' && literal.back() == ']')
        literal = literal.substr(1, literal.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* info = nullptr;
    std::string service = std::to_string(port);
    if (getaddrinfo(literal.c_str(), service.c_str(), &hints, &info) != 0 || info == nullptr)
        return std::nullopt;
    Address address;
    std::memcpy(&address.storage, info->ai_addr, info->ai_addrlen);
    address.length = info->ai_addrlen;
    freeaddrinfo(info);
    return address;
}

std::string hostOf(const sockaddr_storage& storage) {
    char text[INET6_ADDRSTRLEN] = {};
    if (storage.ss_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    } else if (storage.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    }
    return text;
}

uint16_t portOf(const sockaddr_storage& storage) {
    if (storage.ss_family == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
    if (storage.ss_family == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    return 0;
}

std::string endpointText(const std::string& host, uint16_t port) {
    if (host.find(':') != std::string::npos)
        return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

std::string endpointText(const sockaddr_storage& storage) {
    return endpointText(hostOf(storage), portOf(storage));
}

std::string transportName(Transport transport) {
    return transport == Transport::Udp ? "UDP" : "TCP";
}

std::string errnoText(int error) {
    return std::strerror(error);
}

// coturn pads reason phrases with spaces or NULs.
std::string trimReason(const uint8_t* data, std::size_t length) {
    std::string text(reinterpret_cast<const char*>(data), length);
    auto junk = [](char c) {
        return c == '\0' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
    };
    while (!text.empty() && junk(text.back()))
        text.pop_back();
    std::size_t start = 0;
    while (start < text.size() && junk(text[start]))
        ++start;
    return text.substr(start);
}

// ---- sockets ------------------------------------------------------------------------------

enum class Io { Ok, Timeout, Cancelled, Error };

class Socket {
public:
    Socket() = default;
    explicit Socket(int fd) : fd_(fd) {}
    ~Socket() { reset(); }
    Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Socket& operator=(Socket&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;

    int fd() const { return fd_; }
    void reset() {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_ = -1;
};

bool cancelled(const std::atomic<bool>* cancel) {
    return cancel != nullptr && cancel->load(std::memory_order_relaxed);
}

// Waits for `events` on fd until `until`, in slices short enough to notice cancellation.
Io waitFor(int fd, short events, Clock::time_point until, const std::atomic<bool>* cancel,
           std::string& error) {
    for (;;) {
        if (cancelled(cancel))
            return Io::Cancelled;
        auto now = Clock::now();
        if (now >= until)
            return Io::Timeout;
        auto slice = std::min<Clock::duration>(until - now, kSlice);
        int ms = static_cast<int>(duration_cast<milliseconds>(slice).count()) + 1;
        pollfd pfd{fd, events, 0};
        int n = ::poll(&pfd, 1, ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            error = "poll failed: " + errnoText(errno);
            return Io::Error;
        }
        if (n > 0)
            return Io::Ok;
    }
}

// A socket connected to the server that carries whole STUN messages: datagrams over UDP,
// RFC 5389 section 7.2.2 framing over TCP.
class Channel {
public:
    Io open(const Address& server, Transport transport, const ProbeLocalBind& local,
            Clock::time_point deadline, const std::atomic<bool>* cancel, std::string& error) {
        transport_ = transport;
        serverText_ = endpointText(server.storage);
        int type = transport == Transport::Udp ? SOCK_DGRAM : SOCK_STREAM;
        socket_ =
            Socket(::socket(server.storage.ss_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (socket_.fd() < 0) {
            error = "cannot create a socket: " + errnoText(errno);
            return Io::Error;
        }
        if (!local.address.empty() || local.port != 0) {
            std::string host = local.address;
            if (host.empty())
                host = server.storage.ss_family == AF_INET6 ? "::" : "0.0.0.0";
            auto bindAddress = parseAddress(host, local.port);
            if (!bindAddress) {
                error = "invalid local address \"" + local.address + "\"";
                return Io::Error;
            }
            if (::bind(socket_.fd(), reinterpret_cast<const sockaddr*>(&bindAddress->storage),
                       bindAddress->length) != 0) {
                error =
                    "cannot bind to " + endpointText(host, local.port) + ": " + errnoText(errno);
                return Io::Error;
            }
        }
        if (::connect(socket_.fd(), reinterpret_cast<const sockaddr*>(&server.storage),
                      server.length) != 0) {
            if (errno != EINPROGRESS)
                return connectError(errno, error);
            Io io = waitFor(socket_.fd(), POLLOUT, deadline, cancel, error);
            if (io == Io::Timeout) {
                error = "could not connect to " + serverText_ + " (TCP) within the timeout";
                return io;
            }
            if (io != Io::Ok)
                return io;
            int soError = 0;
            socklen_t soLength = sizeof soError;
            ::getsockopt(socket_.fd(), SOL_SOCKET, SO_ERROR, &soError, &soLength);
            if (soError != 0)
                return connectError(soError, error);
        }
        sockaddr_storage mine{};
        socklen_t mineLength = sizeof mine;
        if (::getsockname(socket_.fd(), reinterpret_cast<sockaddr*>(&mine), &mineLength) == 0) {
            localAddress_ = hostOf(mine);
            localPort_ = portOf(mine);
        }
        return Io::Ok;
    }

    Io send(const uint8_t* data, std::size_t length, Clock::time_point deadline,
            const std::atomic<bool>* cancel, std::string& error) {
        std::size_t sent = 0;
        while (sent < length) {
            ssize_t n = ::send(socket_.fd(), data + sent, length - sent, MSG_NOSIGNAL);
            if (n >= 0) {
                sent += static_cast<std::size_t>(n);
                continue;
            }
            if (errno == EINTR)
                continue;
            if (transport_ == Transport::Udp && errno == ECONNREFUSED) {
                icmpRefused_ = true; // a stale ICMP error; UDP keeps trying
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                Io io = waitFor(socket_.fd(), POLLOUT, deadline, cancel, error);
                if (io != Io::Ok)
                    return io;
                continue;
            }
            error = "cannot send to " + serverText_ + ": " + errnoText(errno);
            return Io::Error;
        }
        return Io::Ok;
    }

    // Next whole STUN message from the server, waiting until `until`.
    Io receive(std::vector<uint8_t>& message, Clock::time_point until,
               const std::atomic<bool>* cancel, std::string& error) {
        for (;;) {
            if (transport_ == Transport::Tcp && extractFrame(message, error))
                return Io::Ok;
            if (!error.empty())
                return Io::Error;
            Io io = waitFor(socket_.fd(), POLLIN, until, cancel, error);
            if (io != Io::Ok)
                return io;
            uint8_t buffer[kMaxMessage];
            ssize_t n = ::recv(socket_.fd(), buffer, sizeof buffer, 0);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                    continue;
                if (transport_ == Transport::Udp && errno == ECONNREFUSED) {
                    // ICMP port unreachable: worth mentioning, not worth trusting.
                    icmpRefused_ = true;
                    continue;
                }
                error = "cannot receive from " + serverText_ + ": " + errnoText(errno);
                return Io::Error;
            }
            if (transport_ == Transport::Udp) {
                message.assign(buffer, buffer + n);
                return Io::Ok;
            }
            if (n == 0) {
                error = "the server " + serverText_ + " closed the TCP connection";
                return Io::Error;
            }
            stream_.insert(stream_.end(), buffer, buffer + n);
        }
    }

    Transport transport() const { return transport_; }
    bool icmpRefused() const { return icmpRefused_; }
    const std::string& serverText() const { return serverText_; }
    const std::string& localAddress() const { return localAddress_; }
    uint16_t localPort() const { return localPort_; }

private:
    Io connectError(int code, std::string& error) {
        if (code == ECONNREFUSED)
            error = "connection refused by " + serverText_ + " (" + transportName(transport_) + ")";
        else
            error = "cannot connect to " + serverText_ + " (" + transportName(transport_) +
                    "): " + errnoText(code);
        return Io::Error;
    }

    // Takes one STUN message off the TCP stream; skips ChannelData frames.
    bool extractFrame(std::vector<uint8_t>& message, std::string& error) {
        for (;;) {
            if (stream_.size() < 4)
                return false;
            std::size_t length = (std::size_t(stream_[2]) << 8) | stream_[3];
            std::size_t total = 0;
            if ((stream_[0] & 0xC0) == 0x00)
                total = 20 + length;
            else if ((stream_[0] & 0xC0) == 0x40)
                total = 4 + ((length + 3) & ~std::size_t(3));
            else {
                error = "the server " + serverText_ + " sent something that is not STUN";
                return false;
            }
            if (stream_.size() < total)
                return false;
            bool stun = (stream_[0] & 0xC0) == 0x00;
            if (stun)
                message.assign(stream_.begin(), stream_.begin() + long(total));
            stream_.erase(stream_.begin(), stream_.begin() + long(total));
            if (stun)
                return true;
        }
    }

    Socket socket_;
    Transport transport_ = Transport::Udp;
    std::string serverText_;
    std::string localAddress_;
    uint16_t localPort_ = 0;
    bool icmpRefused_ = false;
    std::vector<uint8_t> stream_;
};

// ---- transactions -------------------------------------------------------------------------

// Whether the message ends with a FINGERPRINT attribute (it must be the last one).
bool endsWithFingerprint(const std::vector<uint8_t>& buffer) {
    if (buffer.size() < 28)
        return false;
    const uint8_t* tail = buffer.data() + buffer.size() - 8;
    return tail[0] == 0x80 && tail[1] == 0x28 && tail[2] == 0 && tail[3] == 4;
}

struct StunAnswer {
    std::vector<uint8_t> buffer;
    StunMessage message{}; // points into buffer
    microseconds rtt{0};

    int errorCode() const {
        int code = 0;
        if (stun_message_get_class(&message) == STUN_ERROR &&
            stun_message_find_error(&message, &code) == STUN_MESSAGE_RETURN_SUCCESS)
            return code;
        return 0;
    }
    std::string reason() const {
        uint16_t length = 0;
        auto* value = static_cast<const uint8_t*>(
            stun_message_find(&message, STUN_ATTRIBUTE_ERROR_CODE, &length));
        if (value == nullptr || length < 4)
            return {};
        return trimReason(value + 4, length - 4);
    }
};

// Builds, sends and retransmits one request; returns its validated answer. Answers that fail
// stun_agent_validate (unknown transaction, bad MESSAGE-INTEGRITY or FINGERPRINT) are ignored.
class Transactor {
public:
    Transactor(StunAgent& agent, Channel& channel, const std::atomic<bool>* cancel)
        : agent_(agent), channel_(channel), cancel_(cancel) {}

    Io run(StunMessage& request, std::size_t length, Clock::time_point deadline, StunAnswer& answer,
           std::string& error) {
        StunTransactionId id;
        stun_message_id(&request, id);
        Io io = exchange(request.buffer, length, id, deadline, answer, error);
        stun_agent_forget_transaction(&agent_, id);
        if (probeSent_)
            stun_agent_forget_transaction(&agent_, probeId_);
        return io;
    }

    // Why the last matching answer was ignored, for the timeout message.
    const std::string& ignored() const { return ignored_; }

    // With this on, a request unanswered for kProbeAfter is joined by one Binding request, to
    // tell a server that drops the request (e.g. a STUN-only TURN server) from a dead one.
    void probeWithBinding() { probe_ = true; }
    bool bindingAnswered() const { return bindingAnswered_; }

private:
    Io exchange(const uint8_t* data, std::size_t length, const StunTransactionId& id,
                Clock::time_point deadline, StunAnswer& answer, std::string& error) {
        bool udp = channel_.transport() == Transport::Udp;
        Clock::duration rto = kInitialRto;
        Clock::time_point lastSend{}, firstSend{};
        Clock::time_point nextSend = Clock::now();
        bool sentOnce = false;
        std::vector<uint8_t> buffer;
        for (;;) {
            if (cancelled(cancel_))
                return Io::Cancelled;
            auto now = Clock::now();
            if (now >= deadline)
                return Io::Timeout;
            if (!sentOnce || (udp && now >= nextSend)) {
                auto sendTime = Clock::now(); // RTT includes the send itself
                Io io = channel_.send(data, length, deadline, cancel_, error);
                if (io != Io::Ok)
                    return io;
                lastSend = sendTime;
                nextSend = lastSend + rto;
                rto = std::min<Clock::duration>(rto * 2, kMaxRto);
                if (!sentOnce)
                    firstSend = lastSend;
                sentOnce = true;
            }
            if (probe_ && !probeSent_ && now - firstSend >= kProbeAfter) {
                Io io = sendProbe(deadline, error);
                if (io != Io::Ok)
                    return io;
            }
            auto until = udp ? std::min(nextSend, deadline) : deadline;
            if (probe_ && !probeSent_)
                until = std::min(until, firstSend + kProbeAfter);
            Io io = channel_.receive(buffer, until, cancel_, error);
            if (io == Io::Timeout)
                continue;
            if (io != Io::Ok)
                return io;
            auto arrived = Clock::now();
            if (accept(buffer, id, answer, error)) {
                answer.rtt = duration_cast<microseconds>(arrived - lastSend);
                return Io::Ok;
            }
            if (!error.empty())
                return Io::Error;
        }
    }

    Io sendProbe(Clock::time_point deadline, std::string& error) {
        StunMessage probe{};
        std::size_t length =
            stun_usage_bind_create(&agent_, &probe, probeBuffer_, sizeof probeBuffer_);
        probeSent_ = true;
        if (length == 0)
            return Io::Ok;
        stun_message_id(&probe, probeId_);
        return channel_.send(probeBuffer_, length, deadline, cancel_, error);
    }

    bool accept(std::vector<uint8_t>& buffer, const StunTransactionId& id, StunAnswer& answer,
                std::string& error) {
        // The agent demands FINGERPRINT whenever it sends one: check it only where present.
        auto savedFlags = agent_.usage_flags;
        if (!endsWithFingerprint(buffer))
            agent_.usage_flags =
                StunAgentUsageFlags(agent_.usage_flags & ~STUN_AGENT_USAGE_USE_FINGERPRINT);
        StunMessage message{};
        StunValidationStatus status =
            stun_agent_validate(&agent_, &message, buffer.data(), buffer.size(), nullptr, nullptr);
        agent_.usage_flags = savedFlags;

        // libnice's transaction id is 16 bytes: the magic cookie and the 96-bit id.
        bool ours = buffer.size() >= 4 + sizeof(StunTransactionId) &&
                    std::memcmp(buffer.data() + 4, id, sizeof(StunTransactionId)) == 0;
        if (probeSent_ && status == STUN_VALIDATION_SUCCESS && buffer.size() >= 20 &&
            std::memcmp(buffer.data() + 4, probeId_, sizeof(StunTransactionId)) == 0)
            bindingAnswered_ = true;
        if (!ours || status == STUN_VALIDATION_NOT_STUN ||
            status == STUN_VALIDATION_INCOMPLETE_STUN)
            return false;
        StunClass cls = stun_message_get_class(&message);
        if (cls != STUN_RESPONSE && cls != STUN_ERROR)
            return false;
        if (status == STUN_VALIDATION_UNKNOWN_ATTRIBUTE) {
            error = "the answer from " + channel_.serverText() +
                    " carries a comprehension-required attribute this client does not know";
            return false;
        }
        if (status != STUN_VALIDATION_SUCCESS) {
            int code = 0;
            std::string what = "an answer";
            if (stun_message_find_error(&message, &code) == STUN_MESSAGE_RETURN_SUCCESS)
                what = "a " + std::to_string(code) + " " + stunErrorName(code) + " answer";
            ignored_ = what + " that failed validation (" +
                       (status == STUN_VALIDATION_UNAUTHORIZED
                            ? std::string("missing or wrong MESSAGE-INTEGRITY")
                        : status == STUN_VALIDATION_BAD_REQUEST
                            ? std::string("bad FINGERPRINT or no magic cookie")
                            : std::string("status ") + std::to_string(int(status))) +
                       ") was ignored";
            return false;
        }
        answer.buffer = std::move(buffer);
        answer.message = message;
        answer.message.buffer = answer.buffer.data();
        answer.message.buffer_len = answer.buffer.size();
        buffer.clear();
        return true;
    }

    StunAgent& agent_;
    Channel& channel_;
    const std::atomic<bool>* cancel_;
    std::string ignored_;
    bool probe_ = false;
    bool probeSent_ = false;
    bool bindingAnswered_ = false;
    StunTransactionId probeId_{};
    uint8_t probeBuffer_[STUN_MAX_MESSAGE_SIZE_IPV4];
};

std::string timeoutText(const Channel& channel, milliseconds timeout, const std::string& ignored,
                        bool bindingAnswered = false) {
    std::string text = "no response from " + channel.serverText() + " (" +
                       transportName(channel.transport()) + ") within " +
                       std::to_string(timeout.count()) + " ms";
    if (bindingAnswered)
        return "no answer to Allocate from " + channel.serverText() + " (" +
               transportName(channel.transport()) + ") within " + std::to_string(timeout.count()) +
               " ms, though it answers STUN Binding requests: it does not offer TURN here "
               "(a STUN-only server?)";
    if (channel.icmpRefused())
        text += " (ICMP port unreachable came back: is anything listening there?)";
    if (!ignored.empty())
        text += "; " + ignored;
    return text;
}

std::string errorText(int code, const std::string& reason, const std::string& detail) {
    std::string text = std::to_string(code) + " " + stunErrorName(code);
    if (!detail.empty())
        text += ": " + detail;
    if (!reason.empty())
        text += " (server says: \"" + reason + "\")";
    return text;
}

uint8_t* bytes(const std::string& text) {
    return reinterpret_cast<uint8_t*>(const_cast<char*>(text.data()));
}

// ---- TURN client --------------------------------------------------------------------------

// One TURN client: one agent, one control connection, one allocation at most.
class TurnClient {
public:
    TurnClient(const ProbeEndpoint& server, const std::string& username,
               const std::string& password, milliseconds timeout, const std::atomic<bool>* cancel)
        : server_(server), username_(username), password_(password), timeout_(timeout),
          cancel_(cancel), agent_(std::make_unique<StunAgent>()) {
        stun_agent_init(agent_.get(), kKnownAttributes, STUN_COMPATIBILITY_RFC5389,
                        StunAgentUsageFlags(STUN_AGENT_USAGE_LONG_TERM_CREDENTIALS |
                                            STUN_AGENT_USAGE_USE_FINGERPRINT));
    }

    bool allocate(Clock::time_point deadline, TurnAllocateResult& result) {
        auto address = parseAddress(server_.host, server_.port);
        if (!address) {
            result.message = "\"" + server_.host + "\" is not an IP address";
            return false;
        }
        std::string error;
        Io io = channel_.open(*address, server_.transport, {}, deadline, cancel_, error);
        if (io != Io::Ok)
            return fail(io, error, result, {});
        result.localAddress = channel_.localAddress();
        result.localPort = channel_.localPort();

        Transactor transactor(*agent_, channel_, cancel_);
        transactor.probeWithBinding();
        StunMessage request{};
        uint8_t buffer[STUN_MAX_MESSAGE_SIZE_IPV6];
        // First Allocate without credentials: no key, so unauthenticated errors are accepted.
        std::size_t length =
            stun_usage_turn_create(agent_.get(), &request, buffer, sizeof buffer, nullptr,
                                   STUN_USAGE_TURN_REQUEST_PORT_NORMAL, -1, -1, nullptr, 0, nullptr,
                                   0, STUN_USAGE_TURN_COMPATIBILITY_RFC5766);
        StunAnswer answer;
        if (length == 0)
            return fail(Io::Error, "cannot build the Allocate request", result, {});
        io = transactor.run(request, length, deadline, answer, error);
        if (io != Io::Ok)
            return fail(io, error, result, transactor.ignored(), transactor.bindingAnswered());
        result.challengeRtt = answer.rtt;
        result.rtt = answer.rtt;

        int code = answer.errorCode();
        if (code == STUN_ERROR_UNAUTHORIZED) {
            result.authenticated = true;
            if (!saveChallenge(answer)) {
                result.stunError = code;
                result.reason = answer.reason();
                result.message = errorText(code, result.reason, "no REALM or NONCE to answer");
                return false;
            }
            if (username_.empty()) {
                result.stunError = code;
                result.reason = answer.reason();
                result.message =
                    errorText(code, result.reason, "the server needs a username and password");
                return false;
            }
            bool retried = false;
            for (;;) {
                StunMessage previous = challenge();
                length = stun_usage_turn_create(
                    agent_.get(), &request, buffer, sizeof buffer, &previous,
                    STUN_USAGE_TURN_REQUEST_PORT_NORMAL, -1, -1, bytes(username_), username_.size(),
                    bytes(password_), password_.size(), STUN_USAGE_TURN_COMPATIBILITY_RFC5766);
                if (length == 0)
                    return fail(Io::Error, "cannot build the Allocate request", result, {});
                io = transactor.run(request, length, deadline, answer, error);
                if (io != Io::Ok)
                    return fail(io, error, result, transactor.ignored());
                result.rtt = answer.rtt;
                code = answer.errorCode();
                if (code == STUN_ERROR_STALE_NONCE && !retried && saveChallenge(answer)) {
                    retried = true;
                    continue;
                }
                break;
            }
        }
        return finishAllocate(answer, result);
    }

    // Refresh with LIFETIME 0; retried once on 438.
    bool release(Clock::time_point deadline, std::string& error) {
        return authenticated(
            [&](StunMessage& request, uint8_t* buffer, std::size_t size) {
                StunMessage previous = challenge();
                return stun_usage_turn_create_refresh(
                    agent_.get(), &request, buffer, size, challenge_.empty() ? nullptr : &previous,
                    0, bytes(username_), username_.size(), bytes(password_), password_.size(),
                    STUN_USAGE_TURN_COMPATIBILITY_RFC5766);
            },
            "Refresh", deadline, error);
    }

    bool createPermission(const sockaddr_storage& peer, Clock::time_point deadline,
                          std::string& error) {
        return authenticated(
            [&](StunMessage& request, uint8_t* buffer, std::size_t size) {
                uint16_t realmLength = 0, nonceLength = 0;
                StunMessage previous = challenge();
                uint8_t* realm = nullptr;
                uint8_t* nonce = nullptr;
                if (!challenge_.empty()) {
                    realm = static_cast<uint8_t*>(const_cast<void*>(
                        stun_message_find(&previous, STUN_ATTRIBUTE_REALM, &realmLength)));
                    nonce = static_cast<uint8_t*>(const_cast<void*>(
                        stun_message_find(&previous, STUN_ATTRIBUTE_NONCE, &nonceLength)));
                }
                // stun_usage_turn_create_permission() is declared but not exported by libnice
                // 0.1.21: the same message from the agent's generic API.
                if (!stun_agent_init_request(agent_.get(), &request, buffer, size,
                                             STUN_CREATEPERMISSION) ||
                    stun_message_append_xor_addr(&request, STUN_ATTRIBUTE_XOR_PEER_ADDRESS, &peer,
                                                 sizeof peer) != STUN_MESSAGE_RETURN_SUCCESS)
                    return std::size_t(0);
                if (nonce != nullptr && realm != nullptr &&
                    (stun_message_append_bytes(&request, STUN_ATTRIBUTE_NONCE, nonce,
                                               nonceLength) != STUN_MESSAGE_RETURN_SUCCESS ||
                     stun_message_append_bytes(&request, STUN_ATTRIBUTE_REALM, realm,
                                               realmLength) != STUN_MESSAGE_RETURN_SUCCESS ||
                     stun_message_append_bytes(&request, STUN_ATTRIBUTE_USERNAME, username_.data(),
                                               username_.size()) != STUN_MESSAGE_RETURN_SUCCESS))
                    return std::size_t(0);
                return stun_agent_finish_message(agent_.get(), &request, bytes(password_),
                                                 password_.size());
            },
            "CreatePermission", deadline, error);
    }

    // A Send indication to `peer` carrying `payload` (indications carry no integrity).
    Io sendData(const sockaddr_storage& peer, const std::vector<uint8_t>& payload,
                Clock::time_point deadline, std::string& error) {
        StunMessage message{};
        uint8_t buffer[STUN_MAX_MESSAGE_SIZE_IPV6];
        if (!stun_agent_init_indication(agent_.get(), &message, buffer, sizeof buffer,
                                        STUN_IND_SEND) ||
            stun_message_append_xor_addr(&message, STUN_ATTRIBUTE_XOR_PEER_ADDRESS, &peer,
                                         sizeof peer) != STUN_MESSAGE_RETURN_SUCCESS ||
            stun_message_append_bytes(&message, STUN_ATTRIBUTE_DATA, payload.data(),
                                      payload.size()) != STUN_MESSAGE_RETURN_SUCCESS) {
            error = "cannot build the Send indication";
            return Io::Error;
        }
        std::size_t length = stun_agent_finish_message(agent_.get(), &message, nullptr, 0);
        if (length == 0) {
            error = "cannot build the Send indication";
            return Io::Error;
        }
        return channel_.send(buffer, length, deadline, cancel_, error);
    }

    // Waits for a Data indication whose DATA equals `payload`.
    Io awaitData(const std::vector<uint8_t>& payload, Clock::time_point until, std::string& error) {
        std::vector<uint8_t> buffer;
        for (;;) {
            Io io = channel_.receive(buffer, until, cancel_, error);
            if (io != Io::Ok)
                return io;
            StunMessage message{};
            auto savedFlags = agent_->usage_flags;
            if (!endsWithFingerprint(buffer))
                agent_->usage_flags =
                    StunAgentUsageFlags(agent_->usage_flags & ~STUN_AGENT_USAGE_USE_FINGERPRINT);
            StunValidationStatus status = stun_agent_validate(agent_.get(), &message, buffer.data(),
                                                              buffer.size(), nullptr, nullptr);
            agent_->usage_flags = savedFlags;
            if (status != STUN_VALIDATION_SUCCESS ||
                stun_message_get_class(&message) != STUN_INDICATION ||
                stun_message_get_method(&message) != STUN_IND_DATA)
                continue;
            uint16_t length = 0;
            auto* data = static_cast<const uint8_t*>(
                stun_message_find(&message, STUN_ATTRIBUTE_DATA, &length));
            if (data != nullptr && length == payload.size() &&
                std::equal(payload.begin(), payload.end(), data))
                return Io::Ok;
        }
    }

    const Channel& channel() const { return channel_; }
    const sockaddr_storage& relayed() const { return relayed_; }

private:
    using Builder = std::function<std::size_t(StunMessage&, uint8_t*, std::size_t)>;

    bool authenticated(const Builder& build, const char* what, Clock::time_point deadline,
                       std::string& error) {
        Transactor transactor(*agent_, channel_, cancel_);
        bool retried = false;
        for (;;) {
            StunMessage request{};
            uint8_t buffer[STUN_MAX_MESSAGE_SIZE_IPV6];
            std::size_t length = build(request, buffer, sizeof buffer);
            if (length == 0) {
                error = std::string("cannot build the ") + what + " request";
                return false;
            }
            StunAnswer answer;
            Io io = transactor.run(request, length, deadline, answer, error);
            if (io == Io::Timeout)
                error = timeoutText(channel_, timeout_, transactor.ignored());
            else if (io == Io::Cancelled)
                error = "cancelled";
            if (io != Io::Ok)
                return false;
            int code = answer.errorCode();
            if (code == 0)
                return true;
            if (code == STUN_ERROR_STALE_NONCE && !retried && saveChallenge(answer)) {
                retried = true;
                continue;
            }
            error = std::string(what) + " failed: " + errorText(code, answer.reason(), {});
            return false;
        }
    }

    bool finishAllocate(StunAnswer& answer, TurnAllocateResult& result) {
        sockaddr_storage relayed{}, mapped{}, alternate{};
        socklen_t relayedLength = sizeof relayed, mappedLength = sizeof mapped,
                  alternateLength = sizeof alternate;
        uint32_t bandwidth = 0, lifetime = 0;
        StunUsageTurnReturn ret = stun_usage_turn_process(
            &answer.message, &relayed, &relayedLength, &mapped, &mappedLength, &alternate,
            &alternateLength, &bandwidth, &lifetime, STUN_USAGE_TURN_COMPATIBILITY_RFC5766);
        int code = answer.errorCode();
        if (code != 0) {
            result.stunError = code;
            result.reason = answer.reason();
            std::string detail;
            if (ret == STUN_USAGE_TURN_RETURN_ALTERNATE_SERVER) {
                result.alternateServer = endpointText(alternate);
                detail = "the server redirects to " + result.alternateServer;
            } else if (code == STUN_ERROR_UNAUTHORIZED && result.authenticated) {
                detail = "wrong username or password";
            } else if (code == STUN_ERROR_STALE_NONCE) {
                detail = "the nonce went stale again after a retry";
            } else if (code == STUN_ERROR_ALLOCATION_MISMATCH && result.authenticated) {
                detail = "wrong realm, or this local port still holds an allocation";
            } else if (code == STUN_ERROR_UNSUPPORTED_FAMILY) {
                // libnice's Allocate carries no REQUESTED-ADDRESS-FAMILY: RFC 6156 means IPv4.
                detail = "the server has no IPv4 relay address (an IPv4 relay was asked for)";
            } else if (code == STUN_ERROR_WRONG_CREDENTIALS) {
                detail = "the credentials do not match the ones of the allocation";
            }
            result.message = errorText(code, result.reason, detail);
            return false;
        }
        if (ret != STUN_USAGE_TURN_RETURN_RELAY_SUCCESS &&
            ret != STUN_USAGE_TURN_RETURN_MAPPED_SUCCESS) {
            result.message = "the Allocate success response from " + channel_.serverText() +
                             " has no XOR-RELAYED-ADDRESS";
            return false;
        }
        result.ok = true;
        result.relayedAddress = hostOf(relayed);
        result.relayedPort = portOf(relayed);
        relayed_ = relayed;
        if (ret == STUN_USAGE_TURN_RETURN_MAPPED_SUCCESS) {
            result.mappedAddress = hostOf(mapped);
            result.mappedPort = portOf(mapped);
        }
        result.lifetime = std::chrono::seconds(lifetime);
        return true;
    }

    bool fail(Io io, const std::string& error, TurnAllocateResult& result,
              const std::string& ignored, bool bindingAnswered = false) {
        if (io == Io::Cancelled)
            result.message = "cancelled";
        else if (io == Io::Timeout && error.empty())
            result.message = timeoutText(channel_, timeout_, ignored, bindingAnswered);
        else
            result.message = error;
        return false;
    }

    // Keeps the REALM and NONCE carrier for later requests; the agent only reads it.
    bool saveChallenge(const StunAnswer& answer) {
        if (!stun_message_has_attribute(&answer.message, STUN_ATTRIBUTE_REALM) ||
            !stun_message_has_attribute(&answer.message, STUN_ATTRIBUTE_NONCE))
            return false;
        challenge_ = answer.buffer;
        return true;
    }

    StunMessage challenge() {
        StunMessage message{};
        message.agent = agent_.get();
        message.buffer = challenge_.data();
        message.buffer_len = challenge_.size();
        return message;
    }

    ProbeEndpoint server_;
    // The agent keeps pointers to password_ for its transactions: never modified.
    const std::string username_, password_;
    milliseconds timeout_;
    const std::atomic<bool>* cancel_;
    std::unique_ptr<StunAgent> agent_; // large (saved transaction table)
    Channel channel_;
    std::vector<uint8_t> challenge_;
    sockaddr_storage relayed_{};
};

} // namespace

std::string stunErrorName(int code) {
    switch (code) {
    case 300:
        return "Try Alternate";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 405:
        return "Mobility Forbidden";
    case 420:
        return "Unknown Attribute";
    case 437:
        return "Allocation Mismatch";
    case 438:
        return "Stale Nonce";
    case 440:
        return "Address Family not Supported";
    case 441:
        return "Wrong Credentials";
    case 442:
        return "Unsupported Transport Protocol";
    case 443:
        return "Peer Address Family Mismatch";
    case 446:
        return "Connection Already Exists";
    case 447:
        return "Connection Timeout or Failure";
    case 486:
        return "Allocation Quota Reached";
    case 487:
        return "Role Conflict";
    case 500:
        return "Server Error";
    case 508:
        return "Insufficient Capacity";
    default:
        return "Error";
    }
}

StunBindingResult stunBinding(const ProbeEndpoint& server, milliseconds timeout,
                              const std::atomic<bool>* cancel, const ProbeLocalBind& local) {
    StunBindingResult result;
    auto deadline = Clock::now() + timeout;
    auto address = parseAddress(server.host, server.port);
    if (!address) {
        result.error = "\"" + server.host + "\" is not an IP address";
        return result;
    }
    auto agent = std::make_unique<StunAgent>();
    stun_agent_init(agent.get(), kKnownAttributes, STUN_COMPATIBILITY_RFC5389,
                    STUN_AGENT_USAGE_USE_FINGERPRINT);
    Channel channel;
    std::string error;
    Io io = channel.open(*address, server.transport, local, deadline, cancel, error);
    if (io == Io::Ok) {
        result.localAddress = channel.localAddress();
        result.localPort = channel.localPort();
        StunMessage request{};
        uint8_t buffer[STUN_MAX_MESSAGE_SIZE_IPV6];
        std::size_t length = stun_usage_bind_create(agent.get(), &request, buffer, sizeof buffer);
        StunAnswer answer;
        Transactor transactor(*agent, channel, cancel);
        io = length == 0 ? Io::Error : transactor.run(request, length, deadline, answer, error);
        if (length == 0)
            error = "cannot build the Binding request";
        if (io == Io::Timeout)
            error = timeoutText(channel, timeout, transactor.ignored());
        if (io == Io::Ok) {
            result.rtt = answer.rtt;
            sockaddr_storage mapped{}, alternate{};
            socklen_t mappedLength = sizeof mapped, alternateLength = sizeof alternate;
            StunUsageBindReturn ret = stun_usage_bind_process(
                &answer.message, reinterpret_cast<sockaddr*>(&mapped), &mappedLength,
                reinterpret_cast<sockaddr*>(&alternate), &alternateLength);
            int code = answer.errorCode();
            if (ret == STUN_USAGE_BIND_RETURN_SUCCESS) {
                result.ok = true;
                result.mappedAddress = hostOf(mapped);
                result.mappedPort = portOf(mapped);
                sockaddr_storage other{};
                socklen_t otherLength = sizeof other;
                if (stun_message_find_addr(&answer.message, StunAttribute(kAttrOtherAddress),
                                           &other, &otherLength) == STUN_MESSAGE_RETURN_SUCCESS) {
                    result.otherAddress = hostOf(other);
                    result.otherPort = portOf(other);
                }
                otherLength = sizeof other;
                if (stun_message_find_addr(&answer.message, StunAttribute(kAttrResponseOrigin),
                                           &other, &otherLength) == STUN_MESSAGE_RETURN_SUCCESS) {
                    result.responseOrigin = hostOf(other);
                    result.responseOriginPort = portOf(other);
                }
            } else if (code != 0) {
                result.stunError = code;
                std::string detail;
                if (ret == STUN_USAGE_BIND_RETURN_ALTERNATE_SERVER)
                    detail = "the server redirects to " + endpointText(alternate);
                result.error = errorText(code, answer.reason(), detail);
            } else {
                result.error = "the Binding response from " + channel.serverText() +
                               " has no usable MAPPED-ADDRESS";
            }
            return result;
        }
    }
    result.error = io == Io::Cancelled ? "cancelled" : error;
    return result;
}

TurnAllocateResult turnAllocate(const ProbeEndpoint& server, const std::string& username,
                                const std::string& password, milliseconds timeout,
                                const std::atomic<bool>* cancel, bool release) {
    TurnAllocateResult result;
    auto deadline = Clock::now() + timeout;
    TurnClient client(server, username, password, timeout, cancel);
    if (!client.allocate(deadline, result) || !release)
        return result;
    result.released = client.release(deadline, result.releaseError);
    return result;
}

TurnRelayCheckResult turnRelayCheck(const ProbeEndpoint& server, const std::string& username,
                                    const std::string& password, milliseconds timeout,
                                    const std::atomic<bool>* cancel) {
    TurnRelayCheckResult result;
    auto deadline = Clock::now() + timeout;
    TurnClient first(server, username, password, timeout, cancel);
    TurnClient second(server, username, password, timeout, cancel);
    bool firstOk = first.allocate(deadline, result.first);
    bool secondOk = firstOk && second.allocate(deadline, result.second);

    auto finish = [&](std::string message) {
        result.message = std::move(message);
        result.ok = result.message.empty();
        std::string ignored;
        bool released = true;
        if (firstOk)
            released = first.release(deadline, ignored) && released;
        if (secondOk)
            released = second.release(deadline, ignored) && released;
        result.released = released;
        return result;
    };
    if (!firstOk)
        return finish("the first allocation failed: " + result.first.message);
    if (!secondOk)
        return finish("the second allocation failed: " + result.second.message);

    std::string error;
    if (!first.createPermission(second.relayed(), deadline, error))
        return finish("the first client's permission failed: " + error);
    if (!second.createPermission(first.relayed(), deadline, error))
        return finish("the second client's permission failed: " + error);

    std::random_device random;
    auto relay = [&](TurnClient& from, TurnClient& to, const sockaddr_storage& toRelayed,
                     microseconds& elapsed, const char* direction) -> std::string {
        std::vector<uint8_t> payload(64);
        for (auto& byte : payload)
            byte = static_cast<uint8_t>(random());
        // Indications are not retransmitted by the server: resend every 200 ms over UDP.
        for (;;) {
            auto sent = Clock::now();
            std::string why;
            Io io = from.sendData(toRelayed, payload, deadline, why);
            if (io == Io::Ok) {
                auto until = std::min(deadline, sent + milliseconds(200));
                if (from.channel().transport() == Transport::Tcp)
                    until = deadline;
                io = to.awaitData(payload, until, why);
                if (io == Io::Ok) {
                    elapsed = duration_cast<microseconds>(Clock::now() - sent);
                    return {};
                }
            }
            if (io == Io::Cancelled)
                return "cancelled";
            if (io == Io::Error)
                return why;
            if (Clock::now() >= deadline)
                return std::string("no data relayed ") + direction + " within " +
                       std::to_string(timeout.count()) + " ms";
        }
    };
    std::string failure = relay(first, second, second.relayed(), result.rtt1to2, "1 -> 2");
    if (failure.empty())
        failure = relay(second, first, first.relayed(), result.rtt2to1, "2 -> 1");
    return finish(failure);
}

} // namespace icepunch::impl
