#pragma once

// Blocking STUN/TURN client transactions ("usages") built on libnice's STUN library: for
// diagnostics (server checks, the turn-check tool) and readiness probes. Every call owns its
// StunAgent and sockets, so calls may run concurrently on worker threads; never call these on
// the GLib loop thread.

#include <icepunch/candidate.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace icepunch::impl {

// Where to send: a resolved IPv4 or IPv6 literal (no brackets), a port and a transport.
struct ProbeEndpoint {
    std::string host;
    uint16_t port = 0;
    Transport transport = Transport::Udp;
};

// Optional local address to bind before talking to the server ("" / 0: any).
struct ProbeLocalBind {
    std::string address;
    uint16_t port = 0;
};

struct StunBindingResult {
    bool ok = false;
    std::string error; // the failure in words when !ok
    int stunError = 0; // the server's error code, if it answered with one
    std::string mappedAddress;
    uint16_t mappedPort = 0;
    std::string localAddress; // the socket the request went out from
    uint16_t localPort = 0;
    std::chrono::microseconds rtt{0};
    // RFC 5780 OTHER-ADDRESS and RESPONSE-ORIGIN, empty / 0 when the server sent none.
    std::string otherAddress;
    uint16_t otherPort = 0;
    std::string responseOrigin;
    uint16_t responseOriginPort = 0;
};

// One Binding transaction (retransmitted over UDP) bounded by timeout; returns early with
// "cancelled" once *cancel becomes true.
StunBindingResult stunBinding(const ProbeEndpoint& server, std::chrono::milliseconds timeout,
                              const std::atomic<bool>* cancel = nullptr,
                              const ProbeLocalBind& local = {});

struct TurnAllocateResult {
    bool ok = false;
    int stunError = 0;   // the final STUN error code, 0 if none
    std::string reason;  // the server's reason phrase, trimmed
    std::string message; // the failure in words when !ok
    std::string relayedAddress;
    uint16_t relayedPort = 0;
    std::string mappedAddress;
    uint16_t mappedPort = 0;
    std::string localAddress;
    uint16_t localPort = 0;
    std::chrono::seconds lifetime{0};
    std::chrono::microseconds rtt{0};          // of the authenticated Allocate transaction
    std::chrono::microseconds challengeRtt{0}; // of the first (unauthenticated) Allocate
    std::string alternateServer;               // "ip:port" / "[ip6]:port" from a 300
    bool authenticated = false;                // whether the server asked for credentials
    bool released = false;                     // Refresh(LIFETIME=0) was answered
    std::string releaseError;                  // why not, when release was asked for
};

// Allocate with long-term credentials (401 challenge, one 438 retry); with release, frees the
// allocation again (Refresh, LIFETIME 0) within the same timeout. 300 is reported, not followed.
TurnAllocateResult turnAllocate(const ProbeEndpoint& server, const std::string& username,
                                const std::string& password, std::chrono::milliseconds timeout,
                                const std::atomic<bool>* cancel = nullptr, bool release = true);

struct TurnRelayCheckResult {
    bool ok = false;
    std::string message; // the failure in words when !ok
    TurnAllocateResult first, second;
    // One-way times through the relay on this host's clock: Send indication out of one client
    // to the Data indication at the other (summed, a round trip via the relay).
    std::chrono::microseconds rtt1to2{0};
    std::chrono::microseconds rtt2to1{0};
    bool released = false; // both allocations freed
};

// Two allocations from two local sockets, a permission each for the other's relayed address,
// then a payload relayed 1 -> 2 and 2 -> 1 (Send / Data indications). Over TCP the control
// connections are TCP; the relayed leg is always UDP.
TurnRelayCheckResult turnRelayCheck(const ProbeEndpoint& server, const std::string& username,
                                    const std::string& password, std::chrono::milliseconds timeout,
                                    const std::atomic<bool>* cancel = nullptr);

// "Try Alternate", "Unauthorized", ... for the STUN/TURN error codes; "Error" for unknown ones.
std::string stunErrorName(int code);

} // namespace icepunch::impl
