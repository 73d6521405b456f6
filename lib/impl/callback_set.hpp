#pragma once

// The app's Agent::Callbacks, keeping only those it set. All thirteen std::functions take 416
// bytes in every agent, apps set about five, and most of an idle agent's own memory is
// bookkeeping of this kind (10,000 idle agents are the target).
#include <icepunch/agent.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <tuple>
#include <type_traits>
#include <utility>

namespace icepunch::impl {

namespace callback_set {

using Callbacks = Agent::Callbacks;

inline constexpr auto kMembers =
    std::make_tuple(&Callbacks::localCandidate, &Callbacks::gatheringDone, &Callbacks::serverStatus,
                    &Callbacks::stateChanged, &Callbacks::selectedPairChanged, &Callbacks::failed,
                    &Callbacks::received, &Callbacks::remoteCandidateSkipped, &Callbacks::restarted,
                    &Callbacks::disconnected, &Callbacks::secureConnected, &Callbacks::secureFailed,
                    &Callbacks::receivedMedia);
inline constexpr size_t kCount = std::tuple_size_v<decltype(kMembers)>;

template <auto Member>
using FunctionOf = std::remove_cvref_t<decltype(std::declval<Callbacks&>().*Member)>;

// Every std::function has one size and alignment, whatever its signature: one slot fits any.
struct alignas(std::function<void()>) Slot {
    std::byte bytes[sizeof(std::function<void()>)];
};
template <size_t... I> constexpr bool everyFunctionFitsASlot(std::index_sequence<I...>) {
    return ((sizeof(FunctionOf<std::get<I>(kMembers)>) == sizeof(Slot) &&
             alignof(FunctionOf<std::get<I>(kMembers)>) <= alignof(Slot)) &&
            ...);
}
// The standard does not promise one size for every std::function: checked, not assumed.
static_assert(everyFunctionFitsASlot(std::make_index_sequence<kCount>()));
// A new member of Callbacks that is not in kMembers would be dropped silently.
static_assert(sizeof(Callbacks) == kCount * sizeof(Slot));

template <auto Member, size_t I> constexpr bool matches() {
    using Entry = std::remove_cv_t<std::tuple_element_t<I, std::remove_cv_t<decltype(kMembers)>>>;
    if constexpr (std::is_same_v<decltype(Member), Entry>) {
        return Member == std::get<I>(kMembers);
    } else {
        return false;
    }
}

template <auto Member> constexpr size_t indexOf() {
    size_t found = kCount;
    [&]<size_t... I>(std::index_sequence<I...>) {
        ((found = matches<Member, I>() ? I : found), ...);
    }
    (std::make_index_sequence<kCount>());
    return found;
}

// Calls fn(std::integral_constant<size_t, I>) for each member.
template <typename Fn> void forEach(Fn&& fn) {
    [&]<size_t... I>(std::index_sequence<I...>) {
        (fn(std::integral_constant<size_t, I>{}), ...);
    }
    (std::make_index_sequence<kCount>());
}

} // namespace callback_set

class CallbackSet {
public:
    using Callbacks = Agent::Callbacks;

    explicit CallbackSet(Callbacks&& callbacks);
    ~CallbackSet();
    CallbackSet(const CallbackSet&) = delete;
    CallbackSet& operator=(const CallbackSet&) = delete;

    // The callback the member names: an empty function when the app did not set it.
    template <auto Member> const auto& get() const {
        using Function = callback_set::FunctionOf<Member>;
        constexpr size_t i = callback_set::indexOf<Member>();
        static_assert(i < kCount, "a member of Agent::Callbacks missing from kMembers");
        if (place_[i] == kUnset) {
            static const Function none;
            return none;
        }
        return *std::launder(reinterpret_cast<const Function*>(slots_[place_[i]].bytes));
    }

    const auto& localCandidate() const { return get<&Callbacks::localCandidate>(); }
    const auto& gatheringDone() const { return get<&Callbacks::gatheringDone>(); }
    const auto& serverStatus() const { return get<&Callbacks::serverStatus>(); }
    const auto& stateChanged() const { return get<&Callbacks::stateChanged>(); }
    const auto& selectedPairChanged() const { return get<&Callbacks::selectedPairChanged>(); }
    const auto& failed() const { return get<&Callbacks::failed>(); }
    const auto& received() const { return get<&Callbacks::received>(); }
    const auto& remoteCandidateSkipped() const { return get<&Callbacks::remoteCandidateSkipped>(); }
    const auto& restarted() const { return get<&Callbacks::restarted>(); }
    const auto& disconnected() const { return get<&Callbacks::disconnected>(); }
    const auto& secureConnected() const { return get<&Callbacks::secureConnected>(); }
    const auto& secureFailed() const { return get<&Callbacks::secureFailed>(); }
    const auto& receivedMedia() const { return get<&Callbacks::receivedMedia>(); }

    size_t stored() const { return stored_; } // how many the app set

private:
    using Slot = callback_set::Slot;
    static constexpr size_t kCount = callback_set::kCount;
    static constexpr uint8_t kUnset = 0xff;

    std::unique_ptr<Slot[]> slots_;
    std::array<uint8_t, kCount> place_{}; // the slot of each member, or kUnset
    uint8_t stored_ = 0;
};

} // namespace icepunch::impl
