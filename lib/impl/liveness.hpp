#pragma once

// Whether a connected component still reaches its peer: consent (RFC 7675) and "disconnected"
// (WebRTC's ICE state), as a policy without sockets or timers of its own. The agent feeds it
// what it sees and asks it what to do; tests drive it on a fake clock.
//
// What it sees, given what libnice 0.1.21 exposes:
// - Consent. libnice sends a consent check on the selected pair every 4-6 s and, with its consent
//   freshness on, declares the component FAILED 10 s after the last answer (RFC 7675 says 30 s)
//   and refuses to send from then on. It exposes no answer times. So a libnice consent timeout
//   means "no answer for 10 s"; the agent re-arms the pair (nice_agent_set_selected_pair, which
//   also sends a check at once) and asks onConsentTimeout() whether 30 s have gone by without an
//   answer. A window of 10 s after a re-arm without another timeout proves an answer came.
//   Those timeouts only hint at the answers (one answered at once after a re-arm is invisible),
//   so while the peer's datagrams still come in, consent does not expire.
// - Traffic. Every datagram sent and received: a component that sends and hears nothing for
//   disconnectedAfter, once the peer has been heard at all, is disconnected. A side that only
//   sends (never heard from the peer) or only receives relies on consent alone.
#include <chrono>
#include <optional>
#include <string>

namespace icepunch::impl {

class Liveness {
public:
    using Clock = std::chrono::steady_clock;
    using TimePoint = Clock::time_point;

    struct Config {
        std::chrono::milliseconds disconnectedAfter{2000};
        std::chrono::milliseconds consentExpiry{30000}; // RFC 7675 section 5.1
        std::chrono::milliseconds libniceWindow{10000}; // libnice 0.1.21's consent timeout
        std::chrono::milliseconds windowSlack{1500};    // timer jitter around that window
    };

    enum class ConsentAction {
        Rearm,   // still within consentExpiry: re-arm the pair, keep sending
        Expired, // no answer for consentExpiry and no datagram lately: the path is gone
    };

    struct Verdict {
        bool disconnected = false;
        std::string reason; // why, when disconnected
    };

    Liveness() = default;
    explicit Liveness(Config config) : config_(config) {}

    // A pair was selected (first connection, or after a restart): everything starts fresh.
    void connected(TimePoint now);
    void sent(TimePoint now);
    void received(TimePoint now);
    ConsentAction consentTimeout(TimePoint now);
    // Where things stand now (also settles consent: a quiet window after a re-arm).
    Verdict evaluate(TimePoint now);

    // When the traffic rule could next find the component disconnected (the peer heard last at
    // T, we send: T + disconnectedAfter), so that it is checked then and not a tick later.
    std::optional<TimePoint> silenceDue() const;
    // Nothing for a timer to find: not sending lately and no re-armed consent window to settle.
    // Only a send (or a consent timeout) can change the verdict, so the agent stops ticking
    // until one comes: an idle call costs no wake-ups of its own.
    bool quiet(TimePoint now) const;
    // The last time consent is known to have been fresh.
    TimePoint consentFreshAt() const { return consentFresh_; }
    unsigned consentMisses() const { return misses_; }

private:
    Config config_;
    bool started_ = false;
    TimePoint consentFresh_{};
    std::optional<TimePoint> rearmedAt_;
    unsigned misses_ = 0;
    std::optional<TimePoint> lastSent_;
    std::optional<TimePoint> lastReceived_;
};

// When to restart ICE after trouble, when to try again, and when to give up. The agent starts a
// restart when begin() says so, reports attemptFailed() when the new session failed or did not
// connect within attemptTimeout, and recovered() when it did.
class Recovery {
public:
    using TimePoint = Liveness::TimePoint;

    struct Config {
        // The first attempt's; each next one gets twice the time, up to maxAttemptTimeout: a
        // slow path (a TCP relay on a loaded host: a check lost between the relays waits out
        // libnice's 2 s reliable timeout) must not be restarted, losing its progress, forever.
        std::chrono::milliseconds attemptTimeout{5000};
        std::chrono::milliseconds maxAttemptTimeout{20000};
        std::chrono::milliseconds firstBackoff{500};
        std::chrono::milliseconds maxBackoff{4000};
        std::chrono::milliseconds giveUpAfter{30000}; // AgentConfig::connectTimeout
    };

    struct Decision {
        bool giveUp = false;
        std::chrono::milliseconds retryAfter{0};
    };

    Recovery() = default;
    explicit Recovery(Config config) : config_(config) {}

    bool active() const { return active_; }
    // Trouble: true when a restart should start now (none is under way).
    bool begin(TimePoint now);
    Decision attemptFailed(TimePoint now);
    void recovered();
    TimePoint since() const { return since_; }
    unsigned attempts() const { return attempts_; }
    // How long the attempt starting at `now` may take to connect: growing per attempt, but not
    // past the give-up deadline (except that every attempt gets config().attemptTimeout).
    std::chrono::milliseconds attemptTimeout(TimePoint now) const;
    // Between attempts, the peer's new session came (its late answer to the attempt that failed,
    // or its own restart): when the attempt that answers it may start. At once, but not sooner
    // than firstBackoff after the last failure: when both sides' attempts fail at once (a TURN
    // server that is not back yet), answering each other's new sessions at once would restart
    // hundreds of times a second and lose each time the session the other side checks against.
    TimePoint answerAt(TimePoint now) const;
    const Config& config() const { return config_; }

private:
    Config config_;
    bool active_ = false;
    TimePoint since_{};
    TimePoint failedAt_{};
    unsigned attempts_ = 0;
};

} // namespace icepunch::impl
