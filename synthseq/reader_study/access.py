"""Reader link tokens: created once per reader, kept in ``STUDY/tokens.json`` (mode 0600), checked in constant time.

Tokens are random (``secrets.token_urlsafe``), never derived from the study seed, so knowing the seed does
not give access. The web app keeps only SHA-256 digests in memory and compares them with
``hmac.compare_digest`` against every reader (no early exit), so response time does not reveal which
prefix of a token was right.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from urllib.parse import quote

from ..errors import InputError
from ..utils import atomic_path
from . import layout

TOKEN_BYTES = 24


def load_or_create_tokens(study: str | Path, readers: list[str]) -> dict[str, str]:
    """Reader -> token; readers without one get a fresh token, written atomically with mode 0600."""
    path = Path(study) / layout.TOKENS
    tokens: dict[str, str] = {}
    if path.exists():
        try:
            tokens = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read reader tokens ({exc})") from exc
        if not isinstance(tokens, dict) or not all(isinstance(v, str) and v for v in tokens.values()):
            raise InputError(f"{path}: expected a JSON object reader -> token")
    missing = [r for r in readers if r not in tokens]
    if missing:
        tokens.update({r: secrets.token_urlsafe(TOKEN_BYTES) for r in missing})
        with atomic_path(path) as tmp:
            os.chmod(tmp, 0o600)
            tmp.write_text(json.dumps(tokens, indent=1) + "\n")
    return {r: tokens[r] for r in readers}


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenIndex:
    """Find the reader a presented token belongs to, in time independent of where it differs."""

    def __init__(self, tokens: dict[str, str]):
        self._digests = [(reader, digest(token)) for reader, token in tokens.items()]

    def reader_for(self, token: str) -> str | None:
        presented = digest(token)
        found = None
        for reader, expected in self._digests:  # no early exit on purpose
            if hmac.compare_digest(presented, expected):
                found = reader
        return found


def reader_links(study: str | Path, base_url: str) -> dict[str, str]:
    """Reader -> personal link ``{base_url}/r/{token}`` (creates missing tokens)."""
    manifest = layout.load_manifest(study)
    tokens = load_or_create_tokens(study, list(manifest["readers"]))
    return {reader: f"{base_url.rstrip('/')}/r/{quote(token, safe='')}" for reader, token in tokens.items()}
