"""A throw-away certificate authority and server certificate.

The server certificate names 127.0.0.1, ::1, localhost and, on request,
further IP addresses. The files are made with the openssl command-line
tool, so the emulator needs no Python package beyond the standard library.
"""

import ipaddress
import subprocess
from pathlib import Path

DEFAULT_NAMES = ("IP:127.0.0.1", "IP:::1", "DNS:localhost")


class PkiFiles:
    """Paths of the CA certificate and the server's certificate and key."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.ca_cert = self.directory / "ca.pem"
        self.ca_key = self.directory / "ca.key"
        self.server_cert = self.directory / "server.pem"
        self.server_key = self.directory / "server.key"

    def exists(self):
        return all(p.is_file() for p in
                   (self.ca_cert, self.ca_key, self.server_cert,
                    self.server_key))


def _openssl(*args, cwd):
    result = subprocess.run(["openssl", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(
            f"openssl {args[0]} failed with status {result.returncode}: "
            f"{result.stderr.strip()}")


def _subject_alt_name(addresses):
    """Return the subjectAltName value for the default names plus addresses.

    Raises ValueError for an entry of addresses that is not an IP address.
    """
    names = list(DEFAULT_NAMES)
    for address in addresses:
        name = "IP:" + str(ipaddress.ip_address(address))
        if name not in names:
            names.append(name)
    return ",".join(names)


def make_pki(directory, addresses=()):
    """Create a CA and a server certificate in directory unless present.

    The server certificate is signed by the CA and names 127.0.0.1, ::1,
    localhost and each IP address in addresses. Files made earlier in
    directory are reused when the server.ext they were made from names the
    same addresses.
    Keys are ECDSA P-256. Returns the PkiFiles.
    """
    files = PkiFiles(directory)
    alt_names = _subject_alt_name(addresses)
    extensions = files.directory / "server.ext"
    if files.exists():
        try:
            if f"subjectAltName={alt_names}\n" in extensions.read_text():
                return files
        except FileNotFoundError:
            pass
    files.directory.mkdir(parents=True, exist_ok=True)
    cwd = files.directory
    _openssl("req", "-x509", "-new", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", files.ca_key.name, "-out", files.ca_cert.name,
             "-days", "3650", "-subj", "/CN=csipfs test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=cwd)
    _openssl("req", "-new", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", files.server_key.name, "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=cwd)
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={alt_names}\n")
    _openssl("x509", "-req", "-in", "server.csr",
             "-CA", files.ca_cert.name, "-CAkey", files.ca_key.name,
             "-CAcreateserial", "-out", files.server_cert.name,
             "-days", "825", "-sha256", "-extfile", extensions.name,
             cwd=cwd)
    for path in (files.ca_key, files.server_key):
        path.chmod(0o600)
    return files
