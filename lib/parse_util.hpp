#pragma once

// Internal helpers shared by the value-type parsers; not installed, no GLib/libnice/OpenSSL.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace icepunch::detail {

// Strips spaces, tabs, CR and LF from both ends.
std::string_view trimWhitespace(std::string_view text);

// Splits on `separator`, dropping empty pieces (so runs of separators count as one).
std::vector<std::string_view> splitTokens(std::string_view text, char separator = ' ');

// Parses 1..maxDigits ASCII digits (no sign, no spaces) into [min, max]; nullopt otherwise.
std::optional<uint64_t> parseDecimal(std::string_view text, uint64_t min, uint64_t max,
                                     std::size_t maxDigits);

// RFC 8839 ice-char: ALPHA / DIGIT / "+" / "/".
bool isIceChar(char c);
// Index of the first character that is not an ice-char, or nullopt if all are.
std::optional<std::size_t> findNonIceChar(std::string_view text);

bool equalsIgnoreCase(std::string_view a, std::string_view b);
std::string toLower(std::string_view text);

// Literal checks through inet_pton, so they agree with what the socket layer will accept.
bool isIpv4Literal(std::string_view text);
bool isIpv6Literal(std::string_view text); // without brackets or zone id

// Only digits and dots: such a string is meant as IPv4 and is never taken as a hostname.
bool looksLikeIpv4(std::string_view text);

// RFC 1123 hostname: dot-separated labels of 1..63 letters, digits and inner hyphens, at most 253
// characters in all (mDNS "<uuid>.local" names fit this).
bool isHostname(std::string_view text);

enum class AddressKind { Ipv4, Ipv6, Hostname };
// Classifies an address written without brackets; nullopt if it is none of the three.
std::optional<AddressKind> classifyAddress(std::string_view text);

// Quotes text for an error message: escapes quotes and control bytes, cuts long input short.
std::string quote(std::string_view text);

} // namespace icepunch::detail
