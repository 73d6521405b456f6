#pragma once

// RFC 5780 NAT behaviour discovery over UDP (mapping, filtering, hairpinning, binding lifetime)
// with libnice's STUN library. Blocking; every call owns its sockets. Not for the GLib loop thread.

#include "impl/nat_classification.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace icepunch::impl {

struct NatDiscoveryOptions {
    std::string serverAddress; // IPv4 or IPv6 literal of the STUN server (UDP)
    uint16_t serverPort = 3478;
    std::string localAddress;                    // "" binds the wildcard address
    std::chrono::milliseconds testTimeout{2000}; // per test: an unanswered test counts as filtered
    bool hairpinning = true;
    bool lifetime = false;
    std::chrono::seconds lifetimeMax{60}; // the binary search never waits longer than this
};

struct NatDiscoveryResult {
    bool ok = false;   // Test I was answered
    std::string error; // why not, in words
    bool udpBlocked = false;
    std::string localAddress; // the source address towards the server
    uint16_t localPort = 0;
    std::string mappedAddress;
    uint16_t mappedPort = 0;
    bool behindNat = false;
    std::chrono::microseconds rtt{0};
    bool rfc5780 = false; // the server sent a usable OTHER-ADDRESS from the address asked
    std::string otherAddress;
    uint16_t otherPort = 0;
    NatBehaviour mapping = NatBehaviour::Unknown;
    NatBehaviour filtering = NatBehaviour::Unknown;
    std::optional<bool> hairpinning;
    // RFC 3489: "open internet", "full cone", "restricted cone", "port-restricted cone",
    // "symmetric", "symmetric UDP firewall", "UDP blocked", or "" when it cannot be told.
    std::string classicName;
    // Binding lifetime: alive after lifetimeAlive, gone after lifetimeGone (unset: not seen).
    std::optional<std::chrono::seconds> lifetimeAlive;
    std::optional<std::chrono::seconds> lifetimeGone;
    std::string lifetimeNote; // why the lifetime is unknown, when it is
    std::vector<std::string> notes;
};

NatDiscoveryResult discoverNat(const NatDiscoveryOptions& options);

} // namespace icepunch::impl
