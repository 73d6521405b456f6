// libFuzzer target: any accepted URI must survive toString() and parse again unchanged.
#include <icepunch/server_uri.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto first = icepunch::ServerUri::parse(text);
    if (!first) {
        return 0;
    }
    auto second = icepunch::ServerUri::parse(first->toString());
    if (!second || *second != *first) {
        std::abort();
    }
    return 0;
}
