#pragma once

// Multicast DNS (RFC 6762) messages for the `.local` host candidates browsers send (RFC 8828): a
// one-shot query and the A/AAAA answers for one name. Pure: no sockets, no GLib, no clock, so
// every malformed packet is unit-tested and fuzzed.

#include <icepunch/result.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace icepunch::impl {

inline constexpr uint16_t kMdnsPort = 5353;
inline constexpr const char* kMdnsGroupIpv4 = "224.0.0.251";

// Ok when `name` may be queried: it ends in ".local" (any case; one trailing dot allowed), has at
// least one label before it, every label is 1..63 octets without spaces or control characters,
// and the encoded name is at most 255 octets. Otherwise an InvalidArgument error saying why.
Status validateMdnsName(std::string_view name);

// A one-shot query (RFC 6762 5.1): two questions for `name`, A and AAAA, class IN with the
// unicast-response (QU) bit set. Empty when validateMdnsName(name) fails.
std::vector<uint8_t> buildMdnsQuery(std::string_view name, uint16_t id);

// The IPv4 and IPv6 literals of the A and AAAA records (class IN, cache-flush bit ignored) for
// exactly `name`, compared case-insensitively, from the answer and additional sections, in the
// order they appear and without duplicates. Goodbye records (TTL 0, RFC 6762 10.1) are left out.
// A message that is not a response (QR clear) or has a non-zero opcode or rcode is ignored (RFC
// 6762 18): an empty list. A packet that does not parse (cut short, a bad label or compression
// pointer, an A or AAAA record of the wrong length whatever its name) is a Malformed error; an
// invalid `name` an InvalidArgument one. Never reads outside `packet`.
Result<std::vector<std::string>> parseMdnsAnswers(std::span<const uint8_t> packet,
                                                  std::string_view name);

} // namespace icepunch::impl
