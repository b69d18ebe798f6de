"""Optional Ed25519 signatures of model cards (the ``cryptography`` library).

The lab signs ``model_card.json`` with its private key (``edge-convert --sign KEY``, or
``edge-convert sign MODEL_DIR --key KEY`` afterwards); the signature goes into a detached
file beside the card, ``model_card.json.sig``, so the card's schema does not change. It
covers the card's exact bytes, and the card carries every artifact's SHA-256, so one
signature vouches for every file of the model. A device told to trust a public key
(``edge-app --trust lab.pub``, or the board profile's ``[security] trust``) runs only
models whose card carries a valid signature by one of its keys: an unsigned card, a
signature by another key, or a card changed after signing is refused in one line.

``model_card.json.sig`` is JSON: ``{"algorithm": "ed25519", "key_id": <SHA-256 of the raw
public key, hex>, "signature": <base64 of the 64-byte signature>, "signed": <UTC time>}``.
Keys are PEM files (``edge-convert keygen --out lab`` writes ``lab.key`` and ``lab.pub``;
``openssl genpkey -algorithm ed25519`` makes the same kind).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import atomic_write_bytes, atomic_write_json
from cytoedge.edge_app.card import ModelCard, card_path, parse_card
from cytoedge.edge_app.errors import CytoEdgeError, ModelCardError

SIG_SUFFIX = ".sig"
ALGORITHM = "ed25519"


class SignatureError(ModelCardError):
    """A card that must be signed is not, or its signature is not valid for any trusted key."""


def signature_path(card_file: str | os.PathLike[str]) -> Path:
    p = Path(card_file)
    return p.with_name(p.name + SIG_SUFFIX)


def _raw_public(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Any) -> str:
    """SHA-256 of the raw 32-byte public key, hex (what the signature file names)."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()


def _load_key(path: str | os.PathLike[str], private: bool) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    what, want = (("signing key", ed25519.Ed25519PrivateKey) if private else
                  ("trusted key", ed25519.Ed25519PublicKey))
    hint = ("an unencrypted Ed25519 private key in PEM (the .key file edge-convert keygen wrote)" if private else
            "the lab's Ed25519 public key in PEM (the .pub file edge-convert keygen wrote)")
    try:
        data = Path(path).read_bytes()
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (OSError, ValueError, TypeError) as exc:
        raise CytoEdgeError(f"{what} {path} cannot be read ({' '.join(str(exc).split())[:120]}): pass {hint}") from None
    if not isinstance(key, want):
        raise CytoEdgeError(f"{what} {path} is not {hint}")
    return key


def load_private_key(path: str | os.PathLike[str]) -> Any:
    """An Ed25519 private key from a PEM file (unencrypted)."""
    return _load_key(path, private=True)


def load_public_key(path: str | os.PathLike[str]) -> Any:
    """An Ed25519 public key from a PEM file."""
    return _load_key(path, private=False)


def generate_keypair(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (private, mode 0600) and ``PREFIX.pub``; refuses to overwrite a key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key_file, pub_file = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for f in (key_file, pub_file):
        if f.exists():
            raise CytoEdgeError(f"{f} exists: keys are never overwritten; choose another --out")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    atomic_write_bytes(pub_file, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_file, pub_file


def sign_card(model: str | os.PathLike[str], key_file: str | os.PathLike[str]) -> Path:
    """Sign the card's exact bytes; write ``model_card.json.sig`` beside it (atomically). Returns its path."""
    key = load_private_key(key_file)
    card_file = card_path(model)
    try:
        raw = card_file.read_bytes()
    except OSError as exc:
        raise ModelCardError(f"no model card to sign at {card_file} ({exc.strerror or exc})") from None
    parse_card(raw, card_file)  # only a card this release reads is worth signing
    sig = key.sign(raw)
    return atomic_write_json(signature_path(card_file), {
        "algorithm": ALGORITHM, "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(sig).decode("ascii"),
        "signed": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def verified_card_bytes(card_file: Path, trusted: Sequence[str | os.PathLike[str]]) -> bytes:
    """The card's bytes, after checking its detached signature against the trusted public keys."""
    from cryptography.exceptions import InvalidSignature

    keys = [load_public_key(k) for k in trusted]
    sig_file = signature_path(card_file)
    how = f"sign it on the conversion machine (edge-convert sign {card_file.parent} --key LAB.key)"
    if not sig_file.is_file():
        raise SignatureError(f"model card {card_file} is not signed (no {sig_file.name}) and this device runs only "
                             f"signed models (--trust): {how}")
    try:
        raw = card_file.read_bytes()
        doc = json.loads(sig_file.read_text(encoding="utf-8"))
        signature = base64.b64decode(doc["signature"], validate=True)
        if doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {doc.get('algorithm')!r}")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise SignatureError(f"signature file {sig_file} cannot be read ({type(exc).__name__}: {str(exc)[:80]}): "
                             f"{how}") from None
    for key in keys:
        try:
            key.verify(signature, raw)
            return raw
        except InvalidSignature:
            continue
    if doc.get("key_id") in {key_id(k) for k in keys}:
        why = "its signature does not match its bytes: the card was changed after it was signed"
    else:
        why = f"it is signed by another key (key id {str(doc.get('key_id'))[:16]}...)"
    raise SignatureError(f"model card {card_file} is refused: {why}; this device trusts only "
                         f"{', '.join(str(k) for k in trusted)}. Copy the model folder again from the conversion "
                         "machine, or sign it with the lab's key")


def load_trusted_card(model: str | os.PathLike[str], trusted: Sequence[str | os.PathLike[str]]) -> ModelCard:
    """The card, parsed from exactly the bytes whose signature was verified against ``trusted``."""
    path = card_path(model)
    if not path.is_file():
        raise ModelCardError(f"no model card at {path}: pass a folder written by edge-convert")
    return parse_card(verified_card_bytes(path, trusted), path)
