#pragma once

#include <icepunch/result.hpp>

#include <string>
#include <vector>

namespace icepunch::impl {

// Whether text is an IPv4 or IPv6 literal (no brackets).
bool isIpLiteral(const std::string& text);

// An IP literal for host (returned as is when it already is one), honouring the family switches.
Result<std::string> resolveHost(const std::string& host, bool ipv4, bool ipv6);

// The local addresses to gather on. Empty `wanted`: every address of every interface that is up,
// except loopback and IPv6 link-local; otherwise only the listed interface names or addresses
// (loopback allowed when listed). An empty result with a non-empty filter is an error. When the
// filter is empty and both families are on, returns an empty list: libnice then picks itself.
Result<std::vector<std::string>> selectLocalAddresses(const std::vector<std::string>& wanted,
                                                      bool ipv4, bool ipv6);

} // namespace icepunch::impl
