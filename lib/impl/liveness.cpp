#include "impl/liveness.hpp"

#include <algorithm>

namespace icepunch::impl {

namespace {

long long msBetween(Liveness::TimePoint from, Liveness::TimePoint to) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

} // namespace

void Liveness::connected(TimePoint now) {
    started_ = true;
    consentFresh_ = now;
    rearmedAt_.reset();
    misses_ = 0;
    // Silence counts from this pair on, not from before it.
    if (lastReceived_) {
        lastReceived_ = now;
    }
    lastSent_.reset();
}

void Liveness::sent(TimePoint now) {
    lastSent_ = now;
}

void Liveness::received(TimePoint now) {
    lastReceived_ = now;
}

Liveness::ConsentAction Liveness::consentTimeout(TimePoint now) {
    bool inStreak = rearmedAt_ && now - *rearmedAt_ <= config_.libniceWindow + config_.windowSlack;
    if (!inStreak) {
        // libnice times out libniceWindow after the last answer: that is when consent was fresh.
        consentFresh_ = std::max(consentFresh_, now - config_.libniceWindow);
        misses_ = 0;
    }
    ++misses_;
    // What libnice's timeouts say of the answers is a guess: a re-arm's first check answered at
    // once and the next two lost reads as a streak. Datagrams from the peer coming in now are
    // no guess: the path works both ways, so a lossy path's unanswered checks keep the pair (as
    // evaluate() does); if they stop, the next timeout expires it.
    bool heardLately = lastReceived_ && now - *lastReceived_ < config_.disconnectedAfter;
    if (now - consentFresh_ >= config_.consentExpiry - config_.windowSlack && !heardLately) {
        rearmedAt_.reset();
        return ConsentAction::Expired;
    }
    rearmedAt_ = now;
    return ConsentAction::Rearm;
}

std::optional<Liveness::TimePoint> Liveness::silenceDue() const {
    if (!lastReceived_) {
        return std::nullopt;
    }
    return *lastReceived_ + config_.disconnectedAfter;
}

bool Liveness::quiet(TimePoint now) const {
    if (!started_) {
        return true;
    }
    if (rearmedAt_) {
        return false;
    }
    return !lastSent_ || now - *lastSent_ >= config_.disconnectedAfter;
}

Liveness::Verdict Liveness::evaluate(TimePoint now) {
    if (!started_) {
        return {};
    }
    if (rearmedAt_ && now - *rearmedAt_ > config_.libniceWindow + config_.windowSlack) {
        // A whole window after the re-arm without another timeout: an answer came.
        consentFresh_ = std::max(consentFresh_, *rearmedAt_);
        rearmedAt_.reset();
        misses_ = 0;
    }
    bool heardLately = lastReceived_ && now - *lastReceived_ < config_.disconnectedAfter;
    if (rearmedAt_ && !heardLately) {
        // Consent checks unanswered and no datagram either. Checks unanswered while datagrams
        // come in is a lossy path, not a lost one: consent is still fresh enough.
        return {true, "no answer to consent checks for " +
                          std::to_string(msBetween(consentFresh_, now) / 1000) +
                          " s and no datagram from the peer"};
    }
    if (lastReceived_ && lastSent_ && *lastSent_ > *lastReceived_ &&
        now - *lastReceived_ >= config_.disconnectedAfter &&
        now - *lastSent_ < config_.disconnectedAfter) {
        return {true, "sending and heard nothing from the peer for " +
                          std::to_string(msBetween(*lastReceived_, now)) + " ms"};
    }
    return {};
}

bool Recovery::begin(TimePoint now) {
    if (active_) {
        return false;
    }
    active_ = true;
    since_ = now;
    attempts_ = 1;
    return true;
}

Recovery::Decision Recovery::attemptFailed(TimePoint now) {
    if (!active_) {
        return {true, {}};
    }
    auto backoff = config_.firstBackoff;
    for (unsigned i = 1; i < attempts_ && backoff < config_.maxBackoff; ++i) {
        backoff *= 2;
    }
    backoff = std::min(backoff, config_.maxBackoff);
    // Another attempt only if it can still finish before the deadline.
    if (now + backoff >= since_ + config_.giveUpAfter) {
        active_ = false;
        return {true, {}};
    }
    ++attempts_;
    failedAt_ = now;
    return {false, backoff};
}

Recovery::TimePoint Recovery::answerAt(TimePoint now) const {
    return std::max(now, failedAt_ + config_.firstBackoff);
}

std::chrono::milliseconds Recovery::attemptTimeout(TimePoint now) const {
    auto timeout = config_.attemptTimeout;
    for (unsigned i = 1; i < attempts_ && timeout < config_.maxAttemptTimeout; ++i) {
        timeout *= 2;
    }
    timeout = std::min(timeout, std::max(config_.attemptTimeout, config_.maxAttemptTimeout));
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(since_ + config_.giveUpAfter - now);
    return std::max(config_.attemptTimeout, std::min(timeout, left));
}

void Recovery::recovered() {
    active_ = false;
    attempts_ = 0;
}

} // namespace icepunch::impl
