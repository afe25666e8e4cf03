"""Mailbox providers: who runs a recipient's mailbox, from its MX host name or its domain.

The MX host (`recipientMailServerHostName` in an ACS report) names the provider even for a
company domain hosted at Google or Microsoft, so it is asked first; a well-known consumer domain
answers when the report names no host (Suppressed, Quarantined); `other` when neither knows.
Host suffixes are the providers' published MX names (checked with `dig MX` on their own and on
hosted customer domains); consumer domains are the providers' own sign-up domains.
"""

from __future__ import annotations

from enum import StrEnum


class Provider(StrEnum):
    GOOGLE = "google"  # Gmail and Google Workspace
    MICROSOFT = "microsoft"  # Microsoft 365 / Exchange Online and Outlook.com
    YAHOO = "yahoo"  # Yahoo Mail and AOL (one platform since 2017)
    APPLE = "apple"  # iCloud Mail
    GMX = "gmx"  # GMX and web.de (United Internet)
    ORANGE = "orange"  # Orange / Wanadoo (France)
    COMCAST = "comcast"  # Comcast / Xfinity
    MIMECAST = "mimecast"  # Mimecast gateway in front of a company's mailboxes
    PROOFPOINT = "proofpoint"  # Proofpoint gateway (pphosted) in front of a company's mailboxes
    CISCO = "cisco"  # Cisco Secure Email (IronPort, iphmx.com) gateway
    BARRACUDA = "barracuda"  # Barracuda Email Security gateway
    ZOHO = "zoho"  # Zoho Mail
    YANDEX = "yandex"  # Yandex Mail
    MAILRU = "mailru"  # Mail.ru
    PROTON = "proton"  # Proton Mail
    OTHER = "other"  # a host or domain we do not know


# MX host suffix → provider; the longest matching suffix wins (matched on whole labels).
MX_SUFFIXES: dict[str, Provider] = {
    "google.com": Provider.GOOGLE,  # aspmx.l.google.com, gmail-smtp-in.l.google.com
    "googlemail.com": Provider.GOOGLE,  # aspmx2.googlemail.com
    "protection.outlook.com": Provider.MICROSOFT,  # <tenant>.mail.protection.outlook.com
    "outlook.com": Provider.MICROSOFT,
    "hotmail.com": Provider.MICROSOFT,
    "yahoodns.net": Provider.YAHOO,  # mta5.am0.yahoodns.net (Yahoo and AOL)
    "aol.com": Provider.YAHOO,
    "icloud.com": Provider.APPLE,  # mx01.mail.icloud.com
    "me.com": Provider.APPLE,
    "gmx.net": Provider.GMX,  # mx00.emig.gmx.net
    "web.de": Provider.GMX,  # mx-ha03.web.de
    "gmx.com": Provider.GMX,
    "orange.fr": Provider.ORANGE,  # smtp-in.orange.fr
    "comcast.net": Provider.COMCAST,  # mx1a1.comcast.net
    "mimecast.com": Provider.MIMECAST,  # eu-smtp-inbound-1.mimecast.com
    "mimecast.co.za": Provider.MIMECAST,
    "pphosted.com": Provider.PROOFPOINT,  # mx0a-00123401.pphosted.com
    "ppe-hosted.com": Provider.PROOFPOINT,  # Proofpoint Essentials
    "iphmx.com": Provider.CISCO,  # esa1.example.iphmx.com
    "barracudanetworks.com": Provider.BARRACUDA,  # d123.mx.ess.barracudanetworks.com
    "zoho.com": Provider.ZOHO,  # mx.zoho.com
    "zoho.eu": Provider.ZOHO,
    "yandex.net": Provider.YANDEX,  # mx.yandex.net
    "yandex.ru": Provider.YANDEX,
    "mail.ru": Provider.MAILRU,  # mxs.mail.ru
    "protonmail.ch": Provider.PROTON,  # mail.protonmail.ch
}

# Consumer sign-up domains → provider (used when the report names no MX host).
CONSUMER_DOMAINS: dict[str, Provider] = {
    **dict.fromkeys(("gmail.com", "googlemail.com"), Provider.GOOGLE),
    **dict.fromkeys(
        (
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "hotmail.co.uk",
            "hotmail.fr",
            "hotmail.de",
            "hotmail.it",
            "outlook.fr",
            "outlook.de",
            "live.co.uk",
            "live.fr",
        ),
        Provider.MICROSOFT,
    ),
    **dict.fromkeys(
        (
            "yahoo.com",
            "yahoo.co.uk",
            "yahoo.fr",
            "yahoo.de",
            "yahoo.co.jp",
            "ymail.com",
            "rocketmail.com",
            "aol.com",
            "aim.com",
        ),
        Provider.YAHOO,
    ),
    **dict.fromkeys(("icloud.com", "me.com", "mac.com"), Provider.APPLE),
    **dict.fromkeys(("gmx.de", "gmx.net", "gmx.com", "gmx.at", "web.de"), Provider.GMX),
    **dict.fromkeys(("orange.fr", "wanadoo.fr"), Provider.ORANGE),
    "comcast.net": Provider.COMCAST,
    **dict.fromkeys(("zoho.com", "zohomail.com"), Provider.ZOHO),
    **dict.fromkeys(("yandex.ru", "yandex.com", "ya.ru"), Provider.YANDEX),
    **dict.fromkeys(("mail.ru", "bk.ru", "inbox.ru", "list.ru"), Provider.MAILRU),
    **dict.fromkeys(("proton.me", "protonmail.com", "pm.me"), Provider.PROTON),
}


def provider_of(mail_server: str | None, recipient_domain: str | None) -> Provider:
    host = (mail_server or "").strip().lower().rstrip(".")
    if host:
        labels = host.split(".")
        for start in range(len(labels) - 1):  # longest suffix first
            found = MX_SUFFIXES.get(".".join(labels[start:]))
            if found is not None:
                return found
    return CONSUMER_DOMAINS.get((recipient_domain or "").strip().lower(), Provider.OTHER)
