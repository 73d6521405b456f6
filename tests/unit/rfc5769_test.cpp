// RFC 5769 "Test Vectors for STUN" (sections 2.1-2.4) against libnice's STUN library, the code
// that parses and authenticates every STUN message icepunch sends or receives. The vectors are
// typed in from the RFC; MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT (CRC-32) make a mistyped
// byte show up as a validation failure, so a passing "validates" test also checks the typing.
#include <gtest/gtest.h>

#include <stun/stunagent.h>
#include <stun/stunmessage.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;

// RFC 5769 2.1: Binding request, short-term credentials, ICE attributes, FINGERPRINT.
const Bytes kSampleRequest = {
    0x00, 0x01, 0x00, 0x58, // Request type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // Transaction ID
    0xbc, 0x34, 0xd6, 0x86, //
    0xfa, 0x87, 0xdf, 0xae, //
    0x80, 0x22, 0x00, 0x10, // SOFTWARE attribute header
    0x53, 0x54, 0x55, 0x4e, // "STUN test client"
    0x20, 0x74, 0x65, 0x73, //
    0x74, 0x20, 0x63, 0x6c, //
    0x69, 0x65, 0x6e, 0x74, //
    0x00, 0x24, 0x00, 0x04, // PRIORITY attribute header
    0x6e, 0x00, 0x01, 0xff, // ICE priority value
    0x80, 0x29, 0x00, 0x08, // ICE-CONTROLLED attribute header
    0x93, 0x2f, 0xf9, 0xb1, // Pseudo-random tie breaker
    0x51, 0x26, 0x3b, 0x36, //
    0x00, 0x06, 0x00, 0x09, // USERNAME attribute header
    0x65, 0x76, 0x74, 0x6a, // "evtj:h6vY" and padding (3 bytes, spaces in the RFC)
    0x3a, 0x68, 0x36, 0x76, //
    0x59, 0x20, 0x20, 0x20, //
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0x9a, 0xea, 0xa7, 0x0c, // HMAC-SHA1
    0xbf, 0xd8, 0xcb, 0x56, //
    0x78, 0x1e, 0xf2, 0xb5, //
    0xb2, 0xd3, 0xf2, 0x49, //
    0xc1, 0xb5, 0x71, 0xa2, //
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
    0xe5, 0x7a, 0x3b, 0xcf, // CRC32
};

// RFC 5769 2.2: Binding success response, IPv4 XOR-MAPPED-ADDRESS 192.0.2.1:32853.
const Bytes kSampleIpv4Response = {
    0x01, 0x01, 0x00, 0x3c, // Response type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // Transaction ID
    0xbc, 0x34, 0xd6, 0x86, //
    0xfa, 0x87, 0xdf, 0xae, //
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE attribute header
    0x74, 0x65, 0x73, 0x74, // "test vector" and padding (1 byte)
    0x20, 0x76, 0x65, 0x63, //
    0x74, 0x6f, 0x72, 0x20, //
    0x00, 0x20, 0x00, 0x08, // XOR-MAPPED-ADDRESS attribute header
    0x00, 0x01, 0xa1, 0x47, // Family IPv4, xor'd port
    0xe1, 0x12, 0xa6, 0x43, // Xor'd IPv4 address
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0x2b, 0x91, 0xf5, 0x99, // HMAC-SHA1
    0xfd, 0x9e, 0x90, 0xc3, //
    0x8c, 0x74, 0x89, 0xf9, //
    0x2a, 0xf9, 0xba, 0x53, //
    0xf0, 0x6b, 0xe7, 0xd7, //
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
    0xc0, 0x7d, 0x4c, 0x96, // CRC32
};

// RFC 5769 2.3: Binding success response, IPv6 XOR-MAPPED-ADDRESS
// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
const Bytes kSampleIpv6Response = {
    0x01, 0x01, 0x00, 0x48, // Response type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // Transaction ID
    0xbc, 0x34, 0xd6, 0x86, //
    0xfa, 0x87, 0xdf, 0xae, //
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE attribute header
    0x74, 0x65, 0x73, 0x74, // "test vector" and padding (1 byte)
    0x20, 0x76, 0x65, 0x63, //
    0x74, 0x6f, 0x72, 0x20, //
    0x00, 0x20, 0x00, 0x14, // XOR-MAPPED-ADDRESS attribute header
    0x00, 0x02, 0xa1, 0x47, // Family IPv6, xor'd port
    0x01, 0x13, 0xa9, 0xfa, // Xor'd IPv6 address
    0xa5, 0xd3, 0xf1, 0x79, //
    0xbc, 0x25, 0xf4, 0xb5, //
    0xbe, 0xd2, 0xb9, 0xd9, //
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0xa3, 0x82, 0x95, 0x4e, // HMAC-SHA1
    0x4b, 0xe6, 0x7b, 0xf1, //
    0x17, 0x84, 0xc9, 0x7c, //
    0x82, 0x92, 0xc2, 0x75, //
    0xbf, 0xe3, 0xed, 0x41, //
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
    0xc8, 0xfb, 0x0b, 0x4c, // CRC32
};

// RFC 5769 2.4: Binding request with long-term credentials (no FINGERPRINT).
const Bytes kSampleLongTermRequest = {
    0x00, 0x01, 0x00, 0x60, // Request type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0x78, 0xad, 0x34, 0x33, // Transaction ID
    0xc6, 0xad, 0x72, 0xc0, //
    0x29, 0xda, 0x41, 0x2e, //
    0x00, 0x06, 0x00, 0x12, // USERNAME attribute header
    0xe3, 0x83, 0x9e, 0xe3, // U+30DE U+30C8 U+30EA U+30C3 U+30AF U+30B9 in UTF-8 (18 bytes)
    0x83, 0x88, 0xe3, 0x83, // and padding (2 bytes)
    0xaa, 0xe3, 0x83, 0x83, //
    0xe3, 0x82, 0xaf, 0xe3, //
    0x82, 0xb9, 0x00, 0x00, //
    0x00, 0x15, 0x00, 0x1c, // NONCE attribute header
    0x66, 0x2f, 0x2f, 0x34, // "f//499k954d6OL34oL9FSTvy64sA"
    0x39, 0x39, 0x6b, 0x39, //
    0x35, 0x34, 0x64, 0x36, //
    0x4f, 0x4c, 0x33, 0x34, //
    0x6f, 0x4c, 0x39, 0x46, //
    0x53, 0x54, 0x76, 0x79, //
    0x36, 0x34, 0x73, 0x41, //
    0x00, 0x14, 0x00, 0x0b, // REALM attribute header
    0x65, 0x78, 0x61, 0x6d, // "example.org" and padding (1 byte)
    0x70, 0x6c, 0x65, 0x2e, //
    0x6f, 0x72, 0x67, 0x00, //
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0xf6, 0x70, 0x24, 0x65, // HMAC-SHA1
    0x6d, 0xd6, 0x4a, 0x3e, //
    0x02, 0xb8, 0xe0, 0x71, //
    0x2e, 0x85, 0xc9, 0xa2, //
    0x8c, 0xa8, 0x96, 0x66, //
};

const std::string kShortTermUser = "evtj:h6vY";
const std::string kShortTermPassword = "VOkJxbRl1RmTxUk/WvJxBt";
// "\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9" (the RFC's username) as UTF-8 bytes.
const std::string kLongTermUser = "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf"
                                  "\xe3\x82\xb9";
// The RFC's password is "The<U+00AD>M<U+00AA>trIX"; SASLprep maps it to "TheMatrIX".
const std::string kLongTermPassword = "TheMatrIX";
const std::string kNonce = "f//499k954d6OL34oL9FSTvy64sA";
const std::string kRealm = "example.org";

const uint16_t kKnownAttributes[] = {
    STUN_ATTRIBUTE_USERNAME,
    STUN_ATTRIBUTE_MESSAGE_INTEGRITY,
    STUN_ATTRIBUTE_ERROR_CODE,
    STUN_ATTRIBUTE_REALM,
    STUN_ATTRIBUTE_NONCE,
    STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
    STUN_ATTRIBUTE_PRIORITY,
    STUN_ATTRIBUTE_USE_CANDIDATE,
    STUN_ATTRIBUTE_SOFTWARE,
    STUN_ATTRIBUTE_FINGERPRINT,
    STUN_ATTRIBUTE_ICE_CONTROLLED,
    STUN_ATTRIBUTE_ICE_CONTROLLING,
    0,
};

enum class Auth { ShortTerm, LongTerm };

struct Vector {
    const char* name;
    const Bytes* bytes;
    Auth auth;
    bool response;    // validated against a request the agent "sent" with this transaction ID
    bool fingerprint; // carries FINGERPRINT (all but 2.4)
    const std::string* username;
    const std::string* password;
};

const Vector kVectors[] = {
    {"SampleRequest", &kSampleRequest, Auth::ShortTerm, false, true, &kShortTermUser,
     &kShortTermPassword},
    {"SampleIpv4Response", &kSampleIpv4Response, Auth::ShortTerm, true, true, &kShortTermUser,
     &kShortTermPassword},
    {"SampleIpv6Response", &kSampleIpv6Response, Auth::ShortTerm, true, true, &kShortTermUser,
     &kShortTermPassword},
    {"SampleLongTermRequest", &kSampleLongTermRequest, Auth::LongTerm, false, false, &kLongTermUser,
     &kLongTermPassword},
};

struct Credentials {
    std::string username;
    std::string password;
};

// The validater hands libnice the password for a known username. With long-term credentials
// libnice itself derives the key MD5(username ":" realm ":" password) from the USERNAME and REALM
// in the message (stun_hash_creds), so the plain (SASLprep'd) password is returned either way.
bool validater(StunAgent*, StunMessage*, uint8_t* username, uint16_t usernameLen,
               uint8_t** password, size_t* passwordLen, void* userData) {
    const auto* creds = static_cast<const Credentials*>(userData);
    if (username == nullptr || usernameLen != creds->username.size() ||
        std::memcmp(username, creds->username.data(), usernameLen) != 0) {
        return false;
    }
    *password = reinterpret_cast<uint8_t*>(const_cast<char*>(creds->password.data()));
    *passwordLen = creds->password.size();
    return true;
}

// What a receiver reads out of a message; two messages that decode equal are the same message.
struct Decoded {
    uint16_t type = 0;
    std::array<uint8_t, 16> transaction{}; // magic cookie and transaction ID
    std::optional<std::string> software, username, nonce, realm;
    std::optional<uint32_t> priority;
    std::optional<uint64_t> iceControlled;
    std::optional<std::string> xorMapped; // "ip:port" / "[ip6]:port"

    bool operator==(const Decoded&) const = default;
};

std::optional<std::string> findString(const StunMessage& msg, StunAttribute type) {
    uint16_t len = 0;
    const void* value = stun_message_find(&msg, type, &len);
    if (value == nullptr) {
        return std::nullopt;
    }
    return std::string(static_cast<const char*>(value), len);
}

std::optional<std::string> findXorAddress(const StunMessage& msg) {
    sockaddr_storage storage{};
    socklen_t len = sizeof(storage);
    if (stun_message_find_xor_addr(&msg, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, &storage, &len) !=
        STUN_MESSAGE_RETURN_SUCCESS) {
        return std::nullopt;
    }
    char text[INET6_ADDRSTRLEN] = {};
    std::ostringstream out;
    if (storage.ss_family == AF_INET) {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(&storage);
        inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
        out << text << ':' << ntohs(sin->sin_port);
    } else if (storage.ss_family == AF_INET6) {
        const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&storage);
        inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
        out << '[' << text << "]:" << ntohs(sin6->sin6_port);
    } else {
        out << "family " << storage.ss_family;
    }
    return out.str();
}

Decoded decode(const StunMessage& msg) {
    Decoded d;
    d.type = static_cast<uint16_t>((msg.buffer[0] << 8) | msg.buffer[1]);
    std::memcpy(d.transaction.data(), msg.buffer + 4, d.transaction.size());
    d.software = findString(msg, STUN_ATTRIBUTE_SOFTWARE);
    d.username = findString(msg, STUN_ATTRIBUTE_USERNAME);
    d.nonce = findString(msg, STUN_ATTRIBUTE_NONCE);
    d.realm = findString(msg, STUN_ATTRIBUTE_REALM);
    uint32_t priority = 0;
    if (stun_message_find32(&msg, STUN_ATTRIBUTE_PRIORITY, &priority) ==
        STUN_MESSAGE_RETURN_SUCCESS) {
        d.priority = priority;
    }
    uint64_t tieBreaker = 0;
    if (stun_message_find64(&msg, STUN_ATTRIBUTE_ICE_CONTROLLED, &tieBreaker) ==
        STUN_MESSAGE_RETURN_SUCCESS) {
        d.iceControlled = tieBreaker;
    }
    d.xorMapped = findXorAddress(msg);
    return d;
}

struct Validation {
    StunValidationStatus status = STUN_VALIDATION_NOT_STUN;
    Decoded decoded; // only filled when status is STUN_VALIDATION_SUCCESS
};

// Validates `bytes` as the vector's receiver would, with a fresh agent each time (a validated
// response consumes its saved transaction).
Validation validate(const Vector& vector, const Bytes& bytes, const std::string& password) {
    unsigned usage = vector.auth == Auth::ShortTerm ? STUN_AGENT_USAGE_SHORT_TERM_CREDENTIALS
                                                    : STUN_AGENT_USAGE_LONG_TERM_CREDENTIALS;
    if (vector.fingerprint) {
        usage |= STUN_AGENT_USAGE_USE_FINGERPRINT;
    }
    StunAgent agent;
    stun_agent_init(&agent, kKnownAttributes, STUN_COMPATIBILITY_RFC5389,
                    static_cast<StunAgentUsageFlags>(usage));

    // A response is only accepted for a request this agent sent: register one with the vector's
    // transaction ID (libnice keeps the key it was sent with to check the response's integrity).
    std::array<uint8_t, 256> requestBuffer{};
    if (vector.response) {
        StunMessage request{};
        request.buffer = requestBuffer.data();
        request.buffer_len = requestBuffer.size();
        request.agent = &agent;
        StunTransactionId id;
        std::memcpy(id, vector.bytes->data() + 4, sizeof(id));
        if (!stun_message_init(&request, STUN_REQUEST, STUN_BINDING, id) ||
            stun_agent_finish_message(&agent, &request,
                                      reinterpret_cast<const uint8_t*>(password.data()),
                                      password.size()) == 0) {
            ADD_FAILURE() << "could not register the request for " << vector.name;
            return {};
        }
    }

    Credentials creds{*vector.username, password};
    StunMessage msg{};
    Validation result;
    result.status =
        stun_agent_validate(&agent, &msg, bytes.data(), bytes.size(), validater, &creds);
    if (result.status == STUN_VALIDATION_SUCCESS) {
        result.decoded = decode(msg);
    }
    return result;
}

// Offset of the low byte of MESSAGE-INTEGRITY's length field.
size_t miLengthLowByte(const Bytes& bytes) {
    for (size_t pos = 20; pos + 4 <= bytes.size();) {
        uint16_t type = static_cast<uint16_t>((bytes[pos] << 8) | bytes[pos + 1]);
        uint16_t len = static_cast<uint16_t>((bytes[pos + 2] << 8) | bytes[pos + 3]);
        if (type == STUN_ATTRIBUTE_MESSAGE_INTEGRITY) {
            return pos + 3;
        }
        pos += 4 + ((len + 3u) & ~3u);
    }
    return bytes.size();
}

class Rfc5769 : public ::testing::TestWithParam<Vector> {};

TEST_P(Rfc5769, ValidatesIntegrityAndFingerprint) {
    const Vector& v = GetParam();
    ASSERT_EQ(v.bytes->size(), 20u + ((v.bytes->at(2) << 8) | v.bytes->at(3)))
        << "length field does not match the bytes typed in";
    EXPECT_EQ(validate(v, *v.bytes, *v.password).status, STUN_VALIDATION_SUCCESS);
}

TEST_P(Rfc5769, WrongPasswordIsRejected) {
    const Vector& v = GetParam();
    std::string wrong = *v.password;
    wrong.back() ^= 0x01;
    EXPECT_EQ(validate(v, *v.bytes, wrong).status, STUN_VALIDATION_UNAUTHORIZED);
}

// For every byte position and every other value of that byte (255 changes per byte). With
// FINGERPRINT (2.1-2.3) every single-byte change must be rejected outright: CRC-32 detects every
// error burst up to 32 bits, and MESSAGE-INTEGRITY covers everything before it. Without it (2.4)
// libnice must reject every change except two documented kinds: a class change to an
// indication (accepted unauthenticated, and decoding as a different message), and
// MESSAGE-INTEGRITY's length field set to 17..19 (see below).
TEST_P(Rfc5769, RejectsEachVectorWithOneByteChanged) {
    const Vector& v = GetParam();
    const Validation original = validate(v, *v.bytes, *v.password);
    ASSERT_EQ(original.status, STUN_VALIDATION_SUCCESS);
    std::vector<std::string> problems;
    std::vector<std::string> acceptedAsOther;
    std::vector<std::string> miLengthAccepted;
    for (size_t pos = 0; pos < v.bytes->size(); ++pos) {
        for (unsigned delta = 1; delta < 256; ++delta) {
            Bytes changed = *v.bytes;
            changed[pos] = static_cast<uint8_t>(changed[pos] ^ delta);
            Validation r = validate(v, changed, *v.password);
            if (r.status != STUN_VALIDATION_SUCCESS) {
                continue;
            }
            std::ostringstream what;
            what << "byte " << pos << " ^ 0x" << std::hex << delta << " (type 0x" << r.decoded.type
                 << ")";
            if (!v.fingerprint && r.decoded != original.decoded) {
                acceptedAsOther.push_back(what.str());
            } else if (!v.fingerprint && pos == miLengthLowByte(*v.bytes) && changed[pos] >= 17 &&
                       changed[pos] < 20) {
                miLengthAccepted.push_back(what.str());
            } else {
                problems.push_back(what.str());
            }
        }
    }
    EXPECT_TRUE(problems.empty()) << problems.size()
                                  << " changed messages accepted, first: " << problems.front();
    if (!acceptedAsOther.empty()) {
        // 2.4 has no FINGERPRINT: a class change turning the request into an indication is
        // accepted without an integrity check, because libnice's long-term usage takes
        // indications unauthenticated (TURN Send/Data indications carry no MESSAGE-INTEGRITY).
        // Such a message decodes to a different type, so a receiver never mistakes it for the
        // vector; every such case must be exactly that.
        for (const auto& what : acceptedAsOther) {
            EXPECT_EQ(v.auth, Auth::LongTerm) << what;
        }
        std::cout << "[          ] " << v.name << ": " << acceptedAsOther.size()
                  << " changes accepted as a different message type, e.g. "
                  << acceptedAsOther.front() << '\n';
    }
    if (!v.fingerprint) {
        // libnice 0.1.21 does not check that MESSAGE-INTEGRITY's length is 20: it reads 20 bytes
        // whatever the length field says, and 17..19 still pad to the same message length. The
        // attribute header is outside the HMAC (RFC 5389 15.4), so without FINGERPRINT nothing
        // else catches it. The message still decodes to the vector's values (nothing is gained
        // by the change), but a strict receiver would reject it; pin the exact extent here.
        EXPECT_EQ(miLengthAccepted.size(), 3u);
    } else {
        EXPECT_TRUE(miLengthAccepted.empty());
    }
}

INSTANTIATE_TEST_SUITE_P(Vectors, Rfc5769, ::testing::ValuesIn(kVectors),
                         [](const ::testing::TestParamInfo<Vector>& info) {
                             return std::string(info.param.name);
                         });

TEST(Rfc5769Fields, SampleRequestDecodesToTheRfcValues) {
    Validation r = validate(kVectors[0], kSampleRequest, kShortTermPassword);
    ASSERT_EQ(r.status, STUN_VALIDATION_SUCCESS);
    EXPECT_EQ(r.decoded.type, 0x0001);
    EXPECT_EQ(r.decoded.software, "STUN test client");
    EXPECT_EQ(r.decoded.priority, 0x6e0001ffu);
    EXPECT_EQ(r.decoded.iceControlled, 0x932ff9b151263b36ull);
    EXPECT_EQ(r.decoded.username, kShortTermUser);
    EXPECT_FALSE(r.decoded.xorMapped);
}

TEST(Rfc5769Fields, SampleIpv4ResponseDecodesToTheRfcValues) {
    Validation r = validate(kVectors[1], kSampleIpv4Response, kShortTermPassword);
    ASSERT_EQ(r.status, STUN_VALIDATION_SUCCESS);
    EXPECT_EQ(r.decoded.type, 0x0101);
    EXPECT_EQ(r.decoded.software, "test vector");
    EXPECT_EQ(r.decoded.xorMapped, "192.0.2.1:32853");
}

TEST(Rfc5769Fields, SampleIpv6ResponseDecodesToTheRfcValues) {
    Validation r = validate(kVectors[2], kSampleIpv6Response, kShortTermPassword);
    ASSERT_EQ(r.status, STUN_VALIDATION_SUCCESS);
    EXPECT_EQ(r.decoded.type, 0x0101);
    EXPECT_EQ(r.decoded.software, "test vector");
    EXPECT_EQ(r.decoded.xorMapped, "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
}

TEST(Rfc5769Fields, SampleLongTermRequestDecodesToTheRfcValues) {
    Validation r = validate(kVectors[3], kSampleLongTermRequest, kLongTermPassword);
    ASSERT_EQ(r.status, STUN_VALIDATION_SUCCESS);
    EXPECT_EQ(r.decoded.type, 0x0001);
    EXPECT_EQ(r.decoded.username, kLongTermUser);
    EXPECT_EQ(r.decoded.nonce, kNonce);
    EXPECT_EQ(r.decoded.realm, kRealm);
    EXPECT_FALSE(r.decoded.software);
}

TEST(Rfc5769Fields, LongTermKeyNeedsTheSaslPreppedPassword) {
    // The unprepared password (with SOFT HYPHEN and FEMININE ORDINAL INDICATOR) gives another key.
    Validation r = validate(kVectors[3], kSampleLongTermRequest,
                            "The\xc2\xad"
                            "M\xc2\xaatrIX");
    EXPECT_EQ(r.status, STUN_VALIDATION_UNAUTHORIZED);
}

} // namespace
