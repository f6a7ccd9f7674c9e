"""Signed bundles: an Ed25519 signature over the whole bundle file.

Why public keys (Ed25519) rather than a shared secret (HMAC): on a production line the engineer
who fits a model signs it, and many line computers verify it. With HMAC every verifier holds the
secret that also signs, so one compromised line computer can forge bundles for all the others;
with Ed25519 the line computers hold only the public key, which cannot sign.

The signature sits inside the file, in the safetensors metadata under ``anomalib_lite.signature``
(128 hex characters), and covers every byte of the file: the signed message is the SHA-256 of the
file with the signature's own 128 characters replaced by zeros (the writer signs a file holding
exactly those zeros, then writes the signature over them, so no offset moves). Changing any byte
afterwards, the header's whitespace included, breaks the signature.
"""
from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path

from ..errors import AnomalyError
from ..io import open_to_read

__all__ = ["SIGNATURE_KEY", "generate_keys", "load_private_key", "load_public_key", "sign_bytes", "sign_file",
           "verify_file", "verify_key_from_env"]

SIGNATURE_KEY = "anomalib_lite.signature"
PLACEHOLDER = "0" * 128
_MARK = f'"{SIGNATURE_KEY}":"'.encode()
_DOMAIN = b"anomalib_lite bundle signature v1\n"
ENV_VAR = "ANOMALY_VERIFY_KEY"
_CANONICAL = re.compile(rb"[0-9a-f]{128}")


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - a dependency, but say so clearly if it is missing
        raise AnomalyError("signing needs the 'cryptography' package: pip install cryptography") from None
    return serialization, ed25519


def generate_keys(private_path, public_path=None) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: the private key (PEM, mode 0600: it signs) and the public key
    (PEM, ``<private>.pub`` by default: it only verifies, hand it to the line computers)."""
    from ..io import atomic_output

    serialization, ed25519 = _crypto()
    private_path = Path(private_path)
    public_path = Path(public_path) if public_path else private_path.with_suffix(private_path.suffix + ".pub")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with atomic_output(private_path, "private key", mode=0o600) as tmp:
        tmp.write_bytes(pem)
    with atomic_output(public_path, "public key") as tmp:
        tmp.write_bytes(pub)
    return private_path, public_path


def _read_key_file(path, what: str) -> bytes:
    """A key file's bytes, read through one descriptor (a regular file of at most 64 KB)."""
    if path is None:
        raise AnomalyError(f"{what}: no key file given")
    check_key_name(path, what)
    p = Path(path)
    with os.fdopen(open_to_read(p, what), "rb") as fh:  # (a regular file)
        try:
            data = fh.read(64 * 1024 + 1)
        except OSError as e:
            raise AnomalyError(f"{p}: cannot read the {what} ({e.strerror})") from None
    if len(data) > 64 * 1024:
        raise AnomalyError(f"{p}: not a key file (larger than 64 KB)")
    return data


def load_private_key(path):
    """The Ed25519 private key in a PEM file (from ``anomaly keygen``)."""
    serialization, ed25519 = _crypto()
    data = _read_key_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise AnomalyError(f"{path}: not an unencrypted PEM private key (make one with anomaly keygen)") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise AnomalyError(f"{path}: not an Ed25519 private key (make one with anomaly keygen)")
    return key


def load_public_key(path):
    """The Ed25519 public key in a PEM file (a private key file works too: its public half)."""
    serialization, ed25519 = _crypto()
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise AnomalyError(f"{path}: not a PEM public key (anomaly keygen writes one beside the private key)") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise AnomalyError(f"{path}: not an Ed25519 public key")
    return key


def verify_key_from_env() -> str | None:
    """``$ANOMALY_VERIFY_KEY``: when set, every bundle loaded must carry a valid signature. Set
    but empty or blank is an error, never "no verification" (fail closed)."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return None
    check_key_name(value, f"${ENV_VAR}")
    return value


def check_key_name(value, what: str = "verify key") -> None:
    """Refuse a key file name that is empty or blank (a key asked for but not given)."""
    if isinstance(value, (str, os.PathLike)) and not os.fspath(value).strip():
        raise AnomalyError(f"{what}: set but empty; give the public key file (or unset it to load unsigned bundles)")


def _signature_span(data: bytes, where) -> tuple[int, int] | None:
    """Byte range of the signature's hex value inside the safetensors header, or None."""
    if len(data) < 8:
        return None
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8 : 8 + min(n, len(data) - 8)]
    first = header.find(_MARK)
    if first < 0:
        return None
    if header.find(_MARK, first + 1) >= 0:
        raise AnomalyError(f"{where}: more than one signature field (file tampered with)")
    start = 8 + first + len(_MARK)
    end = start + len(PLACEHOLDER)
    if data[end : end + 1] != b'"':
        raise AnomalyError(f"{where}: malformed signature field (file tampered with)")
    return start, end


def _digest(data: bytes, span: tuple[int, int]) -> bytes:
    h = hashlib.sha256()
    h.update(data[: span[0]])
    h.update(PLACEHOLDER.encode())
    h.update(data[span[1] :])
    return _DOMAIN + h.digest()


def sign_bytes(data: bytes, key) -> bytes:
    """A bundle's bytes (written with the placeholder signature) with the signature filled in;
    no offset moves. The signature is written in its one canonical spelling: lower-case hex."""
    span = _signature_span(data, "bundle")
    if span is None or data[span[0] : span[1]] != PLACEHOLDER.encode():
        raise AnomalyError("bundle: has no room for a signature (save it with sign=KEY)")
    return data[: span[0]] + key.sign(_digest(data, span)).hex().encode() + data[span[1] :]


def sign_file(path, key) -> None:
    """Sign a bundle file written with the placeholder signature, in place."""
    path = Path(path)
    try:
        path.write_bytes(sign_bytes(path.read_bytes(), key))
    except AnomalyError as e:
        raise AnomalyError(f"{path}: {str(e).partition(': ')[2]}") from None


def verify_file(path, key, data: bytes | None = None) -> None:
    """Raise AnomalyError unless the bundle carries a valid signature by ``key``. ``data``: the
    bundle's bytes, already read (what the caller goes on to parse: the bytes verified are the
    bytes used); else ``path`` is read once."""
    from cryptography.exceptions import InvalidSignature

    if data is None:
        data = Path(path).read_bytes()
    span = _signature_span(data, path)
    if span is None:
        raise AnomalyError(f"{path}: the bundle is not signed, and verification was asked for")
    text = data[span[0] : span[1]]
    if not _CANONICAL.fullmatch(text):  # one spelling only: upper case or other hex is a changed file
        raise AnomalyError(f"{path}: bad signature: not {len(PLACEHOLDER)} lower-case hex digits (file changed)")
    try:
        key.verify(bytes.fromhex(text.decode("ascii")), _digest(data, span))
    except InvalidSignature:
        raise AnomalyError(f"{path}: bad signature: the bundle was changed after signing, or signed with another key") from None
