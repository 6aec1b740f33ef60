"""Sealing trace content at rest: AES-256-GCM under a key ring (``cryptography``'s AESGCM).

The ring comes from ``WORKBENCH_ENCRYPTION_KEYS`` as ``id:base64key,id:base64key``, the active
key first; the others stay readable so that content sealed before a rotation still opens. A
sealed value is ``nonce (12 bytes) || ciphertext+tag`` with its key id stored beside it, and the
row it belongs to as associated data, so a ciphertext copied onto another row does not open.

Without a configured ring, a development key is generated once under ``data_dir`` with 0600
permissions; ``KeyRing.development`` says so, and every page shows a warning.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import ConfigurationError, WorkbenchError
from core.settings import Settings

NONCE_BYTES = 12
KEY_BYTES = 32
DEV_KEY_FILE = "dev-encryption.key"


class DecryptionError(WorkbenchError):
    """Sealed content that cannot be opened: its key is missing from the ring, or is not the key it was sealed with."""


class KeyRotationError(WorkbenchError):
    """Rotation stopped: rows are sealed under a key the ring lacks, or a key that does not open them."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    blob: bytes


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[tuple[str, bytes], ...]
    """(id, 32-byte key), the active key first."""
    development: bool = False

    @property
    def active_id(self) -> str:
        return self.keys[0][0]

    def key(self, key_id: str) -> bytes:
        for kid, key in self.keys:
            if kid == key_id:
                return key
        known = ", ".join(kid for kid, _ in self.keys)
        raise DecryptionError(
            f"This content was sealed with key '{key_id}', which is not in the key ring ({known}). Add that key to "
            "WORKBENCH_ENCRYPTION_KEYS after the active one, or run `python -m core keys rotate` while it is there."
        )

    def seal(self, plaintext: bytes, *, aad: bytes) -> Sealed:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return Sealed(self.active_id, nonce + AESGCM(self.keys[0][1]).encrypt(nonce, plaintext, aad))

    def open(self, key_id: str, blob: bytes, *, aad: bytes) -> bytes:
        key = self.key(key_id)
        if len(blob) < NONCE_BYTES + 16:
            raise DecryptionError(f"Sealed content under key '{key_id}' is truncated ({len(blob)} bytes).")
        try:
            return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError(
                f"Key '{key_id}' in the key ring does not open this content: either the key stored under that id "
                "is not the one it was sealed with, or the content was altered. Check WORKBENCH_ENCRYPTION_KEYS."
            ) from None

    def seal_json(self, value: Any, *, aad: bytes) -> Sealed:
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        return self.seal(data, aad=aad)

    def open_json(self, key_id: str, blob: bytes, *, aad: bytes) -> Any:
        return json.loads(self.open(key_id, blob, aad=aad))


def new_key() -> str:
    """A fresh key, base64 as ``WORKBENCH_ENCRYPTION_KEYS`` expects it."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_ring(text: str) -> tuple[tuple[str, bytes], ...]:
    keys: list[tuple[str, bytes]] = []
    for number, item in enumerate(part.strip() for part in text.split(",") if part.strip()):
        kid, sep, encoded = item.partition(":")
        kid = kid.strip()
        if not sep or not kid:
            raise ConfigurationError(
                f"WORKBENCH_ENCRYPTION_KEYS entry {number + 1} is not 'id:base64key' (ids and keys are not shown)."
            )
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"WORKBENCH_ENCRYPTION_KEYS key '{kid}' is not valid base64.") from None
        if len(key) != KEY_BYTES:
            raise ConfigurationError(
                f"WORKBENCH_ENCRYPTION_KEYS key '{kid}' is {len(key)} bytes; AES-256 needs {KEY_BYTES} "
                f"(make one with `python -m core keys new`)."
            )
        if any(kid == seen for seen, _ in keys):
            raise ConfigurationError(f"WORKBENCH_ENCRYPTION_KEYS names key '{kid}' twice.")
        keys.append((kid, key))
    if not keys:
        raise ConfigurationError("WORKBENCH_ENCRYPTION_KEYS is set but holds no key.")
    return tuple(keys)


def _development_ring(data_dir: Path) -> KeyRing:
    path = data_dir / DEV_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        text = f"dev-{secrets.token_hex(4)}:{new_key()}\n"
        try:
            # O_EXCL: two processes starting at once keep the first key, never two different ones.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
    return KeyRing(parse_ring(path.read_text()), development=True)


_rings: dict[tuple[str, str], KeyRing] = {}


def key_ring(settings: Settings) -> KeyRing:
    """The ring the settings name (parsed once per distinct configuration)."""
    secret = settings.encryption_keys.get_secret_value() if settings.encryption_keys else ""
    cache_key = (secret, str(settings.data_dir))
    ring = _rings.get(cache_key)
    if ring is None:
        ring = KeyRing(parse_ring(secret)) if secret else _development_ring(settings.data_dir)
        _rings[cache_key] = ring
    return ring


def span_aad(tenant_id: int, trace_id: str, span_id: str) -> bytes:
    """What a trajectory event's sealed content is bound to: its tenant, run and span."""
    return f"span:{tenant_id}:{trace_id}:{span_id}".encode()
