"""The support console: its page and static files (`console/`), served with a strict CSP.

The page and its files are the app's own static code, the same for everyone; they hold no data
and no key. So they are served without a function key (a key in every script URL would sit in
logs; a page that needs one would break on reload and on a pasted deep link, since a browser
sends no header when it navigates). Every answer the page shows comes from the keyed API,
which it calls with the key it was given once (`?code=`, or typed into its form) and keeps in
sessionStorage.
"""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from shared.core.errors import NotFound
from shared.core.replies import Document

# No inline script or style, nothing from another origin, no framing, no plugins, no <base>;
# forms post nowhere (the page submits with fetch). `connect-src 'self'`: the API only.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    # The first load's URL carries ?code=: never send it anywhere as a Referer.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Same code for everyone; a deploy changes it: browsers revalidate (cheap) every load.
    "Cache-Control": "no-cache",
}
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_FILE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(js|css|svg)$")
PAGE = "index.html"


class Console:
    def __init__(self, root: Path) -> None:
        self.root = root

    def page(self, url: str) -> Document:
        """The page, its file links made absolute from where it was reached (`/api/console`
        or `/api/console/` under any route prefix), so a trailing slash cannot break them."""
        base = urlsplit(url).path.rstrip("/")
        text = _read(self.root / PAGE).decode("utf-8").replace("{{base}}", html.escape(base))
        return Document(text.encode("utf-8"), "text/html; charset=utf-8", SECURITY_HEADERS)

    def file(self, name: str) -> Document:
        """One of the page's files; only plain names of files that exist in `console/`."""
        if not _FILE_NAME.match(name) or name not in _listing(self.root):
            raise NotFound(f"No console file named {name[:64]!r}")
        media_type = _MEDIA_TYPES[Path(name).suffix]
        return Document(_read(self.root / name), media_type, SECURITY_HEADERS)


@cache
def _listing(root: Path) -> frozenset[str]:
    return frozenset(p.name for p in root.iterdir() if p.is_file())


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()
