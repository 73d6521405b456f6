#include "impl/nat_classification.hpp"

namespace icepunch::impl {

namespace {

bool isIpv6(const NatEndpoint& e) {
    return e.host.find(':') != std::string::npos;
}

const char* testName(NatTest test) {
    switch (test) {
    case NatTest::Test1:
        return "test I";
    case NatTest::Mapping2:
        return "mapping test II";
    case NatTest::Mapping3:
        return "mapping test III";
    case NatTest::FilteringBase:
        return "the first Binding of a filtering test";
    case NatTest::Filtering2:
        return "filtering test II (change IP and port)";
    case NatTest::Filtering3:
        return "filtering test III (change port)";
    }
    return "a test";
}

enum class Outcome { NotRun, NoAnswer, WrongSource, Passed };

// Judges one probe; an answer from the wrong place gets a note and does not count.
Outcome judge(const NatProbe& probe, NatTest test, const NatObservations& o,
              std::vector<std::string>& notes) {
    if (!probe.sent)
        return Outcome::NotRun;
    if (!probe.answered)
        return Outcome::NoAnswer;
    NatEndpoint expected = expectedSource(test, o.server, o.test1.other);
    if (probe.source == expected)
        return Outcome::Passed;
    std::string asked = test == NatTest::Filtering2 ? "from OTHER-ADDRESS "
                        : test == NatTest::Filtering3
                            ? "from the primary IP and OTHER-ADDRESS's port "
                            : "from ";
    notes.push_back("the answer to " + std::string(testName(test)) + " came from " +
                    toString(probe.source) + ", not " + asked + toString(expected) +
                    ": not counted");
    return Outcome::WrongSource;
}

// A filtering test: its fresh socket's base Binding must have been answered by the primary.
Outcome judgeFiltering(const NatProbe& base, const NatProbe& probe, NatTest test,
                       const NatObservations& o, std::vector<std::string>& notes) {
    if (!base.sent)
        return Outcome::NotRun;
    Outcome baseOutcome = judge(base, NatTest::FilteringBase, o, notes);
    if (baseOutcome != Outcome::Passed) {
        if (baseOutcome == Outcome::NoAnswer)
            notes.push_back("the fresh socket of " + std::string(testName(test)) +
                            " got no answer from the server: that test did not run");
        return Outcome::NotRun;
    }
    return judge(probe, test, o, notes);
}

NatBehaviour classifyMapping(const NatObservations& o, std::vector<std::string>& notes) {
    NatEndpoint alternateIp{o.test1.other.host, o.server.port};
    switch (judge(o.mapping2, NatTest::Mapping2, o, notes)) {
    case Outcome::NotRun:
        notes.push_back("mapping test II did not run: mapping unknown");
        return NatBehaviour::Unknown;
    case Outcome::NoAnswer:
        notes.push_back("no answer from the server's alternate address " + toString(alternateIp) +
                        ": mapping unknown");
        return NatBehaviour::Unknown;
    case Outcome::WrongSource:
        notes.push_back("mapping unknown");
        return NatBehaviour::Unknown;
    case Outcome::Passed:
        break;
    }
    if (o.mapping2.mapped == o.test1.mapped)
        return NatBehaviour::EndpointIndependent;
    switch (judge(o.mapping3, NatTest::Mapping3, o, notes)) {
    case Outcome::NotRun:
        notes.push_back("mapping test III did not run: mapping unknown");
        return NatBehaviour::Unknown;
    case Outcome::NoAnswer:
        notes.push_back("no answer from " + toString(o.test1.other) + ": mapping unknown");
        return NatBehaviour::Unknown;
    case Outcome::WrongSource:
        notes.push_back("mapping unknown");
        return NatBehaviour::Unknown;
    case Outcome::Passed:
        break;
    }
    return o.mapping3.mapped == o.mapping2.mapped ? NatBehaviour::AddressDependent
                                                  : NatBehaviour::AddressAndPortDependent;
}

NatBehaviour classifyFiltering(const NatObservations& o, std::vector<std::string>& notes) {
    Outcome test2 = judgeFiltering(o.filtering2Base, o.filtering2, NatTest::Filtering2, o, notes);
    if (test2 == Outcome::Passed)
        return NatBehaviour::EndpointIndependent;
    Outcome test3 = judgeFiltering(o.filtering3Base, o.filtering3, NatTest::Filtering3, o, notes);
    if (test3 == Outcome::Passed) {
        if (test2 == Outcome::NoAnswer)
            return NatBehaviour::AddressDependent;
        notes.push_back("filtering test III passed but test II did not give an answer that "
                        "counts: endpoint-independent and address-dependent filtering cannot be "
                        "told apart, filtering unknown");
        return NatBehaviour::Unknown;
    }
    // Endpoint-independent and address-dependent filtering both pass test III.
    if (test3 == Outcome::NoAnswer && test2 != Outcome::WrongSource)
        return NatBehaviour::AddressAndPortDependent;
    notes.push_back("filtering unknown");
    return NatBehaviour::Unknown;
}

std::string classicName(const NatClassification& c, std::vector<std::string>& notes) {
    if (!c.behindNat) {
        switch (c.filtering) {
        case NatBehaviour::EndpointIndependent:
            return "open internet";
        case NatBehaviour::AddressDependent:
        case NatBehaviour::AddressAndPortDependent:
            return "symmetric UDP firewall";
        case NatBehaviour::Unknown:
            break;
        }
        notes.push_back("no NAT (the mapped address is the local address) and filtering unknown: "
                        "open internet or a symmetric UDP firewall");
        return "";
    }
    if (c.mapping == NatBehaviour::AddressDependent ||
        c.mapping == NatBehaviour::AddressAndPortDependent)
        return "symmetric";
    if (c.mapping != NatBehaviour::EndpointIndependent)
        return "";
    switch (c.filtering) {
    case NatBehaviour::EndpointIndependent:
        return "full cone";
    case NatBehaviour::AddressDependent:
        return "restricted cone";
    case NatBehaviour::AddressAndPortDependent:
        return "port-restricted cone";
    case NatBehaviour::Unknown:
        break;
    }
    return "";
}

} // namespace

std::string_view toString(NatBehaviour behaviour) {
    switch (behaviour) {
    case NatBehaviour::EndpointIndependent:
        return "endpoint-independent";
    case NatBehaviour::AddressDependent:
        return "address-dependent";
    case NatBehaviour::AddressAndPortDependent:
        return "address-and-port-dependent";
    case NatBehaviour::Unknown:
        break;
    }
    return "unknown";
}

std::string toString(const NatEndpoint& e) {
    if (isIpv6(e))
        return "[" + e.host + "]:" + std::to_string(e.port);
    return e.host + ":" + std::to_string(e.port);
}

NatEndpoint expectedSource(NatTest test, const NatEndpoint& server, const NatEndpoint& other) {
    switch (test) {
    case NatTest::Test1:
    case NatTest::FilteringBase:
        return server;
    case NatTest::Mapping2:
        return {other.host, server.port};
    case NatTest::Mapping3:
    case NatTest::Filtering2:
        return other;
    case NatTest::Filtering3:
        return {server.host, other.port};
    }
    return server;
}

NatClassification classifyNat(const NatObservations& o) {
    NatClassification c;
    auto& notes = c.notes;
    if (!o.test1.answered) {
        c.udpBlocked = true;
        c.classicName = "UDP blocked";
        return c;
    }
    c.behindNat = !(o.test1.mapped == o.local);
    if (c.behindNat && o.test1.mapped.host == o.local.host)
        notes.push_back("the address is kept but the port is translated");
    if (!(o.test1.source == o.server)) {
        notes.push_back("the answer to test I came from " + toString(o.test1.source) +
                        ", not from the server address asked, " + toString(o.server) +
                        ": mapping and filtering unknown");
        return c;
    }
    const NatEndpoint& other = o.test1.other;
    if (other.host.empty() || other.port == 0) {
        notes.push_back("the server sent no OTHER-ADDRESS: it does not support RFC 5780, "
                        "so mapping and filtering cannot be told");
        if (!c.behindNat)
            notes.push_back("the mapped address is the local address: no NAT");
        return c;
    }
    // RFC 5780 needs a second IP and a second port of the same family.
    if (other.host == o.server.host || other.port == o.server.port ||
        isIpv6(other) != isIpv6(o.server)) {
        notes.push_back("OTHER-ADDRESS " + toString(other) +
                        " is not a second IP and port of the server (" + toString(o.server) +
                        "): mapping and filtering cannot be told");
        return c;
    }
    c.rfc5780 = true;
    c.other = other;
    // Filtering first: the order discoverNat runs them in, so notes read in order.
    c.filtering = classifyFiltering(o, notes);
    c.mapping = c.behindNat ? classifyMapping(o, notes) : NatBehaviour::EndpointIndependent;
    c.classicName = classicName(c, notes);
    return c;
}

} // namespace icepunch::impl
