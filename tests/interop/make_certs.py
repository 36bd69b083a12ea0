"""Makes throwaway test certificates for the TLS and mTLS interop checks (nothing is committed).

Usage: python tests/interop/make_certs.py DIR

Writes DIR/ca.pem (the CA, trusted by clients and, as TLS_CLIENT_CA_FILE, by the server),
DIR/server.pem + server.key (for localhost and 127.0.0.1) and DIR/client.pem + client.key
(subject CN=interop-client,O=Acme).
"""

import datetime
import ipaddress
import pathlib
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def name(*attributes):
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def write_key(path, key):
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def issue(subject, issuer, issuer_key, key, extensions):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def main(out):
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name((NameOID.COMMON_NAME, "itnio-otp-grpc interop CA"))
    ca = issue(ca_name, ca_name, ca_key, ca_key, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    leaves = {
        "server": (
            name((NameOID.COMMON_NAME, "localhost")),
            [
                (x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            ],
        ),
        "client": (
            name((NameOID.COMMON_NAME, "interop-client"), (NameOID.ORGANIZATION_NAME, "Acme")),
            [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        ),
    }
    for leaf, (subject, extensions) in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        extensions = [(x509.BasicConstraints(ca=False, path_length=None), True), *extensions]
        cert = issue(subject, ca_name, ca_key, key, extensions)
        (out / f"{leaf}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(out / f"{leaf}.key", key)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
