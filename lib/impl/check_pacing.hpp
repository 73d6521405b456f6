#pragma once

// Ta (libnice's "stun-pacing-timer") for an agent: fast while checks may run, slow once every
// component settled. A policy without sockets or timers of its own; tests drive it on a fake
// clock.
//
// Why: libnice 0.1.21 paces its keepalive timer with Ta as well. After each consent check on a
// selected pair it ticks again Ta later and once more at its 4 s cap, so at 5 ms an idle agent's
// context wakes three times per check where one would do. With Ta at kSettled (6 s, the top of
// RFC 7675's 4-6 s interval) the tick after a check is the next check: one wake-up per check,
// sent every 6 s. 8,854 idle agents on one loop: 10.4 % of a core instead of 21.0 %. Ta also
// paces connectivity checks and times their retransmissions (max(500 ms, Ta x checks in
// flight)), so it is fast again before anything that may check: a new stream, a restart,
// recovery, a remote candidate or description, a component that is not settled.
#include <chrono>
#include <optional>

namespace icepunch::impl {

class CheckPacing {
public:
    using Clock = std::chrono::steady_clock;
    using TimePoint = Clock::time_point;
    static constexpr std::chrono::milliseconds kSettled{6000};
    // After a remote candidate or description comes to a settled agent: libnice checks the new
    // pairs without saying when it is done (the component stays READY), so Ta stays fast this
    // long: a check's five tries take 3.1 s at 100 ms RTO, doubling.
    static constexpr std::chrono::milliseconds kLateChecks{4000};

    explicit CheckPacing(std::chrono::milliseconds configured) : configured_(configured) {}

    // Checks may start now on a stream that is otherwise settled.
    void checksMayRun(TimePoint now);
    // Ta now: `settled` says every stream is connected and READY, with nothing pending.
    std::chrono::milliseconds pacing(bool settled, TimePoint now) const;
    // When pacing() may change with `settled` as it is: the end of a late-checks window.
    std::optional<TimePoint> reviewAt(bool settled, TimePoint now) const;

private:
    std::chrono::milliseconds configured_;
    TimePoint fastUntil_{};
};

} // namespace icepunch::impl
