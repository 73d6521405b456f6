#pragma once

#include <icepunch/result.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace icepunch::support {

// What to put into a generated server certificate.
struct CertOptions {
    std::string commonName = "icepunch test server";
    std::vector<std::string> ipAddresses{"127.0.0.1", "::1"};
    std::vector<std::string> dnsNames{"localhost"};
    int validDays = 30;
};

// PEM files written by makeTestCertificate(); the CA key is never written to disk.
struct TestCertificate {
    std::string caFile;   // self-signed CA certificate: the trust anchor for clients
    std::string certFile; // server certificate signed by that CA
    std::string keyFile;  // server private key (mode 0600)
};

// Generates a fresh P-256 CA and a server certificate for it (OpenSSL C API, no subprocess),
// writing ca.pem, server-cert.pem and server-key.pem into dir (which must exist).
Result<TestCertificate> makeTestCertificate(const std::filesystem::path& dir,
                                            const CertOptions& options = {});

} // namespace icepunch::support
