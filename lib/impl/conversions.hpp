#pragma once

// Conversions between libnice's types and icepunch's public value types.

#include <icepunch/agent.hpp>
#include <icepunch/candidate.hpp>

#include <agent.h> // as libnice spells it: nice.pc adds include/nice, its subproject agent/

#include <string>

namespace icepunch::impl {

Candidate fromNice(const NiceCandidate& candidate);
// A new NiceCandidate (free with nice_candidate_free), or an error when the address is not an IP
// literal libnice can use.
Result<NiceCandidate*> toNice(const Candidate& candidate, unsigned streamId);
ComponentState fromNice(NiceComponentState state);
std::string addressToString(const NiceAddress& address);

} // namespace icepunch::impl
