#include "parse_util.hpp"

#include <arpa/inet.h>

#include <array>
#include <cstring>

namespace icepunch::detail {

namespace {

bool isWhitespace(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}
bool isDigit(char c) {
    return c >= '0' && c <= '9';
}
bool isAlpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// inet_pton needs a NUL-terminated string; anything longer than this is no IP literal anyway.
constexpr std::size_t kMaxLiteral = 63;

bool ptonOk(int family, std::string_view text) {
    if (text.empty() || text.size() > kMaxLiteral) {
        return false;
    }
    std::array<char, kMaxLiteral + 1> buffer{};
    std::memcpy(buffer.data(), text.data(), text.size());
    // A NUL inside the view would make inet_pton see a shorter string than the caller.
    if (std::strlen(buffer.data()) != text.size()) {
        return false;
    }
    unsigned char out[16];
    return inet_pton(family, buffer.data(), out) == 1;
}

bool isHostLabel(std::string_view label) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
        return false;
    }
    for (char c : label) {
        if (!isAlpha(c) && !isDigit(c) && c != '-') {
            return false;
        }
    }
    return true;
}

} // namespace

std::string_view trimWhitespace(std::string_view text) {
    while (!text.empty() && isWhitespace(text.front())) {
        text.remove_prefix(1);
    }
    while (!text.empty() && isWhitespace(text.back())) {
        text.remove_suffix(1);
    }
    return text;
}

std::vector<std::string_view> splitTokens(std::string_view text, char separator) {
    std::vector<std::string_view> tokens;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find(separator, pos);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        if (end > pos) {
            tokens.push_back(text.substr(pos, end - pos));
        }
        pos = end + 1;
    }
    return tokens;
}

std::optional<uint64_t> parseDecimal(std::string_view text, uint64_t min, uint64_t max,
                                     std::size_t maxDigits) {
    // maxDigits <= 19 keeps the accumulation below overflow of uint64_t.
    if (text.empty() || text.size() > maxDigits || maxDigits > 19) {
        return std::nullopt;
    }
    uint64_t value = 0;
    for (char c : text) {
        if (!isDigit(c)) {
            return std::nullopt;
        }
        value = value * 10 + static_cast<uint64_t>(c - '0');
    }
    if (value < min || value > max) {
        return std::nullopt;
    }
    return value;
}

bool isIceChar(char c) {
    return isAlpha(c) || isDigit(c) || c == '+' || c == '/';
}

std::optional<std::size_t> findNonIceChar(std::string_view text) {
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (!isIceChar(text[i])) {
            return i;
        }
    }
    return std::nullopt;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

std::string toLower(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        c = lower(c);
    }
    return out;
}

bool isIpv4Literal(std::string_view text) {
    return ptonOk(AF_INET, text);
}

bool isIpv6Literal(std::string_view text) {
    return ptonOk(AF_INET6, text);
}

bool looksLikeIpv4(std::string_view text) {
    if (text.empty()) {
        return false;
    }
    for (char c : text) {
        if (!isDigit(c) && c != '.') {
            return false;
        }
    }
    return true;
}

bool isHostname(std::string_view text) {
    if (text.empty() || text.size() > 253) {
        return false;
    }
    std::size_t pos = 0;
    while (true) {
        std::size_t dot = text.find('.', pos);
        std::string_view label =
            text.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
        if (!isHostLabel(label)) {
            return false;
        }
        if (dot == std::string_view::npos) {
            return true;
        }
        pos = dot + 1;
    }
}

std::optional<AddressKind> classifyAddress(std::string_view text) {
    if (text.find(':') != std::string_view::npos) {
        return isIpv6Literal(text) ? std::optional(AddressKind::Ipv6) : std::nullopt;
    }
    if (looksLikeIpv4(text)) {
        return isIpv4Literal(text) ? std::optional(AddressKind::Ipv4) : std::nullopt;
    }
    return isHostname(text) ? std::optional(AddressKind::Hostname) : std::nullopt;
}

std::string quote(std::string_view text) {
    constexpr std::size_t kMaxShown = 64;
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "\"";
    std::size_t shown = 0;
    for (char c : text) {
        if (shown++ == kMaxShown) {
            out += "...";
            break;
        }
        auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20 || byte >= 0x7f) {
            out += "\\x";
            out += kHex[byte >> 4];
            out += kHex[byte & 0xf];
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

} // namespace icepunch::detail
