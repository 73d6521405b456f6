#include "impl/callback_set.hpp"

namespace icepunch::impl {

using callback_set::forEach;
using callback_set::FunctionOf;
using callback_set::kMembers;

CallbackSet::CallbackSet(Callbacks&& callbacks) {
    size_t set = 0;
    forEach([&](auto i) { set += static_cast<bool>(callbacks.*std::get<i>(kMembers)); });
    if (set) {
        slots_ = std::make_unique<Slot[]>(set);
    }
    forEach([&](auto i) {
        constexpr auto member = std::get<i>(kMembers);
        place_[i] = kUnset;
        if (auto& fn = callbacks.*member) {
            using Function = FunctionOf<member>;
            new (slots_[stored_].bytes) Function(std::move(fn));
            place_[i] = stored_++;
        }
    });
}

CallbackSet::~CallbackSet() {
    forEach([&](auto i) {
        constexpr auto member = std::get<i>(kMembers);
        if (place_[i] != kUnset) {
            using Function = FunctionOf<member>;
            std::destroy_at(std::launder(reinterpret_cast<Function*>(slots_[place_[i]].bytes)));
        }
    });
}

} // namespace icepunch::impl
