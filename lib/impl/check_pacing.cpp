#include "impl/check_pacing.hpp"

#include <algorithm>

namespace icepunch::impl {

void CheckPacing::checksMayRun(TimePoint now) {
    fastUntil_ = std::max(fastUntil_, now + kLateChecks);
}

std::chrono::milliseconds CheckPacing::pacing(bool settled, TimePoint now) const {
    if (!settled || now < fastUntil_) {
        return configured_;
    }
    return std::max(configured_, kSettled);
}

std::optional<CheckPacing::TimePoint> CheckPacing::reviewAt(bool settled, TimePoint now) const {
    if (settled && now < fastUntil_) {
        return fastUntil_;
    }
    return std::nullopt;
}

} // namespace icepunch::impl
