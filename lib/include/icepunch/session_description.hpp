#pragma once

#include <icepunch/candidate.hpp>
#include <icepunch/export.hpp>
#include <icepunch/result.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace icepunch {

// The ICE part of an SDP media section (RFC 8839): credentials, options, candidates.
struct ICEPUNCH_EXPORT SessionDescription {
    std::string ufrag;                // a=ice-ufrag (4..256 ice-chars)
    std::string pwd;                  // a=ice-pwd (22..256 ice-chars)
    std::vector<std::string> options; // a=ice-options tokens, e.g. "trickle"
    std::vector<Candidate> candidates;
    bool endOfCandidates = false; // a=end-of-candidates seen

    bool trickle() const;

    // Parses attribute lines separated by LF or CRLF; "a=" is optional on each line. Lines that
    // are not ICE attributes (v=, m=, a=rtpmap, ...) are ignored; malformed ICE lines are errors
    // that name the line number and what is wrong. ice-ufrag and ice-pwd are required.
    static Result<SessionDescription> parse(std::string_view text);
    // Formats as "a=" lines, each ending in "\r\n", end-of-candidates last when set.
    std::string toString() const;

    bool operator==(const SessionDescription&) const = default;
};

} // namespace icepunch
