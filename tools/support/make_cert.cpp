#include "make_cert.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <sys/stat.h>

#include <cstdint>
#include <memory>

namespace icepunch::support {

namespace {

struct PkeyFree {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
    void operator()(X509* p) const { X509_free(p); }
};
struct BioFree {
    void operator()(BIO* p) const { BIO_free_all(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

Error sslError(const std::string& what) {
    std::string message = "cannot " + what;
    if (unsigned long code = ERR_get_error(); code != 0) {
        char buf[256];
        ERR_error_string_n(code, buf, sizeof buf);
        message += ": ";
        message += buf;
    }
    ERR_clear_error();
    return Error{message};
}

Status addExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (ext == nullptr)
        return sslError("build certificate extension " + value);
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1)
        return sslError("add certificate extension " + value);
    return {};
}

struct Extension {
    int nid;
    std::string value;
};

// issuer == nullptr makes a self-signed certificate.
Result<X509Ptr> makeCertificate(const std::string& commonName, EVP_PKEY* key, X509* issuer,
                                EVP_PKEY* signingKey, int validDays,
                                const std::vector<Extension>& extensions) {
    X509Ptr cert(X509_new());
    if (!cert)
        return sslError("allocate a certificate");
    std::int64_t serial = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial) != 1)
        return sslError("draw a certificate serial number");
    serial &= INT64_MAX;
    X509_NAME* name = X509_get_subject_name(cert.get());
    bool ok = X509_set_version(cert.get(), X509_VERSION_3) == 1 &&
              ASN1_INTEGER_set_int64(X509_get_serialNumber(cert.get()), serial | 1) == 1 &&
              X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
              X509_gmtime_adj(X509_getm_notAfter(cert.get()), long{validDays} * 86400) != nullptr &&
              X509_set_pubkey(cert.get(), key) == 1 &&
              X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                         reinterpret_cast<const unsigned char*>(commonName.c_str()),
                                         -1, -1, 0) == 1 &&
              X509_set_issuer_name(cert.get(),
                                   issuer != nullptr ? X509_get_subject_name(issuer) : name) == 1;
    if (!ok)
        return sslError("fill in certificate " + commonName);
    X509* issuerCert = issuer != nullptr ? issuer : cert.get();
    for (const Extension& ext : extensions) {
        if (Status s = addExtension(cert.get(), issuerCert, ext.nid, ext.value); !s)
            return s.error();
    }
    if (X509_sign(cert.get(), signingKey, EVP_sha256()) == 0)
        return sslError("sign certificate " + commonName);
    return cert;
}

Status writePem(const std::filesystem::path& path, X509* cert, EVP_PKEY* key) {
    BioPtr bio(BIO_new_file(path.c_str(), "w"));
    if (!bio)
        return sslError("create " + path.string());
    if (key != nullptr) {
        // Private key: owner-only before any secret byte is written.
        ::chmod(path.c_str(), 0600);
        if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
            return sslError("write " + path.string());
    } else if (PEM_write_bio_X509(bio.get(), cert) != 1) {
        return sslError("write " + path.string());
    }
    if (BIO_flush(bio.get()) != 1)
        return sslError("flush " + path.string());
    return {};
}

} // namespace

Result<TestCertificate> makeTestCertificate(const std::filesystem::path& dir,
                                            const CertOptions& options) {
    PkeyPtr caKey(EVP_EC_gen("P-256"));
    PkeyPtr serverKey(EVP_EC_gen("P-256"));
    if (!caKey || !serverKey)
        return sslError("generate a P-256 key");

    auto ca =
        makeCertificate("icepunch test CA", caKey.get(), nullptr, caKey.get(), options.validDays,
                        {{NID_basic_constraints, "critical,CA:TRUE"},
                         {NID_key_usage, "critical,keyCertSign,cRLSign"},
                         {NID_subject_key_identifier, "hash"}});
    if (!ca)
        return ca.error();

    std::string san;
    for (const std::string& ip : options.ipAddresses)
        san += (san.empty() ? "IP:" : ",IP:") + ip;
    for (const std::string& dns : options.dnsNames)
        san += (san.empty() ? "DNS:" : ",DNS:") + dns;
    std::vector<Extension> serverExtensions{
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    if (!san.empty())
        serverExtensions.push_back({NID_subject_alt_name, san});
    auto server = makeCertificate(options.commonName, serverKey.get(), ca->get(), caKey.get(),
                                  options.validDays, serverExtensions);
    if (!server)
        return server.error();

    TestCertificate out{(dir / "ca.pem").string(), (dir / "server-cert.pem").string(),
                        (dir / "server-key.pem").string()};
    if (Status s = writePem(out.caFile, ca->get(), nullptr); !s)
        return s.error();
    if (Status s = writePem(out.certFile, server->get(), nullptr); !s)
        return s.error();
    if (Status s = writePem(out.keyFile, nullptr, serverKey.get()); !s)
        return s.error();
    return out;
}

} // namespace icepunch::support
