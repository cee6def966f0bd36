"""Envelope encryption of candidate data at rest: AES-256-GCM under per-tenant data keys.

Each tenant has data keys (table ``tenant_keys``): random 32 bytes, stored only wrapped by a
master key. The newest version encrypts; every version keeps decrypting what it wrote, so a
new version (``KeyRing.rotate``) needs no re-encryption and no downtime. Wrapping keys are
:class:`MasterKey` objects: :class:`LocalMasterKey` holds the key material itself (from the
``POISE_MASTER_KEYS`` setting, or a file under ``POISE_HOME``); a key management service
replaces it by implementing the same two calls (for example AWS KMS ``Encrypt``/``Decrypt`` or
Google Cloud KMS ``encrypt``/``decrypt``, passing ``context`` as the encryption context or
additional authenticated data). ``KeyRing.rewrap`` moves every data key to another master key
while the service runs: processes that still hold the old one keep working until restarted.

Formats (integers big-endian):

- a value (``encrypt``): ``"PZ" 0x01 | key version (4) | nonce (12) | ciphertext and tag``;
- a stream (``stream_encryptor``), for media files up to several GiB: ``"PZS" 0x01 | key
  version (4) | chunk size (4) | salt (16)``, then chunks of ``chunk size`` bytes (the last one
  shorter, possibly empty), each sealed with its own tag. The chunk key is derived from the data
  key and the salt (HKDF-SHA256), so nonces never repeat across files; a chunk's nonce is its
  index (11 bytes) and a final flag (1 byte), so chunks cannot be reordered, dropped or
  appended, and a stream cut at a chunk boundary fails because its last chunk is not final.

The header is authenticated with every value and chunk, together with the tenant and the
caller's ``aad`` (what the data is, e.g. which interview), so ciphertext moved to another row,
file or tenant does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from poise_common.db.models import TenantKey
from poise_common.secret_files import kept_secret

if TYPE_CHECKING:
    from sqlalchemy.orm import sessionmaker

    from poise_common.settings import PoiseSettings

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MASTER_KEY_FILE = "master.key"
VALUE_MAGIC = b"PZ\x01"
STREAM_MAGIC = b"PZS\x01"
STREAM_CHUNK_BYTES = 256 * 1024
_VALUE_HEADER = struct.Struct(">3sI")
_STREAM_HEADER = struct.Struct(">4sII16s")
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAX_CHUNK_BYTES = 16 << 20  # a header asking for more is not one this code wrote


class CryptoError(Exception):
    """Data cannot be encrypted or decrypted: tampered, truncated, another tenant's, or its key is missing."""


# -- master keys -------------------------------------------------------------------------------
class MasterKey(Protocol):
    """Wraps and unwraps data keys. ``context`` must be given again, unchanged, to unwrap."""

    key_id: str

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class LocalMasterKey:
    """A master key held in this process: AES-256-GCM with a random nonce per wrap."""

    def __init__(self, key_id: str, key: bytes) -> None:
        if not _KEY_ID.match(key_id):
            raise ValueError("a master key id is 1-64 letters, digits, '_', '.' or '-'")
        if len(key) != KEY_BYTES:
            raise ValueError(f"master key {key_id} must be {KEY_BYTES} bytes")
        self.key_id = key_id
        self._aead = AESGCM(key)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
        except InvalidTag:
            raise CryptoError(f"master key {self.key_id} cannot unwrap this data key") from None


class MasterKeys:
    """The master keys a process holds; the first wraps new data keys, every one unwraps."""

    def __init__(self, keys: Sequence[MasterKey]) -> None:
        if not keys:
            raise ValueError("at least one master key is needed")
        self._keys = {k.key_id: k for k in keys}
        if len(self._keys) != len(keys):
            raise ValueError("master key ids must be unique")
        self.active = keys[0]

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def get(self, key_id: str) -> MasterKey:
        found = self._keys.get(key_id)
        if found is None:
            raise CryptoError(
                f"master key {key_id!r} is not among this process's ({', '.join(self._keys)}); every process "
                "needs the same POISE_MASTER_KEYS"
            )
        return found

    @classmethod
    def parse(cls, text: str) -> list[LocalMasterKey]:
        """``id:base64,id:base64`` as POISE_MASTER_KEYS has them (never echoed in errors)."""
        keys = []
        for entry in filter(None, (e.strip() for e in text.split(","))):
            key_id, sep, encoded = entry.partition(":")
            if not sep:
                raise ValueError("POISE_MASTER_KEYS entries read id:base64key")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"master key {key_id.strip()!r} is not valid base64") from None
            keys.append(LocalMasterKey(key_id.strip(), key))
        if not keys:
            raise ValueError("POISE_MASTER_KEYS holds no key")
        return keys

    @classmethod
    def from_settings(cls, settings: PoiseSettings) -> MasterKeys:
        """POISE_MASTER_KEYS, then the key kept in POISE_HOME when there is one (so data keys it
        wrapped still open after keys are configured). Nothing configured: the kept key, made once."""
        path = settings.home_dir / MASTER_KEY_FILE
        configured = cls.parse(settings.master_keys.get_secret_value()) if settings.master_keys else []
        if configured and not path.exists():
            return cls(configured)
        kept = _kept_master_key(path)
        return cls([*configured, kept] if kept.key_id not in {k.key_id for k in configured} else configured)


def _kept_master_key(path: Path) -> LocalMasterKey:
    key = bytes.fromhex(kept_secret(path).decode())
    # The id is derived from the key, so two hosts that each made their own are told apart.
    return LocalMasterKey("home-" + hashlib.sha256(key).hexdigest()[:12], key)


def new_master_key_entry(key_id: str) -> str:
    """A fresh ``id:base64`` entry for POISE_MASTER_KEYS."""
    LocalMasterKey(key_id, bytes(KEY_BYTES))  # validates the id
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


# -- streams ---------------------------------------------------------------------------------
def _stream_aead(data_key: bytes, header: bytes) -> AESGCM:
    salt = header[-16:]
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=b"poise media stream v1")
    return AESGCM(hkdf.derive(data_key))


def _chunk_nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(NONCE_BYTES - 1, "big") + (b"\x01" if final else b"\x00")


class StreamEncryptor:
    """Encrypts a stream piece by piece: ``update`` returns the sealed chunks completed so far,
    ``finalize`` the last one; written in order they make one decryptable file."""

    def __init__(self, data_key: bytes, version: int, aad: bytes, chunk_bytes: int = STREAM_CHUNK_BYTES) -> None:
        self.header = _STREAM_HEADER.pack(STREAM_MAGIC, version, chunk_bytes, os.urandom(16))
        self._aead = _stream_aead(data_key, self.header)
        self._aad = self.header + aad
        self._chunk = chunk_bytes
        self._pending = bytearray()
        self._index = 0
        self._started = self._finished = False

    def _head(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self.header

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise CryptoError("the stream is already finalized")
        self._pending += data
        out = [self._head()]
        # Strictly more than a chunk: the last chunk is held back until finalize marks it final.
        while len(self._pending) > self._chunk:
            out.append(self._seal(bytes(self._pending[: self._chunk]), final=False))
            del self._pending[: self._chunk]
        return b"".join(out)

    def finalize(self) -> bytes:
        head = self._head()
        self._finished = True
        last = self._seal(bytes(self._pending), final=True)
        self._pending.clear()
        return head + last

    def _seal(self, plain: bytes, final: bool) -> bytes:
        sealed = self._aead.encrypt(_chunk_nonce(self._index, final), plain, self._aad)
        self._index += 1
        return sealed


class StreamDecryptor:
    """Decrypts what :class:`StreamEncryptor` wrote; ``key_of(version)`` gives the data key.

    ``update`` returns only authenticated plaintext; ``finalize`` raises :class:`CryptoError`
    unless the stream ended with its final chunk, so a truncated file is never taken as whole.
    """

    def __init__(self, key_of: Callable[[int], bytes], aad: bytes) -> None:
        self._key_of = key_of
        self._aad_suffix = aad
        self._pending = bytearray()
        self._aead: AESGCM | None = None
        self._aad = b""
        self._chunk = 0
        self._index = 0
        self._finished = False

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise CryptoError("data after the end of the stream")
        self._pending += data
        if self._aead is None:
            if len(self._pending) < _STREAM_HEADER.size:
                return b""
            self._start(bytes(self._pending[: _STREAM_HEADER.size]))
            del self._pending[: _STREAM_HEADER.size]
        sealed = self._chunk + TAG_BYTES
        out = []
        while len(self._pending) > sealed:
            out.append(self._open(bytes(self._pending[:sealed]), final=False))
            del self._pending[:sealed]
        return b"".join(out)

    def finalize(self) -> bytes:
        if self._aead is None:
            raise CryptoError("not an encrypted stream (too short)")
        if len(self._pending) < TAG_BYTES:
            raise CryptoError("the encrypted stream is truncated")
        last = self._open(bytes(self._pending), final=True)
        self._pending.clear()
        self._finished = True
        return last

    def _start(self, header: bytes) -> None:
        magic, version, chunk, _salt = _STREAM_HEADER.unpack(header)
        if magic != STREAM_MAGIC or not 0 < chunk <= _MAX_CHUNK_BYTES:
            raise CryptoError("not an encrypted stream of a known format")
        self._aead = _stream_aead(self._key_of(version), header)
        self._aad = header + self._aad_suffix
        self._chunk = chunk

    def _open(self, sealed: bytes, final: bool) -> bytes:
        try:
            plain = self._aead.decrypt(_chunk_nonce(self._index, final), sealed, self._aad)
        except InvalidTag:
            what = "truncated, reordered or altered" if final else "altered or reordered"
            raise CryptoError(f"the encrypted stream is {what} (chunk {self._index})") from None
        self._index += 1
        return plain


# -- the key ring ----------------------------------------------------------------------------
def _wrap_context(tenant: str, version: int) -> bytes:
    # A wrapped key copied to another tenant's or version's row does not unwrap there.
    return f"poise tenant data key v1\n{tenant}\n{version}".encode()


def _value_aad(header: bytes, tenant: str, aad: bytes) -> bytes:
    return header + tenant.encode() + b"\x00" + aad


class KeyRing:
    """Tenants' data keys (created on first use, rotated, re-wrapped) and encryption with them.

    Unwrapped keys are cached in memory (a version's key never changes); which version is
    active is re-read every ``active_ttl_s``, so a rotation made by another process is
    picked up within that time, while the previous version still decrypts.
    """

    def __init__(self, sessions: sessionmaker, masters: MasterKeys, active_ttl_s: float = 30.0) -> None:
        self.sessions = sessions
        self.masters = masters
        self.active_ttl_s = active_ttl_s
        self._keys: dict[tuple[str, int], bytes] = {}
        self._active: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, sessions: sessionmaker, settings: PoiseSettings) -> KeyRing:
        return cls(sessions, MasterKeys.from_settings(settings))

    # -- keys ------------------------------------------------------------------------------
    def active_key(self, tenant: str) -> tuple[int, bytes]:
        """The version that encrypts for ``tenant`` now, and its key (made on the tenant's first use)."""
        with self._lock:
            cached = self._active.get(tenant)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], self.key(tenant, cached[1])
        with self.sessions() as session:
            version = session.scalar(
                select(TenantKey.version).where(TenantKey.tenant == tenant, TenantKey.active.is_(True))
                .order_by(TenantKey.version.desc()).limit(1)
            )
        if version is None:
            version = self._create(tenant, 1)
        with self._lock:
            self._active[tenant] = (time.monotonic() + self.active_ttl_s, version)
        return version, self.key(tenant, version)

    def key(self, tenant: str, version: int) -> bytes:
        with self._lock:
            found = self._keys.get((tenant, version))
        if found is not None:
            return found
        with self.sessions() as session:
            row = session.scalar(select(TenantKey).where(TenantKey.tenant == tenant, TenantKey.version == version))
            if row is None:
                raise CryptoError(f"tenant {tenant} has no data key version {version}")
            wrapped, master_id = base64.b64decode(row.wrapped_key), row.master_key_id
        key = self.masters.get(master_id).unwrap(wrapped, _wrap_context(tenant, version))
        with self._lock:
            self._keys[(tenant, version)] = key
        return key

    def _create(self, tenant: str, version: int, deactivate: bool = False) -> int:
        """Store a new data key ``version``; the one that won a race with another process otherwise."""
        key = secrets.token_bytes(KEY_BYTES)
        master = self.masters.active
        wrapped = base64.b64encode(master.wrap(key, _wrap_context(tenant, version))).decode()
        try:
            with self.sessions.begin() as session:
                if deactivate:
                    session.execute(update(TenantKey).where(TenantKey.tenant == tenant).values(active=False))
                session.add(TenantKey(id=secrets.token_hex(16), tenant=tenant, version=version,
                                      wrapped_key=wrapped, master_key_id=master.key_id, active=True))
        except IntegrityError:
            if deactivate:
                raise CryptoError(f"tenant {tenant}'s data key was rotated at the same time; try again") from None
            return version  # another process made this version first: use theirs
        with self._lock:
            self._keys[(tenant, version)] = key
        return version

    def rotate(self, tenant: str) -> int:
        """Make a new data key version for ``tenant`` and encrypt with it from now on; returns it."""
        with self.sessions() as session:
            newest = session.scalar(select(TenantKey.version).where(TenantKey.tenant == tenant)
                                    .order_by(TenantKey.version.desc()).limit(1))
        version = self._create(tenant, (newest or 0) + 1, deactivate=newest is not None)
        with self._lock:
            self._active[tenant] = (time.monotonic() + self.active_ttl_s, version)
        return version

    def rewrap(self, master_id: str | None = None) -> list[tuple[str, int]]:
        """Wrap every data key with master key ``master_id`` (default: the active one); returns the
        (tenant, version) of those that changed. The keys themselves stay the same, so nothing else
        is re-encrypted."""
        target = self.masters.get(master_id) if master_id else self.masters.active
        changed = []
        with self.sessions() as session:
            rows = session.execute(
                select(TenantKey.id, TenantKey.tenant, TenantKey.version, TenantKey.wrapped_key,
                       TenantKey.master_key_id).where(TenantKey.master_key_id != target.key_id)
            ).all()
        for row_id, tenant, version, wrapped, old_master in rows:
            context = _wrap_context(tenant, version)
            key = self.masters.get(old_master).unwrap(base64.b64decode(wrapped), context)
            rewrapped = base64.b64encode(target.wrap(key, context)).decode()
            with self.sessions.begin() as session:
                # Conditional: a concurrent rewrap of the same row changes it once.
                result = session.execute(
                    update(TenantKey).where(TenantKey.id == row_id, TenantKey.master_key_id == old_master)
                    .values(wrapped_key=rewrapped, master_key_id=target.key_id)
                )
            if result.rowcount:
                changed.append((tenant, version))
        return changed

    # -- values ----------------------------------------------------------------------------
    def encrypt(self, tenant: str, plaintext: bytes, aad: bytes = b"") -> bytes:
        version, key = self.active_key(tenant)
        header = _VALUE_HEADER.pack(VALUE_MAGIC, version)
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + AESGCM(key).encrypt(nonce, plaintext, _value_aad(header, tenant, aad))

    def decrypt(self, tenant: str, blob: bytes, aad: bytes = b"") -> bytes:
        if len(blob) < _VALUE_HEADER.size + NONCE_BYTES + TAG_BYTES or not blob.startswith(VALUE_MAGIC):
            raise CryptoError("not an encrypted value of a known format")
        header = blob[: _VALUE_HEADER.size]
        _magic, version = _VALUE_HEADER.unpack(header)
        nonce = blob[_VALUE_HEADER.size : _VALUE_HEADER.size + NONCE_BYTES]
        try:
            return AESGCM(self.key(tenant, version)).decrypt(
                nonce, blob[_VALUE_HEADER.size + NONCE_BYTES :], _value_aad(header, tenant, aad)
            )
        except InvalidTag:
            raise CryptoError("the encrypted value is altered, or belongs to another tenant or record") from None

    def seal(self, tenant: str, value: Any, aad: str) -> str:
        """A JSON-serialisable value as base64 text of its encryption (for JSON columns)."""
        plain = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        return base64.b64encode(self.encrypt(tenant, plain, aad.encode())).decode()

    def unseal(self, tenant: str, text: str, aad: str) -> Any:
        try:
            blob = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("not an encrypted value of a known format") from None
        return json.loads(self.decrypt(tenant, blob, aad.encode()))

    # -- streams ---------------------------------------------------------------------------
    def stream_encryptor(self, tenant: str, aad: bytes, chunk_bytes: int = STREAM_CHUNK_BYTES) -> StreamEncryptor:
        version, key = self.active_key(tenant)
        return StreamEncryptor(key, version, tenant.encode() + b"\x00" + aad, chunk_bytes)

    def stream_decryptor(self, tenant: str, aad: bytes) -> StreamDecryptor:
        return StreamDecryptor(lambda version: self.key(tenant, version), tenant.encode() + b"\x00" + aad)

    def decrypt_file(self, tenant: str, source: Path, target: BinaryIO, aad: bytes, block: int = 1 << 20) -> int:
        """Decrypt the stream in ``source`` into ``target``; returns the plaintext size."""
        decryptor = self.stream_decryptor(tenant, aad)
        size = 0
        for piece in _read_blocks(source, block):
            plain = decryptor.update(piece)
            target.write(plain)
            size += len(plain)
        last = decryptor.finalize()
        target.write(last)
        return size + len(last)

    # -- keyed hashes ----------------------------------------------------------------------
    def ref_hash(self, tenant: str, reference: str) -> str:
        """HMAC-SHA256 of a caller's reference (e.g. for a candidate) under a key derived from the
        tenant's first data key: stable across rotations, useless without the master key."""
        self.active_key(tenant)  # makes version 1 on the tenant's first use
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"poise reference hash v1")
        return hmac.new(hkdf.derive(self.key(tenant, 1)), reference.encode(), hashlib.sha256).hexdigest()


def _read_blocks(path: Path, block: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while piece := fh.read(block):
            yield piece
