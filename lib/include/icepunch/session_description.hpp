#pragma once

#include <icepunch/candidate.hpp>
#include <icepunch/export.hpp>
#include <icepunch/result.hpp>
#include <icepunch/security.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace icepunch {

// Limits on what a remote description may hold; past them parsing stops with an error that names
// the limit (size) or the line is skipped (line length, candidate count).
inline constexpr std::size_t kMaxDescriptionBytes = 256 * 1024;
inline constexpr std::size_t kMaxDescriptionLineLength = 4096;
inline constexpr std::size_t kMaxRemoteCandidates = 1000;
inline constexpr std::size_t kMaxFingerprints = 8;

// A line of a description that is not used, and why. RFC 8839 asks to ignore what one does not
// understand, so an unusable candidate never spoils the rest of the description.
struct SkippedLine {
    std::size_t lineNumber = 0;
    std::string line; // as given (at most 200 characters of it)
    std::string reason;

    bool operator==(const SkippedLine&) const = default;
};

// The ICE part of an SDP media section (RFC 8839): credentials, options, candidates.
struct ICEPUNCH_EXPORT SessionDescription {
    std::string ufrag;                // a=ice-ufrag (4..256 ice-chars)
    std::string pwd;                  // a=ice-pwd (22..256 ice-chars)
    std::vector<std::string> options; // a=ice-options tokens, e.g. "trickle"
    std::vector<Candidate> candidates;
    bool endOfCandidates = false; // a=end-of-candidates seen
    // DTLS (RFC 8122, RFC 8842): the certificate's fingerprints and the DTLS role. An agent
    // with AgentConfig::security on fills them in; the peer's must be there for it to connect.
    std::vector<Fingerprint> fingerprints;
    std::optional<DtlsSetup> setup;
    // Candidate lines that were malformed, over a limit or after a=end-of-candidates: not used.
    std::vector<SkippedLine> skipped;

    bool trickle() const;

    // Parses attribute lines separated by LF or CRLF; "a=" is optional on each line. Lines that
    // are not ICE attributes (v=, m=, a=rtpmap, ...) are ignored. A candidate line that cannot be
    // used (malformed, unknown transport, over kMaxDescriptionLineLength or kMaxRemoteCandidates)
    // is skipped and listed in `skipped` with the reason. Malformed credentials or options are
    // errors that name the line number and what is wrong; ice-ufrag and ice-pwd are required, and
    // a text over kMaxDescriptionBytes is refused whole.
    static Result<SessionDescription> parse(std::string_view text);
    // Formats as "a=" lines, each ending in "\r\n", end-of-candidates last when set.
    std::string toString() const;

    bool operator==(const SessionDescription&) const = default;
};

} // namespace icepunch
