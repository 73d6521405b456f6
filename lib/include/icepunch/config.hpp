#pragma once

#include <icepunch/export.hpp>
#include <icepunch/security.hpp>
#include <icepunch/server_uri.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace icepunch {

enum class Role { Controlling, Controlled };
enum class Nomination { Regular, Aggressive };
// All: host, srflx and relay candidates together. RelayOnly: only relayed candidates are used.
enum class CandidatePolicy { All, RelayOnly };

ICEPUNCH_EXPORT std::ostream& operator<<(std::ostream& os, Role role);

// Username and password for a TURN server (RFC 5389 long-term credentials).
struct TurnCredentials {
    std::string username;
    std::string password;
};

// Time-limited TURN credentials per the TURN REST convention (as coturn's --use-auth-secret):
// username "<expiry unix time>:<user>", password base64(HMAC-SHA1(secret, username)).
ICEPUNCH_EXPORT TurnCredentials makeRestCredentials(std::string_view secret, std::string_view user,
                                                    int64_t expiryUnixTime);

struct TlsOptions {
    // PEM file of trusted CAs; empty means the system store.
    std::string caFile;
    // Name to send as SNI and to verify the certificate against; empty means the URI's host.
    std::string serverName;
    // Optional pin: hex SHA-256 of the server certificate's SubjectPublicKeyInfo. When set, the
    // server must present that key (in addition to passing verification unless disabled).
    std::string pinSha256;
    // Accept a certificate that fails verification (test setups only).
    bool allowUntrusted = false;
};

struct ICEPUNCH_EXPORT TurnServer {
    ServerUri uri; // turn: or turns:
    // Long-term credentials, or a REST shared secret from which they are derived at gather time.
    std::string username;
    std::string password;
    std::string sharedSecret;
    std::string restUser = "icepunch";
    std::chrono::seconds restLifetime{std::chrono::hours(24)};
    TlsOptions tls; // for turns:

    // Credentials to present: the fixed ones, or REST ones derived from the secret now.
    TurnCredentials credentials() const;
};

// A function that runs a callback somewhere else (e.g. the app's own thread); the default runs
// callbacks on the event loop's thread.
using Executor = std::function<void(std::function<void()>)>;

struct AgentConfig {
    Role role = Role::Controlling;
    std::vector<ServerUri> stunServers;
    std::vector<TurnServer> turnServers;
    bool trickle = true;
    Nomination nomination = Nomination::Aggressive;
    bool consentFreshness = true; // RFC 7675
    CandidatePolicy policy = CandidatePolicy::All;
    // Local port range for host candidates; 0/0 means any (chosen by the OS).
    uint16_t portMin = 0;
    uint16_t portMax = 0;
    // Interface names ("eth0") or local IP addresses to gather on. Empty: every non-loopback
    // interface. Loopback (e.g. "127.0.0.1", "lo") is used only when listed here.
    std::vector<std::string> interfaces;
    bool ipv4 = true;
    bool ipv6 = true;
    bool udp = true;
    bool tcp = false;  // RFC 6544 ICE-TCP host candidates
    bool upnp = false; // off: libnice's UPnP probe delays gathering by its timeout
    // Resolve a remote host candidate named "<uuid>.local" (RFC 8828, what browsers send) with a
    // one-shot multicast DNS query (RFC 6762, 224.0.0.251:5353) of at most 1.5 s; off: such
    // candidates are skipped and reported.
    bool resolveMdns = true;
    // Ta (RFC 8445 14.2): the interval between STUN transactions the agent starts, gathering
    // included (libnice paces its server requests with it too). libnice's default is 20 ms;
    // 5 ms is the RFC's floor. Two `icepunch connect` processes in the NAT lab's port-restricted
    // cell, usual configuration: median 63 ms from start to connected at 10 ms, 46.5 ms at 5 ms
    // (the srflx request and the first check on a trickled pair wait one Ta less).
    std::chrono::milliseconds checkPacing{5};
    // First retransmission timeout (RTO, doubling after) of the agent's own STUN transactions
    // while gathering: Binding requests to STUN servers, TURN Allocate and Refresh. libnice
    // 0.1.21 times connectivity checks on its own (max(500 ms, Ta x checks in flight)).
    std::chrono::milliseconds stunTimeout{100};
    // Retransmissions (Rc) of every STUN transaction, gathering and connectivity checks alike.
    // libnice's default of 3 gives up on a check after 3.5 s; under 20 % loss per NAT a check's
    // round trip fails about 6 times in 10, so 3 tries lose a pair one time in 5 and sometimes
    // every pair. 5 tries (a check fails after 15.5 s, a gathering transaction after 3.1 s)
    // connect every run of the NAT lab's loss cell.
    unsigned stunRetransmissions = 5;
    // A server that has not answered by then is reported as failed and gathering completes.
    std::chrono::milliseconds gatherTimeout{5000};
    // Checks that have not connected by then end in a Failed state; after connecting, how long
    // recovery (autoRestart) keeps trying before the component fails.
    std::chrono::milliseconds connectTimeout{30000};
    // A connected component that sends and hears nothing from its peer for this long (once the
    // peer has been heard at all), or whose consent checks go unanswered while nothing else
    // arrives either, is Disconnected; it is Connected again when traffic returns.
    std::chrono::milliseconds disconnectedTimeout{2000};
    // Restart ICE (RFC 8445 section 9) by itself when a connected component is disconnected or
    // its consent expires (RFC 7675: 30 s without an answer): new credentials, new candidates
    // from every local address there is now (new TURN allocations too), while the old pair
    // carries data until the new one is selected. Callbacks::restarted says why; the app sends
    // the new localDescription() to the peer, as for Agent::restart().
    bool autoRestart = true;
    // Empty: callbacks run on the event loop thread. Any executor, also a pool of threads:
    // callbacks of one agent never run concurrently and always in order.
    Executor executor;
    // Datagrams received and not yet handed to Callbacks::received; past this many, new ones are
    // dropped and counted (PairStats::packetsDropped) rather than held without bound.
    size_t receiveQueueLimit = 4096;
    // DTLS over every component (off by default; see SecurityConfig for why). When on,
    // localDescription() carries a=fingerprint and a=setup, send() and received carry
    // encrypted datagrams only (up to 16,384 bytes each), and Callbacks::secureConnected says
    // when data can flow.
    SecurityConfig security;
};

} // namespace icepunch
