"""Which attachment types ACS accepts, and which we refuse as executable: data, no logic."""

from __future__ import annotations

# Extension → the MIME type(s) ACS accepts for it. The extensions (and .xml's two types) are
# Microsoft's list, "Allowed attachment types for sending email in Azure Communication
# Services" (azure-docs concepts/email/email-attachment-allowed-mime-types.md), as kept in
# shared/reference/acs-limits.md and copied to tests/reference/acs-limits.md, which a test
# holds this table to. That copy keeps the extensions only, so the MIME spelling per
# extension is the IANA-registered (or, where none is, the de-facto) type; check it against
# the page's MIME column when it changes. ACS refuses a request with any other contentType
# (BadRequest on attachments[i].contentType). We match ignoring case and send ACS the
# spelling below.
ACS_ATTACHMENT_TYPES: dict[str, tuple[str, ...]] = {
    ".3gp": ("video/3gpp",),
    ".3g2": ("video/3gpp2",),
    ".7z": ("application/x-7z-compressed",),
    ".aac": ("audio/aac",),
    ".avi": ("video/x-msvideo",),
    ".bmp": ("image/bmp",),
    ".csv": ("text/csv",),
    ".doc": ("application/msword",),
    ".docm": ("application/vnd.ms-word.document.macroEnabled.12",),
    ".docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",),
    ".eot": ("application/vnd.ms-fontobject",),
    ".epub": ("application/epub+zip",),
    ".gif": ("image/gif",),
    ".gz": ("application/gzip",),
    ".ico": ("image/vnd.microsoft.icon",),
    ".ics": ("text/calendar",),
    ".jpg": ("image/jpeg",),
    ".jpeg": ("image/jpeg",),
    ".json": ("application/json",),
    ".mid": ("audio/midi",),
    ".midi": ("audio/midi",),
    ".mp3": ("audio/mpeg",),
    ".mp4": ("video/mp4",),
    ".mpeg": ("video/mpeg",),
    ".oga": ("audio/ogg",),
    ".ogv": ("video/ogg",),
    ".ogx": ("application/ogg",),
    ".one": ("application/onenote",),
    ".opus": ("audio/opus",),
    ".otf": ("font/otf",),
    ".pdf": ("application/pdf",),
    ".png": ("image/png",),
    ".ppsm": ("application/vnd.ms-powerpoint.slideshow.macroEnabled.12",),
    ".ppsx": ("application/vnd.openxmlformats-officedocument.presentationml.slideshow",),
    ".ppt": ("application/vnd.ms-powerpoint",),
    ".pptm": ("application/vnd.ms-powerpoint.presentation.macroEnabled.12",),
    ".pptx": ("application/vnd.openxmlformats-officedocument.presentationml.presentation",),
    ".pub": ("application/vnd.ms-publisher",),
    ".rar": ("application/x-rar-compressed",),
    ".rpmsg": ("application/vnd.ms-outlook",),
    ".rtf": ("application/rtf",),
    ".svg": ("image/svg+xml",),
    ".tar": ("application/x-tar",),
    ".tif": ("image/tiff",),
    ".tiff": ("image/tiff",),
    ".ttf": ("font/ttf",),
    ".txt": ("text/plain",),
    ".vsd": ("application/vnd.visio",),
    ".wav": ("audio/wav",),
    ".weba": ("audio/webm",),
    ".webm": ("video/webm",),
    ".webp": ("image/webp",),
    ".wma": ("audio/x-ms-wma",),
    ".wmv": ("video/x-ms-wmv",),
    ".woff": ("font/woff",),
    ".woff2": ("font/woff2",),
    ".xls": ("application/vnd.ms-excel",),
    ".xlsb": ("application/vnd.ms-excel.sheet.binary.macroEnabled.12",),
    ".xlsm": ("application/vnd.ms-excel.sheet.macroEnabled.12",),
    ".xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",),
    ".xml": ("application/xml", "text/xml"),
    ".zip": ("application/zip",),
}

# Lower-cased MIME type → ACS's spelling.
ACCEPTED_CONTENT_TYPES: dict[str, str] = {
    mime.lower(): mime for types in ACS_ATTACHMENT_TYPES.values() for mime in types
}

# Executables get their own message (none is on the ACS list anyway): MIME types browsers and
# Windows give programs and scripts, and the file extensions Outlook blocks as Level 1 (abridged
# to the ones that run code when opened).
EXECUTABLE_TYPES = frozenset(
    {
        "application/x-msdownload",
        "application/x-msdos-program",
        "application/x-ms-installer",
        "application/x-msi",
        "application/vnd.microsoft.portable-executable",
        "application/x-dosexec",
        "application/x-executable",
        "application/x-sh",
        "application/x-bat",
        "application/javascript",
        "application/x-javascript",
        "text/javascript",
        "text/vbscript",
        "application/x-vbscript",
        "application/hta",
        "application/java-archive",
    }
)
EXECUTABLE_EXTENSIONS = frozenset(
    {
        ".exe", ".bat", ".cmd", ".com", ".js", ".jse", ".vbs", ".vbe", ".vb", ".wsf", ".wsh",
        ".ws", ".wsc", ".msi", ".msp", ".mst", ".scr", ".pif", ".cpl", ".ps1", ".psm1", ".hta",
        ".jar", ".lnk", ".reg", ".dll", ".msc", ".scf", ".sct", ".application", ".gadget",
    }
)  # fmt: skip
