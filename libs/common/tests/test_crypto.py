"""Envelope encryption: values and streams round-trip, tampering is caught, keys rotate and re-wrap."""

from __future__ import annotations

import base64
import io
import os
import stat

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from poise_common.crypto import (
    MASTER_KEY_FILE,
    STREAM_MAGIC,
    CryptoError,
    KeyRing,
    LocalMasterKey,
    MasterKeys,
    new_master_key_entry,
)
from poise_common.db.models import TenantKey
from poise_common.settings import PoiseSettings

CHUNK = 1024  # small chunks, so a few KiB make a many-chunk stream


def master(key_id: str = "m1") -> LocalMasterKey:
    return LocalMasterKey(key_id, os.urandom(32))


def ring(sessions, *keys: LocalMasterKey) -> KeyRing:
    return KeyRing(sessions, MasterKeys(list(keys) or [master()]))


def encrypt_stream(keys: KeyRing, tenant: str, data: bytes, aad: bytes = b"file", piece: int = 700) -> bytes:
    encryptor = keys.stream_encryptor(tenant, aad, chunk_bytes=CHUNK)
    out = b"".join(encryptor.update(data[i : i + piece]) for i in range(0, len(data), piece))
    return out + encryptor.finalize()


def decrypt_stream(keys: KeyRing, tenant: str, blob: bytes, aad: bytes = b"file", piece: int = 333) -> bytes:
    decryptor = keys.stream_decryptor(tenant, aad)
    out = b"".join(decryptor.update(blob[i : i + piece]) for i in range(0, len(blob), piece))
    return out + decryptor.finalize()


def test_a_value_round_trips_and_its_ciphertext_does_not_show_it(sessions):
    keys = ring(sessions)
    secret = b"my name is Ada Lovelace and I led the migration"
    blob = keys.encrypt("acme", secret, b"row-1")
    assert secret not in blob and b"Lovelace" not in blob
    assert keys.decrypt("acme", blob, b"row-1") == secret
    assert keys.encrypt("acme", secret, b"row-1") != blob  # a fresh nonce every time
    assert keys.unseal("acme", keys.seal("acme", {"t": ["é", 1.5]}, "x"), "x") == {"t": ["é", 1.5]}


def test_a_value_does_not_open_for_another_tenant_record_or_after_a_bit_flip(sessions):
    keys = ring(sessions)
    blob = keys.encrypt("acme", b"transcript words", b"answer-1")
    with pytest.raises(CryptoError):
        keys.decrypt("globex", blob, b"answer-1")  # another tenant (its own key, and the tenant is authenticated)
    with pytest.raises(CryptoError):
        keys.decrypt("acme", blob, b"answer-2")  # moved to another record
    for position in (0, 4, 10, len(blob) // 2, len(blob) - 1):
        flipped = bytearray(blob)
        flipped[position] ^= 0x01
        with pytest.raises(CryptoError):
            keys.decrypt("acme", bytes(flipped), b"answer-1")
    with pytest.raises(CryptoError):
        keys.decrypt("acme", blob[:20], b"answer-1")


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 10 * CHUNK + 17])
def test_a_stream_round_trips_at_every_size_around_the_chunk(sessions, size):
    keys = ring(sessions)
    data = os.urandom(size)
    blob = encrypt_stream(keys, "acme", data)
    assert blob.startswith(STREAM_MAGIC)
    assert decrypt_stream(keys, "acme", blob) == data


def split_stream(keys: KeyRing, full: int, tail: int) -> tuple[bytes, bytes, list[bytes], bytes]:
    """A stream of ``full`` whole chunks and ``tail`` more bytes: (it all, header, whole chunks, last chunk)."""
    blob = encrypt_stream(keys, "acme", os.urandom(full * CHUNK + tail))
    sealed = CHUNK + 16
    header = len(blob) - (full * sealed + tail + 16)
    chunks = [blob[header + i * sealed : header + (i + 1) * sealed] for i in range(full)]
    return blob, blob[:header], chunks, blob[header + full * sealed :]


def test_a_truncated_stream_is_refused_at_every_cut(sessions):
    keys = ring(sessions)
    blob, head, _chunks, _last = split_stream(keys, 4, 100)
    header = len(head)
    cuts = {header + k * (CHUNK + 16) for k in range(5)} | {1, header - 1, header + 5, len(blob) - 1, len(blob) - 16}
    for cut in sorted(cuts):
        with pytest.raises(CryptoError):
            decrypt_stream(keys, "acme", blob[:cut])


def test_reordered_dropped_or_appended_chunks_are_refused(sessions):
    keys = ring(sessions)
    blob, head, chunks, last = split_stream(keys, 3, 10)
    variants = {
        "swapped": head + chunks[1] + chunks[0] + chunks[2] + last,
        "dropped": head + chunks[0] + chunks[2] + last,
        "duplicated": head + chunks[0] + chunks[0] + chunks[1] + chunks[2] + last,
        "appended": blob + chunks[0],
        "last moved first": head + last + chunks[0] + chunks[1] + chunks[2],
    }
    for name, variant in variants.items():
        with pytest.raises(CryptoError):
            decrypt_stream(keys, "acme", variant)
            pytest.fail(name)


def test_a_stream_is_bound_to_its_tenant_and_file(sessions):
    keys = ring(sessions)
    blob = encrypt_stream(keys, "acme", b"x" * 5000, aad=b"interview-1/a1")
    with pytest.raises(CryptoError):
        decrypt_stream(keys, "globex", blob, aad=b"interview-1/a1")
    with pytest.raises(CryptoError):
        decrypt_stream(keys, "acme", blob, aad=b"interview-1/a2")


def test_decrypt_file_streams_a_file(sessions, tmp_path):
    keys = ring(sessions)
    data = os.urandom(5 * CHUNK + 3)
    source = tmp_path / "answer.media"
    source.write_bytes(encrypt_stream(keys, "acme", data))
    sink = io.BytesIO()
    assert keys.decrypt_file("acme", source, sink, b"file", block=1000) == len(data)
    assert sink.getvalue() == data


def test_rotation_keeps_old_data_readable_and_encrypts_new_data_with_the_new_version(sessions):
    keys = ring(sessions)
    old_value = keys.encrypt("acme", b"before", b"r")
    old_stream = encrypt_stream(keys, "acme", b"s" * 3000)
    assert keys.active_key("acme")[0] == 1
    assert keys.rotate("acme") == 2
    new_value = keys.encrypt("acme", b"after", b"r")
    assert int.from_bytes(old_value[3:7], "big") == 1 and int.from_bytes(new_value[3:7], "big") == 2
    # Another process (a fresh ring: nothing cached) reads both versions and writes with the new one.
    other = KeyRing(sessions, keys.masters)
    assert other.decrypt("acme", old_value, b"r") == b"before"
    assert other.decrypt("acme", new_value, b"r") == b"after"
    assert decrypt_stream(other, "acme", old_stream) == b"s" * 3000
    assert other.active_key("acme")[0] == 2
    with sessions() as session:
        stored = session.execute(select(TenantKey.version, TenantKey.active).where(TenantKey.tenant == "acme")
                                 .order_by(TenantKey.version)).all()
    assert [tuple(v) for v in stored] == [(1, False), (2, True)]
    assert keys.active_key("globex")[0] == 1  # tenants rotate separately


def test_another_process_sees_a_rotation_once_its_cache_expires(sessions):
    first = KeyRing(sessions, MasterKeys([master()]), active_ttl_s=0)
    second = KeyRing(sessions, first.masters, active_ttl_s=0)
    assert second.active_key("acme")[0] == 1
    first.rotate("acme")
    assert second.active_key("acme")[0] == 2


def test_rewrap_moves_every_data_key_to_the_new_master_and_data_still_opens(sessions):
    old, new = master("old"), master("new")
    keys = ring(sessions, old)
    blobs = {tenant: keys.encrypt(tenant, tenant.encode(), b"r") for tenant in ("acme", "globex")}
    keys.rotate("acme")
    blobs["acme-v2"] = keys.encrypt("acme", b"acme-v2", b"r")
    both = KeyRing(sessions, MasterKeys([new, old]))
    assert sorted(both.rewrap("new")) == [("acme", 1), ("acme", 2), ("globex", 1)]
    assert both.rewrap("new") == []  # nothing left to move
    with sessions() as session:
        assert set(session.scalars(select(TenantKey.master_key_id))) == {"new"}
    only_new = KeyRing(sessions, MasterKeys([new]))
    assert only_new.decrypt("acme", blobs["acme"], b"r") == b"acme"
    assert only_new.decrypt("globex", blobs["globex"], b"r") == b"globex"
    assert only_new.decrypt("acme", blobs["acme-v2"], b"r") == b"acme-v2"
    with pytest.raises(CryptoError, match="not among"):
        KeyRing(sessions, MasterKeys([old])).decrypt("acme", blobs["acme"], b"r")


def test_a_wrapped_key_moved_to_another_tenant_does_not_unwrap(sessions):
    keys = ring(sessions)
    keys.active_key("acme")
    keys.active_key("globex")
    with sessions.begin() as session:
        acme = session.scalar(select(TenantKey.wrapped_key).where(TenantKey.tenant == "acme"))
        session.execute(update(TenantKey).where(TenantKey.tenant == "globex").values(wrapped_key=acme))
    with pytest.raises(CryptoError):
        KeyRing(sessions, keys.masters).key("globex", 1)


def test_the_data_key_is_stored_only_wrapped(sessions):
    keys = ring(sessions)
    version, key = keys.active_key("acme")
    with sessions() as session:
        row = session.scalar(select(TenantKey).where(TenantKey.tenant == "acme"))
    assert key not in base64.b64decode(row.wrapped_key) and row.master_key_id == "m1"


def test_reference_hashes_are_keyed_per_tenant_and_survive_rotation(sessions):
    keys = ring(sessions)
    first = keys.ref_hash("acme", "ats-123")
    assert len(first) == 64 and "ats-123" not in first
    assert keys.ref_hash("globex", "ats-123") != first
    assert keys.ref_hash("acme", "ats-124") != first
    keys.rotate("acme")
    assert KeyRing(sessions, keys.masters).ref_hash("acme", "ats-123") == first
    assert KeyRing(sessions, MasterKeys([master()])).ref_hash("zeta", "ats-123") != first


def test_master_keys_from_settings_and_the_generated_one(tmp_path):
    home = tmp_path / "home"
    generated = MasterKeys.from_settings(PoiseSettings(home=home))
    path = home / MASTER_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert MasterKeys.from_settings(PoiseSettings(home=home)).active.key_id == generated.active.key_id
    entry = new_master_key_entry("prod-2")
    configured = MasterKeys.from_settings(PoiseSettings(home=home, master_keys=SecretStr(entry)))
    # The configured key wraps from now on; the kept one still unwraps what it wrapped.
    assert configured.ids == ["prod-2", generated.active.key_id]
    elsewhere = MasterKeys.from_settings(PoiseSettings(home=tmp_path / "other", master_keys=SecretStr(entry)))
    assert elsewhere.ids == ["prod-2"] and not (tmp_path / "other" / MASTER_KEY_FILE).exists()


@pytest.mark.parametrize("text, message", [
    ("", "holds no key"),
    ("nocolon", "id:base64"),
    ("k1:not base64!", "not valid base64"),
    (f"k1:{base64.b64encode(b'short').decode()}", "32 bytes"),
    (f"bad id:{base64.b64encode(bytes(32)).decode()}", "master key id"),
])
def test_bad_master_key_settings_are_refused_without_echoing_the_key(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        MasterKeys.parse(text)
    if ":" in text:
        assert text.split(":", 1)[1] not in str(caught.value)
