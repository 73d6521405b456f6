// The NAT classification of icepunch nat from test outcomes: no sockets.
#include "impl/nat_classification.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace icepunch::impl {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const NatEndpoint kServer{"203.0.113.10", 3478};
const NatEndpoint kOther{"203.0.113.11", 3479};
const NatEndpoint kAlternateIp{"203.0.113.11", 3478}; // mapping test II
const NatEndpoint kChangedPort{"203.0.113.10", 3479}; // filtering test III
const NatEndpoint kLocal{"10.0.1.2", 40000};
const NatEndpoint kMapped{"198.51.100.1", 40000};

NatProbe answer(const NatEndpoint& source, const NatEndpoint& mapped = kMapped) {
    NatProbe probe;
    probe.sent = true;
    probe.answered = true;
    probe.source = source;
    probe.mapped = mapped;
    return probe;
}

NatProbe silence() {
    NatProbe probe;
    probe.sent = true;
    return probe;
}

// Test I answered by the primary with OTHER-ADDRESS, mapping tests as for an EIM NAT,
// filtering test II unanswered and test III answered: a restricted cone.
NatObservations restrictedCone() {
    NatObservations o;
    o.server = kServer;
    o.local = kLocal;
    o.test1 = answer(kServer);
    o.test1.other = kOther;
    o.mapping2 = answer(kAlternateIp);
    o.filtering2Base = answer(kServer, {"198.51.100.1", 40001});
    o.filtering2 = silence();
    o.filtering3Base = answer(kServer, {"198.51.100.1", 40002});
    o.filtering3 = answer(kChangedPort, {"198.51.100.1", 40002});
    return o;
}

bool hasNote(const NatClassification& c, const std::string& text) {
    for (const auto& note : c.notes)
        if (note.find(text) != std::string::npos)
            return true;
    return false;
}

TEST(NatClassification, ExpectedSourcesFollowTheChangeRequest) {
    EXPECT_EQ(expectedSource(NatTest::Test1, kServer, kOther), kServer);
    EXPECT_EQ(expectedSource(NatTest::FilteringBase, kServer, kOther), kServer);
    EXPECT_EQ(expectedSource(NatTest::Mapping2, kServer, kOther), kAlternateIp);
    EXPECT_EQ(expectedSource(NatTest::Mapping3, kServer, kOther), kOther);
    EXPECT_EQ(expectedSource(NatTest::Filtering2, kServer, kOther), kOther);
    EXPECT_EQ(expectedSource(NatTest::Filtering3, kServer, kOther), kChangedPort);
}

TEST(NatClassification, EndpointText) {
    EXPECT_EQ(toString(kServer), "203.0.113.10:3478");
    EXPECT_EQ(toString(NatEndpoint{"2001:db8::1", 3478}), "[2001:db8::1]:3478");
}

TEST(NatClassification, RestrictedCone) {
    auto c = classifyNat(restrictedCone());
    EXPECT_TRUE(c.behindNat);
    EXPECT_TRUE(c.rfc5780);
    EXPECT_EQ(c.other, kOther);
    EXPECT_EQ(c.mapping, NatBehaviour::EndpointIndependent);
    EXPECT_EQ(c.filtering, NatBehaviour::AddressDependent);
    EXPECT_EQ(c.classicName, "restricted cone");
    EXPECT_THAT(c.notes, IsEmpty());
}

TEST(NatClassification, FullCone) {
    auto o = restrictedCone();
    o.filtering2 = answer(kOther, o.filtering2Base.mapped);
    o.filtering3Base = {};
    o.filtering3 = {};
    auto c = classifyNat(o);
    EXPECT_EQ(c.filtering, NatBehaviour::EndpointIndependent);
    EXPECT_EQ(c.classicName, "full cone");
}

TEST(NatClassification, PortRestrictedCone) {
    auto o = restrictedCone();
    o.filtering3 = silence();
    auto c = classifyNat(o);
    EXPECT_EQ(c.filtering, NatBehaviour::AddressAndPortDependent);
    EXPECT_EQ(c.classicName, "port-restricted cone");
}

TEST(NatClassification, SymmetricAddressAndPortDependentMapping) {
    auto o = restrictedCone();
    o.mapping2 = answer(kAlternateIp, {"198.51.100.1", 50000});
    o.mapping3 = answer(kOther, {"198.51.100.1", 50001});
    o.filtering3 = silence();
    auto c = classifyNat(o);
    EXPECT_EQ(c.mapping, NatBehaviour::AddressAndPortDependent);
    EXPECT_EQ(c.classicName, "symmetric");
}

TEST(NatClassification, SymmetricAddressDependentMapping) {
    auto o = restrictedCone();
    o.mapping2 = answer(kAlternateIp, {"198.51.100.1", 50000});
    o.mapping3 = answer(kOther, {"198.51.100.1", 50000});
    auto c = classifyNat(o);
    EXPECT_EQ(c.mapping, NatBehaviour::AddressDependent);
    EXPECT_EQ(c.classicName, "symmetric");
}

TEST(NatClassification, PortTranslatedOnly) {
    auto o = restrictedCone();
    o.test1.mapped = {kLocal.host, 50000};
    o.mapping2.mapped = o.test1.mapped;
    auto c = classifyNat(o);
    EXPECT_TRUE(c.behindNat);
    EXPECT_TRUE(hasNote(c, "the port is translated"));
    EXPECT_EQ(c.classicName, "restricted cone");
}

TEST(NatClassification, NoNatOpenInternetAndFirewall) {
    auto o = restrictedCone();
    o.test1.mapped = kLocal;
    o.mapping2 = {}; // not run without a NAT
    o.filtering2 = answer(kOther);
    auto open = classifyNat(o);
    EXPECT_FALSE(open.behindNat);
    EXPECT_EQ(open.mapping, NatBehaviour::EndpointIndependent);
    EXPECT_EQ(open.classicName, "open internet");

    o.filtering2 = silence();
    o.filtering3 = silence();
    EXPECT_EQ(classifyNat(o).classicName, "symmetric UDP firewall");
}

TEST(NatClassification, NoNatAndUnknownFilteringIsUnknown) {
    auto o = restrictedCone();
    o.test1.mapped = kLocal;
    o.mapping2 = {};
    o.filtering2Base = silence(); // the fresh sockets' first Bindings were lost
    o.filtering2 = {};
    o.filtering3Base = silence();
    o.filtering3 = {};
    auto c = classifyNat(o);
    EXPECT_FALSE(c.behindNat);
    EXPECT_EQ(c.filtering, NatBehaviour::Unknown);
    EXPECT_EQ(c.classicName, "");
    EXPECT_TRUE(hasNote(c, "no NAT"));
    EXPECT_TRUE(hasNote(c, "got no answer from the server: that test did not run"));
}

TEST(NatClassification, NoNatAndFilteringNotRunIsUnknown) {
    auto o = restrictedCone();
    o.test1.mapped = kLocal;
    o.mapping2 = {};
    o.filtering2Base = {};
    o.filtering2 = {};
    o.filtering3Base = {};
    o.filtering3 = {};
    auto c = classifyNat(o);
    EXPECT_EQ(c.filtering, NatBehaviour::Unknown);
    EXPECT_EQ(c.classicName, "");
}

TEST(NatClassification, NoOtherAddress) {
    auto o = restrictedCone();
    o.test1.other = {};
    auto c = classifyNat(o);
    EXPECT_TRUE(c.behindNat);
    EXPECT_FALSE(c.rfc5780);
    EXPECT_EQ(c.mapping, NatBehaviour::Unknown);
    EXPECT_EQ(c.filtering, NatBehaviour::Unknown);
    EXPECT_EQ(c.classicName, "");
    EXPECT_TRUE(hasNote(c, "no OTHER-ADDRESS"));
}

TEST(NatClassification, NoOtherAddressAndNoNat) {
    auto o = restrictedCone();
    o.test1.other = {};
    o.test1.mapped = kLocal;
    auto c = classifyNat(o);
    EXPECT_FALSE(c.behindNat);
    EXPECT_EQ(c.classicName, "");
    EXPECT_TRUE(hasNote(c, "no NAT"));
}

TEST(NatClassification, OtherAddressThatIsNotASecondAddress) {
    for (NatEndpoint other : {NatEndpoint{kServer.host, 3479}, NatEndpoint{"203.0.113.11", 3478},
                              NatEndpoint{"2001:db8::2", 3479}}) {
        auto o = restrictedCone();
        o.test1.other = other;
        auto c = classifyNat(o);
        EXPECT_FALSE(c.rfc5780) << toString(other);
        EXPECT_EQ(c.classicName, "") << toString(other);
        EXPECT_TRUE(hasNote(c, "is not a second IP and port")) << toString(other);
    }
}

TEST(NatClassification, UdpBlocked) {
    NatObservations o;
    o.server = kServer;
    o.local = kLocal;
    o.test1 = silence();
    auto c = classifyNat(o);
    EXPECT_TRUE(c.udpBlocked);
    EXPECT_EQ(c.classicName, "UDP blocked");
}

TEST(NatClassification, TestOneFromTheWrongSource) {
    auto o = restrictedCone();
    o.test1.source = {"203.0.113.99", 3478};
    auto c = classifyNat(o);
    EXPECT_TRUE(c.behindNat); // the mapped address still tells that much
    EXPECT_FALSE(c.rfc5780);
    EXPECT_EQ(c.filtering, NatBehaviour::Unknown);
    EXPECT_EQ(c.classicName, "");
    EXPECT_TRUE(hasNote(c, "the answer to test I came from 203.0.113.99:3478"));
}

// The reviewer's case: the change-IP answer got in but not from OTHER-ADDRESS (the server
// changed only the port): it must not make the NAT a full cone.
TEST(NatClassification, ChangeIpAnswerFromTheWrongSourceIsNotEndpointIndependent) {
    auto o = restrictedCone();
    o.filtering2 = answer(kChangedPort, o.filtering2Base.mapped);
    auto c = classifyNat(o);
    EXPECT_NE(c.filtering, NatBehaviour::EndpointIndependent);
    EXPECT_EQ(c.filtering, NatBehaviour::Unknown); // test III passed: EIF or ADF
    EXPECT_EQ(c.classicName, "");
    EXPECT_TRUE(hasNote(c, "filtering test II (change IP and port) came from 203.0.113.10:3479, "
                           "not from OTHER-ADDRESS 203.0.113.11:3479: not counted"));
}

TEST(NatClassification, ChangeIpAnswerFromThePrimaryIsNotCounted) {
    auto o = restrictedCone();
    o.filtering2 = answer(kServer, o.filtering2Base.mapped); // CHANGE-REQUEST ignored
    o.filtering3 = silence();
    auto c = classifyNat(o);
    EXPECT_EQ(c.filtering, NatBehaviour::Unknown);
    EXPECT_TRUE(hasNote(c, "not counted"));
}

TEST(NatClassification, ChangePortAnswerFromTheWrongSourceIsNotAddressDependent) {
    auto o = restrictedCone();
    o.filtering3 = answer(kServer, o.filtering3Base.mapped); // CHANGE-REQUEST ignored
    auto c = classifyNat(o);
    EXPECT_EQ(c.filtering, NatBehaviour::Unknown);
    EXPECT_EQ(c.classicName, "");
    EXPECT_TRUE(hasNote(c, "filtering test III (change port) came from 203.0.113.10:3478, not "
                           "from the primary IP and OTHER-ADDRESS's port 203.0.113.10:3479"));
}

TEST(NatClassification, FilteringBaseFromTheWrongSourceDoesNotRunTheTest) {
    auto o = restrictedCone();
    o.filtering3Base.source = kOther;
    auto c = classifyNat(o);
    EXPECT_EQ(c.filtering, NatBehaviour::Unknown); // II filtered, III not run: ADF or APDF
    EXPECT_TRUE(hasNote(c, "the first Binding of a filtering test came from"));
}

TEST(NatClassification, ChangePortFilteredDecidesEvenWithoutTestTwo) {
    auto o = restrictedCone();
    o.filtering2Base = silence(); // test II could not run
    o.filtering2 = {};
    o.filtering3 = silence();
    EXPECT_EQ(classifyNat(o).filtering, NatBehaviour::AddressAndPortDependent);
}

TEST(NatClassification, ChangePortPassedWithoutTestTwoIsUnknown) {
    auto o = restrictedCone();
    o.filtering2Base = silence();
    o.filtering2 = {};
    auto c = classifyNat(o);
    EXPECT_EQ(c.filtering, NatBehaviour::Unknown);
    EXPECT_TRUE(hasNote(c, "cannot be told apart"));
}

TEST(NatClassification, MappingAnswerFromTheWrongSourceIsNotCounted) {
    auto o = restrictedCone();
    o.mapping2.source = kServer;
    auto c = classifyNat(o);
    EXPECT_EQ(c.mapping, NatBehaviour::Unknown);
    EXPECT_EQ(c.filtering, NatBehaviour::AddressDependent);
    EXPECT_EQ(c.classicName, "");
    EXPECT_TRUE(hasNote(c, "mapping test II came from 203.0.113.10:3478, not from "
                           "203.0.113.11:3478: not counted"));

    o = restrictedCone();
    o.mapping2.mapped = {"198.51.100.1", 50000};
    o.mapping3 = answer(kAlternateIp, {"198.51.100.1", 50001});
    c = classifyNat(o);
    EXPECT_EQ(c.mapping, NatBehaviour::Unknown);
    EXPECT_TRUE(hasNote(c, "mapping test III came from 203.0.113.11:3478"));
}

TEST(NatClassification, MappingUnanswered) {
    auto o = restrictedCone();
    o.mapping2 = silence();
    auto c = classifyNat(o);
    EXPECT_EQ(c.mapping, NatBehaviour::Unknown);
    EXPECT_EQ(c.classicName, "");
    EXPECT_THAT(c.notes, Contains(HasSubstr("no answer from the server's alternate address "
                                            "203.0.113.11:3478: mapping unknown")));
}

TEST(NatClassification, BehaviourNames) {
    EXPECT_EQ(toString(NatBehaviour::EndpointIndependent), "endpoint-independent");
    EXPECT_EQ(toString(NatBehaviour::AddressDependent), "address-dependent");
    EXPECT_EQ(toString(NatBehaviour::AddressAndPortDependent), "address-and-port-dependent");
    EXPECT_EQ(toString(NatBehaviour::Unknown), "unknown");
}

} // namespace
} // namespace icepunch::impl
