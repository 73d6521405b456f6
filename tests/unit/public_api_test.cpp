// Built with only the public include path: proves the installed headers stand alone.
#include <icepunch/icepunch.hpp>

#include <gtest/gtest.h>

#include <string_view>

TEST(PublicApiTest, ParsesThroughTheUmbrellaHeader) {
    EXPECT_FALSE(std::string_view(icepunch::kVersion).empty());
    auto candidate =
        icepunch::Candidate::parse("candidate:1 1 UDP 2013266431 10.0.0.1 5000 typ host");
    ASSERT_TRUE(candidate.ok()) << candidate.error().message;
    EXPECT_EQ(candidate->endpoint(), "10.0.0.1:5000");
    auto uri = icepunch::ServerUri::parse("turn:turn.example.org?transport=tcp");
    ASSERT_TRUE(uri.ok()) << uri.error().message;
    EXPECT_EQ(uri->effectiveTransport(), icepunch::Transport::Tcp);
}
