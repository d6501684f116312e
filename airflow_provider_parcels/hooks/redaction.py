"""
The one redaction of the package: every text that leaves a hook (result and error rows, create
and upsert results, XCom, exception messages, log lines) passes through a :class:`Redactor`.

It replaces, ignoring case, each secret of the connection (login, password, the extras its
connection form marks as passwords or whose name says secret/token/password, the user and
password of a URL in the host field), also in their URL-encoded forms, and the ``user:pass@``
part of any URL in the text, by ``***``. It depends on nothing of Airflow's log masker, which
is absent outside a running task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit

MASK = "***"
#: Shorter values are not masked: replacing every "ab" would destroy messages and hide nothing.
MIN_SECRET_LENGTH = 4
#: Extras whose name holds one of these words are secrets, whatever the connection form says.
SENSITIVE_NAME_PARTS = ("secret", "password", "passwd", "token", "api_key", "apikey", "private_key", "passphrase")
#: ``scheme://user:password@`` (or ``scheme://token@``) in any URL of a text.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@'\"<>]+@")


@cache
def marked_secret_extras(conn_type: str) -> frozenset[str]:
    """
    The extras the connection form of ``conn_type`` shows as passwords (``"format": "password"``).

    :param conn_type: the connection type, e.g. ``trackflow``.
    """
    from airflow_provider_parcels.get_provider_info import get_provider_info

    names = set()
    for conn in get_provider_info().get("connection-types", ()):
        if conn.get("connection-type") != conn_type:
            continue
        for name, field in (conn.get("conn-fields") or {}).items():
            if (field.get("schema") or {}).get("format") == "password":
                names.add(name)
    return frozenset(names)


def is_secret_extra(conn_type: str, name: str) -> bool:
    """
    Whether the extra ``name`` of a ``conn_type`` connection holds a secret.

    :param conn_type: the connection type.
    :param name: the extra's name.
    """
    lowered = name.lower()
    return name in marked_secret_extras(conn_type) or any(part in lowered for part in SENSITIVE_NAME_PARTS)


class Redactor:
    """
    Replaces secrets in text (case-insensitively) and URL userinfo by ``***``.

    :param secrets: the values to hide; ``None``, blanks and values shorter than
        :data:`MIN_SECRET_LENGTH` are skipped.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            value = (str(secret) if secret is not None else "").strip()
            if len(value) < MIN_SECRET_LENGTH:
                continue
            variants.update({value, quote(value, safe=""), quote(value, safe="").replace("%20", "+")})
        ordered = sorted(variants, key=len, reverse=True)  # longest first: a key containing another
        self._pattern = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE) if ordered else None

    @classmethod
    def for_connection(cls, conn_type: str, login: str | None, password: str | None,
                       extra: Mapping[str, Any], host: str | None = None) -> Redactor:
        """
        The redactor of one connection.

        :param conn_type: its type, to know which extras the form marks secret.
        :param login: its login field.
        :param password: its password field.
        :param extra: its extras.
        :param host: its host field; a ``user:password@`` in it is secret too.
        """
        secrets: list[str | None] = [login, password]
        secrets += [str(v) for k, v in extra.items() if v is not None and is_secret_extra(conn_type, str(k))]
        secrets += _userinfo_of(host)
        return cls(secrets)

    def __call__(self, text: str) -> str:
        """
        ``text`` with every secret and URL userinfo replaced by ``***``.

        :param text: any message.
        """
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)

    def value(self, value: Any) -> Any:
        """
        ``value`` with every string inside it redacted: strings, mappings (keys and values; given back
        as dicts), lists, tuples and dataclass instances (rebuilt with redacted fields); other
        values are returned as they are.

        :param value: a result, an XCom value, a JSON answer.
        """
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(self.value(v) for v in value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {f.name: self.value(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
            return dataclasses.replace(value, **changes)
        return value

    def exception(self, error: BaseException) -> BaseException:
        """
        Redact an exception in place (its ``args`` and a ``message`` attribute) and return it,
        so it can be re-raised with its type and traceback.

        :param error: the exception.
        """
        error.args = tuple(self(a) if isinstance(a, str) else a for a in error.args)
        message = getattr(error, "message", None)
        if isinstance(message, str):
            with contextlib.suppress(AttributeError):  # a read-only property
                error.message = self(message)  # type: ignore[attr-defined]
        return error


def _userinfo_of(host: str | None) -> list[str]:
    """The user and password of a URL in a host field (raw and percent-decoded)."""
    if not host or "@" not in host:
        return []
    text = host.strip()
    try:
        parts = urlsplit(text if "://" in text else f"//{text}")
    except ValueError:
        return [text.rsplit("@", 1)[0]]
    out = []
    for value in (parts.username, parts.password):
        if value:
            out += [value, unquote(value)]
    return out
