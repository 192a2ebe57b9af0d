"""Credentials masked for display: in a URL (`mask_url`) and in any text (`mask_secrets`).

Whatever formats a URL or an error text for a log line or an exception message goes through
one of these, so that a password in a URL's userinfo (`redis://:PASSWORD@host/0`), a
token-like query parameter (`?token=...`, `access_token`, `api_key`, `client_secret`, ...)
or a credential header (`Authorization`, `Cookie`, `X-Api-Key`, ...) shows as `***`.
Masking is for display only: the URL that is used is never changed.

Pure string work, no I/O: the server, the backplane, the client, the Locust user and the
command line all use it, so it sits in the lowest layer.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "mask_secrets", "mask_url"]

MASK = "***"

# A parameter is secret when its name, or the last `_`/`-`/`.`-separated word of it, is one
# of these (`token`, `access_token`, `X-Amz-Signature`, `client_secret`, `api_key`, ...).
_SECRET_WORDS = (
    "token|key|apikey|secret|password|passwd|pwd|pass|auth|authorization|signature|sig"
    "|session|sessionid|sid|jwt|credential|credentials"
)
_SECRET_PARAMETER = re.compile(
    rf"(?i)((?<![\w.-])(?:[\w.-]*[_.-])?(?:{_SECRET_WORDS})=)[^&;\s'\"#]*"
)  # fmt: skip
_SECRET_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-[\w-]*(?:token|key|secret|auth))"
    r"(['\"]?\s*[:=,]\s*['\"]?)([^'\"\r\n]+)"
)
# scheme://userinfo@ : up to the last `@` before the path (a password may hold an `@`).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#\s'\"<>]*)@")


def _userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match[2].partition(":")
    # user:password keeps the user; a lone userinfo is often a token (https://TOKEN@host).
    return f"{match[1]}{user}:{MASK}@" if colon else f"{match[1]}{MASK}@"


def mask_url(url: str) -> str:
    """`url` for display: the userinfo's password and token-like query (and fragment)
    parameters replaced by `***`; the rest as given."""
    if "@" in url:
        url = _USERINFO.sub(_userinfo, url, count=1)
    if "=" in url:
        url = _SECRET_PARAMETER.sub(rf"\1{MASK}", url)
    return url


def mask_secrets(text: str) -> str:
    """`text` (a log line, an exception's text) with every credential in it replaced by
    `***`: URL userinfo, token-like parameters, credential headers."""
    if "://" in text and "@" in text:
        text = _USERINFO.sub(_userinfo, text)
    if "=" in text:
        text = _SECRET_PARAMETER.sub(rf"\1{MASK}", text)
    return _SECRET_HEADER.sub(rf"\1\2{MASK}", text)
