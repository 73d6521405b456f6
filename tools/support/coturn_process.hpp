#pragma once

#include <icepunch/result.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace icepunch::support {

// How to run one coturn (4.6.1) for a test, the demo or a benchmark. Ports are always picked
// by the helper; everything else has a test-friendly default.
struct CoturnOptions {
    std::string binary = "turnserver";       // looked up in PATH unless it contains '/'
    std::string listenAddress = "127.0.0.1"; // IPv4 or IPv6 literal ("::1")
    std::string altListenAddress; // if set (same family): RFC 5780 with a second -L and alt port
    bool stunOnly = false;
    std::string user, password; // long-term credentials (-a -u user:password)
    std::string realm = "icepunch.test";
    std::string staticAuthSecret; // TURN REST API secret; cannot be combined with user
    bool tls = false;             // TLS+DTLS listener; certificate generated if certFile is empty
    std::string certFile, keyFile;
    std::vector<std::string> alternateServers; // "ip:port", answered with 300 on Allocate
    std::optional<int> maxAllocateLifetime, permissionLifetime, channelLifetime;
    std::optional<int> userQuota, totalQuota;
    bool verbose = false; // -v: coturn logs every session, which liveAllocations() counts
    std::vector<std::string> extraArgs; // appended verbatim
    std::chrono::milliseconds startTimeout{5000};
    // The UDP/TCP listening port; unset: a free one. Set to an earlier process's port() to
    // restart "the same server" once that one has stopped.
    std::optional<uint16_t> port;
};

class CoturnProcess {
public:
    // Spawns turnserver and returns once it answers a STUN Binding request (and accepts TCP
    // on its TLS port when tls is set); on failure the error carries the tail of its log.
    static Result<std::unique_ptr<CoturnProcess>> start(const CoturnOptions& options);

    ~CoturnProcess(); // stop() and remove the temporary directory

    CoturnProcess(const CoturnProcess&) = delete;
    CoturnProcess& operator=(const CoturnProcess&) = delete;

    // SIGTERM to the spawned PID, wait up to 3 s, then SIGKILL; idempotent.
    void stop();
    // The same server again: stops it (a server crash or restart as clients see it: every
    // allocation and TCP connection gone) and starts a new turnserver on the same ports and
    // arguments. The ports stay locked against other helpers meanwhile, so no coturn beside
    // (SO_REUSEPORT) can take one and split the flows. Returns once it answers again. With
    // `down`, the server stays away that long first (a host that takes seconds to come back).
    Status restart(std::chrono::milliseconds down = {});
    bool running() const;

    const std::string& listenAddress() const { return options_.listenAddress; }
    uint16_t port() const { return port_; }       // UDP and TCP
    uint16_t tlsPort() const { return tlsPort_; } // TLS and DTLS; 0 unless tls
    uint16_t altPort() const { return altPort_; } // 0 unless altListenAddress is set
    uint16_t minRelayPort() const { return minRelayPort_; }
    uint16_t maxRelayPort() const { return maxRelayPort_; }
    int pid() const { return pid_; }
    const std::string& caFile() const { return caFile_; } // empty unless a cert was generated
    const std::string& directory() const { return dir_; }
    const std::vector<std::string>& arguments() const { return args_; }
    std::chrono::milliseconds startupTime() const { return startupTime_; } // spawn to ready

    // e.g. "turn:127.0.0.1:40123?transport=tcp" or "stuns:[::1]:40125"; the secure schemes
    // ("turns", "stuns") use tlsPort().
    std::string uri(std::string_view scheme = "turn", std::string_view transport = "") const;

    // coturn's stdout and stderr captured so far (every run, after restart()), and its last
    // lines (for failure messages).
    std::string log() const;
    std::string logTail(std::size_t lines = 20) const;
    // Allocations made and not yet deleted, from the current run's log ("new, realm=" minus
    // "delete: realm="); needs CoturnOptions::verbose.
    int liveAllocations() const;

private:
    static Result<std::unique_ptr<CoturnProcess>> startOnce(const CoturnOptions& options);
    Status launch();                // spawn turnserver with args_ and wait until it answers
    std::string currentLog() const; // the output of the turnserver running now (or last)
    void stopProcess();             // stop() without releasing the port locks
    struct State;
    CoturnProcess();

    CoturnOptions options_;
    std::string dir_;
    std::string caFile_;
    std::vector<std::string> args_;
    uint16_t port_ = 0, tlsPort_ = 0, altPort_ = 0;
    uint16_t minRelayPort_ = 0, maxRelayPort_ = 0;
    int pid_ = -1;
    std::chrono::milliseconds startupTime_{0};
    std::unique_ptr<State> state_; // reader thread, log buffer, port locks
};

} // namespace icepunch::support
