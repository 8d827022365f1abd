"""Signed result records: "official" means signed by the maintainers' key (Ed25519).

The official run signs each record it writes over a canonical serialisation of the record minus
its `signature` field:

    json.dumps(record_without_signature, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
               allow_nan=False).encode("utf-8")

and stores `{"algorithm": "ed25519", "key_id": ..., "value": <base64 signature>}` as the record's
`signature`. Any later edit of any field (a prediction, `official`, the task) breaks the signature.

The private key reaches the official run by path (`--signing-key PATH`) or through the
environment (SYNTHBENCH_SIGNING_KEY: a path, or the PEM text itself, e.g. from a CI secret); it is
never stored in the repository. The maintainers' public keys sit in `leaderboard/keys/*.pub`
(PEM); the leaderboard verifies against them (or against the folder/files given with `--keys` or
SYNTHBENCH_PUBLIC_KEYS, which the tests use with their own keypair).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import SynthbenchError
from .io import atomic_write_bytes

SIGNATURE_FIELD = "signature"
ALGORITHM = "ed25519"
PRIVATE_KEY_ENV = "SYNTHBENCH_SIGNING_KEY"
PUBLIC_KEYS_ENV = "SYNTHBENCH_PUBLIC_KEYS"
#: A PEM key file is a few hundred bytes; anything much larger is not a key.
MAX_KEY_BYTES = 16 * 1024


class SigningError(SynthbenchError):
    """A key cannot be read or a record cannot be signed."""


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the record minus `signature`, canonical JSON, UTF-8."""
    unsigned = {key: value for key, value in record.items() if key != SIGNATURE_FIELD}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read_key_bytes(path: Path, what: str) -> bytes:
    try:
        if not path.is_file():
            raise SigningError(f"{path}: {what} not found (or not a regular file)")
        if path.stat().st_size > MAX_KEY_BYTES:
            raise SigningError(f"{path}: too large to be a {what} ({path.stat().st_size} bytes)")
        return path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def load_private_key(source: str | os.PathLike | None = None) -> Ed25519PrivateKey:
    """The signing key from `source` (a PEM file), else from SYNTHBENCH_SIGNING_KEY (a path or PEM text)."""
    where: str
    if source is not None:
        where, data = str(source), _read_key_bytes(Path(source), "signing key")
    else:
        value = os.environ.get(PRIVATE_KEY_ENV, "")
        if not value:
            raise SigningError(
                f"official runs sign their records: pass --signing-key PATH or set {PRIVATE_KEY_ENV} "
                "(a path to the maintainers' Ed25519 private key, or its PEM text)"
            )
        if value.lstrip().startswith("-----BEGIN"):
            where, data = f"${PRIVATE_KEY_ENV}", value.encode("utf-8")
        else:
            where, data = value, _read_key_bytes(Path(value).expanduser(), "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{where}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{where}: not an Ed25519 key (got {type(key).__name__})")
    return key


def load_public_key(path: str | os.PathLike) -> Ed25519PublicKey:
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(_read_key_bytes(path, "public key"))
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{path}: not an Ed25519 public key (got {type(key).__name__})")
    return key


def load_public_keys(sources: list[str | os.PathLike]) -> dict[str, Ed25519PublicKey]:
    """{key_id: key} from .pub files and folders of them (sorted; a folder's other files are ignored)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for source in sources:
        path = Path(source)
        files = sorted(path.glob("*.pub")) if path.is_dir() else [path]
        for file in files:
            key = load_public_key(file)
            keys[key_id(key)] = key
    return keys


def sign_record(record: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """Set `record["signature"]` (in place, and return the record) over its canonical bytes."""
    try:
        message = canonical_bytes(record)
    except (TypeError, ValueError) as exc:
        raise SigningError(f"record cannot be serialised for signing ({exc})") from None
    record[SIGNATURE_FIELD] = {
        "algorithm": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "value": base64.b64encode(private_key.sign(message)).decode("ascii"),
    }
    return record


def verify_record(record: Mapping[str, Any], public_keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """None when `record` carries a valid signature by one of `public_keys`, else why not (one line)."""
    signature = record.get(SIGNATURE_FIELD)
    if signature is None:
        return "not signed"
    if not isinstance(signature, dict):
        return "signature is not an object"
    if signature.get("algorithm") != ALGORITHM:
        return f"signature algorithm is not {ALGORITHM}"
    key = public_keys.get(signature.get("key_id")) if isinstance(signature.get("key_id"), str) else None
    if key is None:
        return "signed by a key that is not one of the maintainers' public keys"
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
        key.verify(value, canonical_bytes(record))
    except (binascii.Error, ValueError, TypeError):
        return "signature value is not valid base64 or the record cannot be serialised"
    except InvalidSignature:
        return "signature does not verify: the record was changed after it was signed"
    return None


def generate_keypair(private_path: str | os.PathLike, public_path: str | os.PathLike) -> str:
    """Write a new Ed25519 keypair (private PEM with mode 0600, public PEM); return its key id.

    Refuses to overwrite either file: a lost private key only means a new keypair, an overwritten
    one means every record signed with it can no longer be re-signed.
    """
    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise SigningError(f"{path}: already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    atomic_write_bytes(public_path, public_pem)
    return key_id(key.public_key())


__all__ = [
    "ALGORITHM",
    "PRIVATE_KEY_ENV",
    "PUBLIC_KEYS_ENV",
    "SIGNATURE_FIELD",
    "SigningError",
    "canonical_bytes",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_public_keys",
    "sign_record",
    "verify_record",
]
