"""Staff contact details: encrypted at rest (AES-256-GCM), masked wherever a person reads them.

A ``StaffMember.contacts`` value is ``key_id`` (UTF-8) + ``0x00`` + a 12-byte random nonce + the
ciphertext of the JSON object of channel targets. The associated data binds the ciphertext to
its record (``staff_id`` + ``0x1f`` + ``community_id``), so a blob copied onto another staff
record does not decrypt. The key comes from the ``roster_key`` setting (``FANGXIAN_ROSTER_KEY``,
any text; SHA-256 makes it 32 bytes), never from the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_SIZE = 12


class ContactsUnreadable(ValueError):
    """A contacts blob that does not decrypt with the configured key (wrong key or tampered)."""


@dataclass(frozen=True)
class Contacts:
    """Where a person can be reached, per channel kind. Empty string: not on that channel."""

    wecom_userid: str = ""
    wecom_mobile: str = ""
    dingtalk_mobile: str = ""
    feishu_open_id: str = ""
    phone: str = ""

    def masked(self) -> dict[str, str]:
        return {k: mask_contact(v) for k, v in asdict(self).items() if v}

    def __repr__(self) -> str:  # never print the clear values by accident
        return f"Contacts({self.masked()})"


def mask_contact(value: str) -> str:
    """``13812345678`` → ``138****5678``; other ids keep their first and last two characters."""
    if len(value) == 11 and value.isdigit():
        return f"{value[:3]}****{value[-4:]}"
    if len(value) <= 4:
        return "*" * len(value)
    return f"{value[:2]}{'*' * (len(value) - 4)}{value[-2:]}"


def _aad(staff_id: str, community_id: str) -> bytes:
    return f"{staff_id}\x1f{community_id}".encode()


class ContactBox:
    """Encrypts and decrypts ``Contacts`` with one key (``key_id`` names it for rotation)."""

    def __init__(self, key_text: str, key_id: str = "k1") -> None:
        if not key_text:
            raise ValueError(
                "FANGXIAN_ROSTER_KEY is not set: staff contact details are encrypted with it "
                "(未设置值班人员联系方式密钥 FANGXIAN_ROSTER_KEY)"
            )
        if "\x00" in key_id:
            raise ValueError("key id must not contain NUL")
        self._aead = AESGCM(hashlib.sha256(key_text.encode()).digest())
        self.key_id = key_id

    def __repr__(self) -> str:
        return f"ContactBox(key_id={self.key_id!r})"

    def seal(self, contacts: Contacts, staff_id: str, community_id: str) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        plain = json.dumps(asdict(contacts), separators=(",", ":")).encode()
        sealed = self._aead.encrypt(nonce, plain, _aad(staff_id, community_id))
        return self.key_id.encode() + b"\x00" + nonce + sealed

    def open(self, blob: bytes, staff_id: str, community_id: str) -> Contacts:
        key_id, sep, rest = blob.partition(b"\x00")
        if not sep or key_id.decode(errors="replace") != self.key_id:
            raise ContactsUnreadable(f"contacts of {staff_id} are sealed with another key")
        nonce, sealed = rest[:NONCE_SIZE], rest[NONCE_SIZE:]
        try:
            plain = self._aead.decrypt(nonce, sealed, _aad(staff_id, community_id))
        except InvalidTag as err:
            raise ContactsUnreadable(f"contacts of {staff_id} do not decrypt") from err
        data = json.loads(plain)
        return Contacts(
            **{k: str(v) for k, v in data.items() if k in Contacts.__dataclass_fields__}
        )
