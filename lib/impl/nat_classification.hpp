#pragma once

// RFC 5780 / RFC 3489 NAT classification from what the Binding tests saw: no sockets and no
// clock, so every verdict, and every answer from the wrong place, is unit-tested.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace icepunch::impl {

// RFC 4787 mapping and filtering behaviours.
enum class NatBehaviour { Unknown, EndpointIndependent, AddressDependent, AddressAndPortDependent };
// "endpoint-independent", "address-dependent", "address-and-port-dependent", "unknown".
std::string_view toString(NatBehaviour behaviour);

struct NatEndpoint {
    std::string host; // numeric, as inet_ntop writes it
    uint16_t port = 0;
    bool operator==(const NatEndpoint&) const = default;
};
// "192.0.2.1:3478" or "[2001:db8::1]:3478".
std::string toString(const NatEndpoint& endpoint);

// The Binding tests of RFC 5780 4.3 (mapping) and 4.4 (filtering).
enum class NatTest {
    Test1,         // mapping socket: Binding to the primary address
    Mapping2,      // mapping socket: to OTHER-ADDRESS's IP and the primary port
    Mapping3,      // mapping socket: to OTHER-ADDRESS
    FilteringBase, // a fresh socket's first Binding, to the primary address
    Filtering2,    // that socket: CHANGE-REQUEST change IP and port
    Filtering3,    // that socket: CHANGE-REQUEST change port
};

// Where the answer to `test` must come from: the address it went to, or for a CHANGE-REQUEST
// the one asked for (IP and port: OTHER-ADDRESS; port: the primary IP and OTHER-ADDRESS's port).
NatEndpoint expectedSource(NatTest test, const NatEndpoint& server, const NatEndpoint& other);

// One Binding transaction. When answers came from several places, the one from the expected
// source is kept, else the first one.
struct NatProbe {
    bool sent = false;
    bool answered = false; // a Binding success response arrived (from `source`)
    NatEndpoint source;
    NatEndpoint mapped; // XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS)
    NatEndpoint other;  // OTHER-ADDRESS, empty when absent
};

struct NatObservations {
    NatEndpoint server; // the primary address the tests were sent to
    NatEndpoint local;  // the mapping socket's source address and port towards the server
    NatProbe test1;
    NatProbe mapping2;
    NatProbe mapping3;
    // Each filtering test on a fresh socket (a fresh mapping) that only sent to the primary
    // address: its base Binding, then the CHANGE-REQUEST.
    NatProbe filtering2Base;
    NatProbe filtering2;
    NatProbe filtering3Base;
    NatProbe filtering3;
};

struct NatClassification {
    bool udpBlocked = false; // Test I was not answered
    bool behindNat = false;
    bool rfc5780 = false; // a usable OTHER-ADDRESS (in `other`)
    NatEndpoint other;
    NatBehaviour mapping = NatBehaviour::Unknown;
    NatBehaviour filtering = NatBehaviour::Unknown;
    // RFC 3489: "open internet", "full cone", "restricted cone", "port-restricted cone",
    // "symmetric", "symmetric UDP firewall", "UDP blocked", or "" when it cannot be told.
    std::string classicName;
    std::vector<std::string> notes; // why something is unknown, answers not counted
};

// An answer only counts when it came from expectedSource(); a test not sent, unanswered or
// answered from elsewhere leaves its behaviour unknown unless the other tests decide it.
NatClassification classifyNat(const NatObservations& observations);

} // namespace icepunch::impl
