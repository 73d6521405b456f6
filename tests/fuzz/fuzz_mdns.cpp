// libFuzzer target for the mDNS answer parser: never a crash or an overread; what it accepts is
// made of IP literals and does not change when bytes follow the message. The input read as a name,
// when valid, must give a query that parses back as no answers and, turned into a response with
// one A record, as exactly that record's address.
#include "impl/mdns_message.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

// The name the seed corpus answers for.
constexpr std::string_view kName = "1f4712db-ea17-4bcf-a596-105139dfd8bf.local";

bool isIpLiteral(const std::string& text) {
    unsigned char buffer[16];
    return inet_pton(AF_INET, text.c_str(), buffer) == 1 ||
           inet_pton(AF_INET6, text.c_str(), buffer) == 1;
}

void checkPacket(std::span<const uint8_t> packet) {
    auto answers = icepunch::impl::parseMdnsAnswers(packet, kName);
    if (!answers) {
        if (answers.error().code != icepunch::ErrorCode::Malformed) {
            std::abort();
        }
        return;
    }
    for (std::size_t i = 0; i < answers->size(); ++i) {
        const std::string& a = (*answers)[i];
        if (!isIpLiteral(a) || std::count(answers->begin(), answers->end(), a) != 1) {
            std::abort();
        }
    }
    std::vector<uint8_t> longer(packet.begin(), packet.end());
    longer.insert(longer.end(), {0xC0, 0x0C, 0x00});
    auto again = icepunch::impl::parseMdnsAnswers(longer, kName);
    if (!again || *again != *answers) {
        std::abort();
    }
}

void checkName(std::string_view name) {
    bool valid = icepunch::impl::validateMdnsName(name).ok();
    auto query = icepunch::impl::buildMdnsQuery(name, 0x1234);
    if (valid != !query.empty()) {
        std::abort();
    }
    if (!valid) {
        return;
    }
    auto none = icepunch::impl::parseMdnsAnswers(query, name);
    if (!none || !none->empty()) {
        std::abort();
    }
    std::vector<uint8_t> reply = query;
    reply[2] = 0x84; // QR, AA
    reply[7] = 1;    // one answer: the question's name, A 192.0.2.1
    reply.insert(reply.end(),
                 {0xC0, 0x0C, 0x00, 0x01, 0x80, 0x01, 0, 0, 0, 120, 0, 4, 192, 0, 2, 1});
    auto one = icepunch::impl::parseMdnsAnswers(reply, name);
    if (!one || one->size() != 1 || (*one)[0] != "192.0.2.1") {
        std::abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    checkPacket(std::span<const uint8_t>(data, size));
    if (size <= 300) {
        checkName(std::string_view(reinterpret_cast<const char*>(data), size));
    }
    return 0;
}
