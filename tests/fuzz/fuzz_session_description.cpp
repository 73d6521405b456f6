// libFuzzer target: any accepted description must survive toString() and parse again unchanged
// (but for the skipped lines, which toString() leaves out by design).
#include <icepunch/session_description.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto first = icepunch::SessionDescription::parse(text);
    if (!first) {
        return 0;
    }
    first->skipped.clear();
    auto second = icepunch::SessionDescription::parse(first->toString());
    if (!second || *second != *first) {
        std::abort();
    }
    return 0;
}
