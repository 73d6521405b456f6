#include <icepunch/session_description.hpp>

#include "parse_util.hpp"

#include <algorithm>

namespace icepunch {

namespace {

using detail::quote;

struct Credential {
    std::string_view name;
    std::size_t minLength;
    std::size_t maxLength;
};

constexpr Credential kUfrag{"ice-ufrag", 4, 256};
constexpr Credential kPwd{"ice-pwd", 22, 256};

Error failAt(std::size_t lineNumber, const std::string& what) {
    return Error{"line " + std::to_string(lineNumber) + ": " + what, ErrorCode::Malformed};
}

std::optional<std::string> checkCredential(const Credential& kind, std::string_view value) {
    std::string name(kind.name);
    std::string range = std::to_string(kind.minLength) + ".." + std::to_string(kind.maxLength);
    if (value.size() < kind.minLength) {
        return name + " too short (" + std::to_string(value.size()) + " chars, need " + range + ")";
    }
    if (value.size() > kind.maxLength) {
        return name + " too long (" + std::to_string(value.size()) + " chars, need " + range + ")";
    }
    if (auto bad = detail::findNonIceChar(value)) {
        return name + " has invalid character " + quote(value.substr(*bad, 1)) + " at position " +
               std::to_string(*bad + 1) + " (expected ALPHA, DIGIT, '+' or '/')";
    }
    return std::nullopt;
}

// Option tags are kept as opaque visible-ASCII tokens: RFC 8839 only registers ice-char ones,
// but rejecting an unknown option would break interop for nothing.
bool isOptionTag(std::string_view token) {
    return std::all_of(token.begin(), token.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

} // namespace

bool SessionDescription::trickle() const {
    return std::find(options.begin(), options.end(), "trickle") != options.end();
}

Result<SessionDescription> SessionDescription::parse(std::string_view text) {
    if (text.size() > kMaxDescriptionBytes) {
        return Error{"description is " + std::to_string(text.size()) +
                     " bytes, over the limit of " + std::to_string(kMaxDescriptionBytes) +
                     " (kMaxDescriptionBytes)"};
    }
    SessionDescription sd;
    auto skip = [&](std::size_t lineNumber, std::string_view line, std::string reason) {
        constexpr std::size_t kKeep = 200;
        std::string kept(line.substr(0, kKeep));
        if (line.size() > kKeep) {
            kept += "...";
        }
        sd.skipped.push_back({lineNumber, std::move(kept), std::move(reason)});
    };
    std::size_t ufragLine = 0;
    std::size_t pwdLine = 0;
    std::size_t endLine = 0;

    std::size_t lineNumber = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        ++lineNumber;

        line = detail::trimWhitespace(line);
        if (line.empty()) {
            continue;
        }
        if (line.size() > kMaxDescriptionLineLength) {
            if (line.starts_with("a=candidate") || line.starts_with("candidate")) {
                skip(lineNumber, line,
                     "line is " + std::to_string(line.size()) + " characters, over the limit of " +
                         std::to_string(kMaxDescriptionLineLength) +
                         " (kMaxDescriptionLineLength)");
                continue;
            }
            if (!line.starts_with("a=ice-") && !line.starts_with("ice-")) {
                continue; // not ours, and too long to look at
            }
        }
        if (line.size() >= 2 && line[1] == '=') {
            if (line[0] != 'a') {
                continue; // v=, o=, m=, c=, ...: not ICE
            }
            line.remove_prefix(2);
        }
        std::size_t colon = line.find(':');
        std::string_view name = line.substr(0, colon);
        bool hasValue = colon != std::string_view::npos;
        std::string_view value = hasValue ? line.substr(colon + 1) : std::string_view{};

        if (name == kUfrag.name || name == kPwd.name) {
            const Credential& kind = name == kUfrag.name ? kUfrag : kPwd;
            std::string& field = name == kUfrag.name ? sd.ufrag : sd.pwd;
            std::size_t& seenLine = name == kUfrag.name ? ufragLine : pwdLine;
            if (!hasValue) {
                return failAt(lineNumber, std::string(name) + " without value");
            }
            if (auto problem = checkCredential(kind, value)) {
                return failAt(lineNumber, *problem);
            }
            if (seenLine != 0 && field != value) {
                return failAt(lineNumber, std::string(name) + " " + quote(value) +
                                              " differs from " + quote(field) + " on line " +
                                              std::to_string(seenLine));
            }
            if (seenLine == 0) {
                field = std::string(value);
                seenLine = lineNumber;
            }
        } else if (name == "ice-options") {
            std::vector<std::string_view> tags = detail::splitTokens(value);
            if (tags.empty()) {
                return failAt(lineNumber, "ice-options without any option");
            }
            for (std::string_view tag : tags) {
                if (!isOptionTag(tag)) {
                    return failAt(lineNumber, "invalid ice-options tag " + quote(tag));
                }
                sd.options.emplace_back(tag);
            }
        } else if (name == "candidate") {
            if (endLine != 0) {
                skip(lineNumber, line,
                     "candidate after a=end-of-candidates on line " + std::to_string(endLine));
                continue;
            }
            if (sd.candidates.size() >= kMaxRemoteCandidates) {
                skip(lineNumber, line,
                     "over the limit of " + std::to_string(kMaxRemoteCandidates) +
                         " candidates (kMaxRemoteCandidates)");
                continue;
            }
            auto candidate = Candidate::parse(line);
            if (!candidate) {
                skip(lineNumber, line, candidate.error().message);
                continue;
            }
            sd.candidates.push_back(std::move(*candidate));
        } else if (name == "fingerprint") {
            // RFC 8122: one or more; one we cannot use (an unknown hash) spoils nothing.
            auto fingerprint = Fingerprint::parse(value);
            if (!fingerprint) {
                skip(lineNumber, line, fingerprint.error().message);
            } else if (sd.fingerprints.size() >= kMaxFingerprints) {
                skip(lineNumber, line,
                     "over the limit of " + std::to_string(kMaxFingerprints) + " fingerprints");
            } else {
                sd.fingerprints.push_back(std::move(*fingerprint));
            }
        } else if (name == "setup") {
            auto setup = parseDtlsSetup(value);
            if (!setup) {
                skip(lineNumber, line,
                     "setup " + quote(value) + " is not a DTLS role (actpass, active, passive)");
            } else if (sd.setup && *sd.setup != *setup) {
                skip(lineNumber, line,
                     "a second, different a=setup (the first one, " +
                         std::string(icepunch::toString(*sd.setup)) + ", is used)");
            } else {
                sd.setup = setup;
            }
        } else if (name == "end-of-candidates") {
            if (hasValue) {
                return failAt(lineNumber, "end-of-candidates takes no value, got " + quote(value));
            }
            sd.endOfCandidates = true;
            if (endLine == 0) {
                endLine = lineNumber;
            }
        }
        // Anything else (ice-lite, remote-candidates, rtpmap, mid, ...) is not ours to judge.
    }

    if (ufragLine == 0) {
        return Error{"missing a=ice-ufrag", ErrorCode::Malformed};
    }
    if (pwdLine == 0) {
        return Error{"missing a=ice-pwd", ErrorCode::Malformed};
    }
    return sd;
}

std::string SessionDescription::toString() const {
    std::string out = "a=ice-ufrag:" + ufrag + "\r\n";
    out += "a=ice-pwd:" + pwd + "\r\n";
    if (!options.empty()) {
        out += "a=ice-options:";
        for (std::size_t i = 0; i < options.size(); ++i) {
            out += (i == 0 ? "" : " ") + options[i];
        }
        out += "\r\n";
    }
    for (const Fingerprint& fingerprint : fingerprints) {
        out += "a=fingerprint:" + fingerprint.toString() + "\r\n";
    }
    if (setup) {
        out += "a=setup:" + std::string(icepunch::toString(*setup)) + "\r\n";
    }
    for (const Candidate& candidate : candidates) {
        out += "a=" + candidate.toString() + "\r\n";
    }
    if (endOfCandidates) {
        out += "a=end-of-candidates\r\n";
    }
    return out;
}

} // namespace icepunch
