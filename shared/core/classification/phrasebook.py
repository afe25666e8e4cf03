"""Receiver phrase rules: ordered, precompiled, first match wins, each row saying where it is seen.

Rules see the status message as `prose`: lower-cased, with the reply codes that start each line
of a multi-line reply removed and whitespace collapsed, so a phrase split across `550-5.7.26`
continuation lines still reads as one sentence.

A rule fires when one of its `needles` (plain substrings, the cheap prefilter) occurs in the
prose and, if it has one, its regex also matches; a rule with `codes` fires only when the
message's enhanced or basic reply code is one of them. Order matters where wordings overlap,
and the sections below are ordered for that: ACS tokens; throttling and reputation (their texts
mention "spam" and "blocked"); authentication (Gmail and Yahoo say "has been blocked"); reverse
DNS; blocklists; content; recipient filters; IP/host blocks; sender refusals; relaying; TLS and
security; then the address and mailbox reasons, most specific first; then delivery, system and
protocol failures; generic policy last.

The wordings were written from the receivers' published error references (Gmail's SMTP error
reference, Microsoft's "NDRs in Exchange Online", Yahoo's and AOL's postmaster error codes,
Apple's iCloud postmaster page, GMX/web.de postmaster pages, Orange's OFR codes, Mimecast and
Proofpoint KB pages) and the MTAs' usual texts (Postfix, Exim, Sendmail, qmail, Exchange,
Domino), not copied from a live feed: tests/data/bounces.jsonl holds an example of every row.
Rows whose source is "many mail servers" are wordings shared by several of these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from .taxonomy import Reason


@dataclass(frozen=True, slots=True, eq=False)  # compared and hashed by identity: rows are unique
class PhraseRule:
    id: str  # stable id reported as Classification.rule
    reason: Reason
    source: str  # who uses this wording; completes "Matched wording seen from ..."
    needles: tuple[str, ...]  # lower-case substrings; the rule is tried only if one is present
    pattern: re.Pattern[str] | None  # must also match, when present
    codes: frozenset[str]  # when not empty: the message's enhanced or basic code must be one

    def matches(self, prose: str, codes: tuple[str | None, str | None]) -> bool:
        return any(n in prose for n in self.needles) and self._confirms(prose, codes)

    def _confirms(self, prose: str, codes: tuple[str | None, str | None]) -> bool:
        if self.codes and codes[0] not in self.codes and codes[1] not in self.codes:
            return False
        return self.pattern is None or self.pattern.search(prose) is not None


def _rule(
    rule_id: str,
    reason: Reason,
    source: str,
    *needles: str,
    regex: str | None = None,
    codes: tuple[str, ...] = (),
) -> PhraseRule:
    pattern = None if regex is None else re.compile(regex)
    return PhraseRule(rule_id, reason, source, needles, pattern, frozenset(codes))


R = Reason
ACS = "Azure Communication Services"
GMAIL = "Gmail / Google Workspace"
MS = "Microsoft 365 / Outlook.com / Exchange Online Protection"
EXCH = "Exchange Server (on-premises)"
YAHOO = "Yahoo / AOL"
APPLE = "Apple iCloud Mail"
GMX = "GMX / web.de"
FR = "Orange / Free / La Poste / SFR (French wording)"
MIME = "Mimecast"
PFPT = "Proofpoint"
BARRA = "Barracuda"
IRON = "Cisco Secure Email (IronPort)"
POSTFIX = "Postfix"
EXIM = "Exim (incl. cPanel)"
SENDMAIL = "Sendmail"
QMAIL = "qmail"
DOMINO = "HCL/Lotus Domino"
DNSBL = "DNS blocklists (Spamhaus, SpamCop, Barracuda RBL, SORBS, UCEPROTECT)"
FILTERS = "content filters (amavis, rspamd, SpamAssassin, ClamAV)"
MTA = "many mail servers"

# fmt: off
RULES: tuple[PhraseRule, ...] = (
    # --- ACS's own tokens and wording ------------------------------------------------------
    # DestinationMailboxFull is in the azure-rest-api-specs delivery-report example; the rest
    # are ACS's plain-English wordings for suppression and its 10 MB send limit.
    _rule("acs.mailboxfull", R.mailboxfull, ACS,
          "destinationmailboxfull", "destination mailbox full"),
    _rule("acs.suppressed", R.suppressed, ACS, "suppression list", "suppressionlist",
          "recipientsuppressed", "suppressed recipient", "recipient is suppressed"),
    _rule("acs.emailtoolarge", R.emailtoolarge, ACS, "emailtoolarge", "email too large",
          "messagesizeexceeded", "10 mb", "10mb",
          regex=r"emailtoolarge|email too large|messagesizeexceeded"
                r"|(?:size|large).{0,60}\b10 ?mb\b.{0,40}(?:limit|allowed|maximum)"),
    # --- Throttling and reputation (these texts also say "spam", "blocked", "rate limited") ---
    _rule("gmail.securityerror.tls", R.securityerror, GMAIL,
          "wasn't sent over a tls connection", "was not sent over a tls connection"),
    _rule("gmail.badreputation.unsolicited", R.badreputation, GMAIL,
          "unusual rate of unsolicited mail"),
    _rule("mta.badreputation", R.badreputation, MTA, "reputation",
          regex=r"(?:poor|low|bad) reputation|\bip reputation|reputation of the sending"
                r"|sender reputation|reputation is too low"),
    _rule("yahoo.badreputation", R.badreputation, YAHOO, "[tss04]", "[ts01]", "user complaints"),
    # Yahoo [TSS11]: too many unknown recipients from this sender, so not `userunknown`.
    _rule("yahoo.badreputation.unknown", R.badreputation, YAHOO, "[tss11]",
          "excessive unknown recipients"),
    _rule("free.badreputation", R.badreputation, FR, "too many spams"),
    _rule("gmail.speeding", R.speeding, GMAIL, "unusual rate of mail"),
    _rule("outlook.speeding", R.speeding, MS, "limits for how many messages can be sent"),
    _rule("postfix.speeding", R.speeding, POSTFIX, "too much mail from"),
    _rule("mta.speeding", R.speeding, MTA, "sending rate", "too many messages", "trop de messages",
          regex=r"sending rate (?:is )?(?:too high|exceeded)|too many messages (?:from|sent)"
                r"|trop de messages"),
    _rule("gmail.ratelimited", R.ratelimited, GMAIL, "receiving mail at a rate"),
    _rule("mta.ratelimited.greylist", R.ratelimited, MTA, "greylist", "graylist", "grey-list"),
    _rule("ms.ratelimited", R.ratelimited, MS, "thresholdexceeded"),
    _rule("mta.ratelimited.recipients", R.ratelimited, MTA, "too many recipients"),
    _rule("mta.toomanyconn", R.toomanyconn, MTA, "too many", "trop de connexions",
          regex=r"too many (?:concurrent |simultaneous |open )?(?:smtp )?(?:connections|sessions)"
                r"|trop de connexions"),
    # --- Sender authentication (Gmail and Yahoo say "has been blocked") --------------------------
    _rule("gmail.authfailure.unauthenticated", R.authfailure, GMAIL,
          "this mail is unauthenticated", "sender is unauthenticated"),
    _rule("gmail.authfailure.spfdkim", R.authfailure, GMAIL,
          "authenticate with", "fails to pass authentication checks", "authenticated spf or dkim"),
    _rule("mta.authfailure.dmarc", R.authfailure, MTA, "dmarc"),
    _rule("mta.authfailure.spf", R.authfailure, MTA, "spf", "sender policy framework",
          regex=r"\bspf\b|sender policy framework"),
    _rule("mta.authfailure.dkim", R.authfailure, MTA, "dkim", "domainkeys"),
    _rule("mta.authfailure.arc", R.authfailure, MTA, "arc validation", "arc-seal"),
    # cPanel's "may not exist" text also says "they may be blacklisted".
    _rule("exim.userunknown", R.userunknown, EXIM, "the account or domain may not exist"),
    # --- Reverse DNS -----------------------------------------------------------------------------
    _rule("aol.requireptr", R.requireptr, YAHOO, "(dns:nr)"),
    _rule("mta.requireptr", R.requireptr, MTA, "ptr", "reverse", "rdns", "hostname",
          regex=r"\bptr\b|reverse (?:dns|lookup|hostname|mapping)|\brdns\b"
                r"|cannot find your (?:reverse )?hostname|no (?:valid )?reverse"),
    # --- Blocklists (before spam: SORBS says "sending spam") ------------------------------------
    _rule("dnsbl.blocked", R.blocked, DNSBL, "spamhaus", "spamcop", "sorbs", "barracudacentral",
          "barracuda reputation", "uceprotect", "psbl", "dnsbl", "rbl", "invaluement",
          regex=r"spamhaus|spamcop|\bsorbs\b|barracudacentral|barracuda reputation|uceprotect"
                r"|\bpsbl\b|dnsbl|\brbl\b|invaluement"),
    # Proofpoint's own blocklist; Apple iCloud's inbound filtering answers with it too.
    _rule("proofpoint.blocked", R.blocked, f"{PFPT} (also Apple iCloud)", "ipcheck.proofpoint.com",
          "support.proofpoint.com/dnsbl-lookup"),
    _rule("mta.blocked.list", R.blocked, MTA, "blocked using", "blacklist", "black list",
          "block list", "blocklist", "block listed", "blocked - see"),
    # Outlook.com's block texts mention "Unsolicited Commercial Email".
    _rule("ms.blocked", R.blocked, MS, "banned sending ip", "banned sender", "not accepted from "
          "this ip", "unregistered domains", "weren't sent", "were not sent"),
    # --- Message content -------------------------------------------------------------------------
    _rule("gmail.notcompliantrfc", R.notcompliantrfc, GMAIL, "rfc 5322", "message-id header"),
    _rule("mta.notcompliantrfc", R.notcompliantrfc, MTA, "rfc", "bare", "header",
          regex=r"not rfc.?(?:2822|5322|822)?.?compliant|rfc ?(?:2822|822)\b|bare ?line ?feed"
                r"|bare lf|missing (?:required )?(?:\w+ )?header|duplicate (?:\w+ )?header"
                r"|header (?:syntax|is malformed)"),
    _rule("gmail.virusdetected", R.virusdetected, GMAIL,
          "content presents a potential security issue", "illegal attachment"),
    _rule("mta.virusdetected", R.virusdetected, FILTERS, "virus", "malware", "infected", "eicar",
          "trojan", "banned attachment", "dangerous attachment"),
    _rule("barracuda.spamdetected", R.spamdetected, BARRA, ":blocked)"),
    _rule("mta.spamdetected", R.spamdetected, FILTERS, "spam", "unsolicited", "junk",
          regex=r"spam(?!haus|cop)|unsolicited|junk mail"),
    # --- Refused by the recipient's own filters or group restrictions ---------------------------
    _rule("ms.exceedlimit", R.exceedlimit, MS, "recipsizelimit"),
    _rule("ms.userunknown.dbeb", R.userunknown, MS, "recipient address rejected: access denied",
          codes=("5.4.1",)),
    _rule("ms.userunknown.dbeb.as", R.userunknown, MS, "as(201806281)"),
    _rule("ms.filtered.resolver", R.filtered, MS, "resolver.rst.", "delivery restriction"),
    _rule("mimecast.filtered", R.filtered, MIME, "blocked senders", "user entry"),
    _rule("gmail.filtered.group", R.filtered, GMAIL, "permission to post"),
    _rule("mta.filtered", R.filtered, MTA, "recipient address rejected: access denied",
          "not authorized to send to", "not allowed to send to", "has blocked", "blocked by the "
          "recipient", "blocked by recipient", "rejected by recipient", "refuses mail from",
          "mail filter", "allowed senders"),
    # --- The sending IP or host is refused -----------------------------------------------------
    _rule("ironport.blocked", R.blocked, IRON, "mail system has been rejected",
          regex=r"access to (?:submit messages to )?this e-?mail system has been rejected"),
    _rule("yahoo.blocked", R.blocked, YAHOO, "permanently deferred", "connections will not be "
          "accepted from", "[tss09]", "[bl21]", "[bl22]", "[bl23]"),
    _rule("gmail.blocked", R.blocked, GMAIL, "not authorized to send email directly"),
    _rule("orange.blocked", R.blocked, FR, "service refus"),
    _rule("mta.blocked", R.blocked, MTA, "client host rejected: access denied", "ip blocked",
          "your ip", "ip address", "host blocked", "connection refused by policy",
          regex=r"client host rejected: access denied|\b(?:ip|ip address|host) "
                r"(?:\S+ )?(?:has been |is )?(?:blocked|banned|blacklisted|denied)"
                r"|connection refused by policy"),
    # --- The envelope sender is refused ----------------------------------------------------------
    _rule("mta.rejected", R.rejected, MTA, "sender address rejected", "sender verify failed",
          "verification failed for", "envelope sender domain must exist", "domain of sender",
          "bad outbound sender", "from address", "sender domain", "sender has no",
          "sender address has null mx", "sender rejected", "sender denied", "invalid sender",
          "invalid from", "from: domain", "from domain",
          regex=r"sender address rejected|sender verify failed|verification failed for"
                r"|envelope sender domain must exist|domain of sender address"
                r"|bad outbound sender|unresolvable rfc.?5321 from address"
                r"|sender domain (?:does not exist|not found|must (?:exist|resolve))"
                r"|sender has no (?:a, aaaa, or mx|mx)|sender address has null mx"
                r"|sender (?:was )?(?:rejected|denied)|\binvalid (?:sender|from) (?:address|domain)"
                r"|from:? domain (?:does not exist|not found)"),
    # --- Relaying --------------------------------------------------------------------------------
    _rule("qmail.norelaying", R.norelaying, QMAIL, "allowed rcpthosts"),
    _rule("mta.norelaying", R.norelaying, MTA, "relay",
          regex=r"relay(?:ing)? (?:access )?(?:is )?(?:denied|not permitted|prohibited|rejected"
                r"|not allowed)|unable to relay|(?:not permitted|not allowed) to relay"
                r"|we do not relay|open relay not allowed"),
    # --- TLS and other security requirements ---------------------------------------------------
    _rule("mta.failedstarttls", R.failedstarttls, MTA, "tls", "ssl", "handshake", "certificate",
          regex=r"tls is required, but was not offered|tls negotiation failed|handshake fail"
                r"|starttls (?:failed|negotiation)|cannot start tls|tls not available"
                r"|ssl (?:routines|handshake)|certificate (?:verify|verification) failed"),
    _rule("ms.securityerror", R.securityerror, MS, "client not authenticated"),
    _rule("mta.securityerror", R.securityerror, MTA, "starttls", "tls", "authenticat",
          "encryption",
          regex=r"must issue a starttls command first|starttls is required|tls (?:is )?required"
                r"|requires? tls|authentication (?:is )?required|authentication failed"
                r"|authentication credentials invalid|encryption (?:is )?(?:required|needed)"),
    # --- The domain accepts no mail (null MX, RFC 7505 / RFC 7504) -----------------------------
    _rule("mta.notaccept", R.notaccept, MTA, "does not accept", "null mx", "nullmx",
          "not accepting", "accepts no mail",
          regex=r"does not accept (?:e-?)?mail|null ?mx|not accepting (?:network )?(?:messages"
                r"|mail)|accepts no mail"),
    # --- Moved -----------------------------------------------------------------------------------
    _rule("mta.hasmoved", R.hasmoved, MTA, "has moved", "user not local", "no longer with",
          "changed owner"),
    # --- Size (most specific first: recipient limit, sending side, mailbox, server) -------------
    _rule("mta.exceedlimit", R.exceedlimit, MTA, "this recipient", "recipient's size limit",
          "recipient size limit", "administrative limit",
          regex=r"(?:too large|too big|size limit) for this recipient|recipient'?s? size limit"
                r"|exceeds? (?:the )?administrative limit"),
    _rule("postfix.emailtoolarge", R.emailtoolarge, POSTFIX, "message file too big"),
    _rule("mta.systemfull", R.systemfull, MTA, "insufficient system", "insufficient disk",
          "disk full", "no space left on device", "system storage"),
    _rule("mta.mailboxfull", R.mailboxfull, MTA, "full", "quota", "storage", "file too large",
          "mail file", "mailbox size",
          regex=r"mailbox (?:is )?(?:currently )?full|mailbox full|inbox is (?:full|out of "
                r"storage)|out of storage space|over ?quota|quota ?exceeded|exceeds? (?:his |the"
                r" |its )?(?:mailbox |disk |storage |diskspace )?quota|(?:disk|mailbox|storage"
                r"|diskspace) quota|mailbox size limit|storage allocation|file too large"
                r"|mail ?file (?:size|quota|is full)|user'?s? (?:mailbox )?is full"),
    _rule("fr.mailboxfull", R.mailboxfull, FR, "pleine", regex=r"bo[iî]te .{0,30}pleine"),
    _rule("de.mailboxfull", R.mailboxfull, GMX, "postfach", "speicherplatz",
          regex=r"postfach (?:des empfängers )?(?:ist )?(?:voll|überfüllt)|speicherplatz"),
    _rule("mta.mesgtoobig", R.mesgtoobig, MTA, "size", "too big", "too large", "databytes",
          regex=r"message size (?:\d+ )?exceeds|size limit|(?:message|mail) (?:is )?too (?:big"
                r"|large)|exceeds? (?:the )?maximum (?:message )?size|databytes limit"
                r"|message exceeds"),
    # --- Local delivery programs (their output says "does not exist", "not found") ---------
    _rule("sendmail.mailererror", R.mailererror, SENDMAIL, "unknown mailer error"),
    _rule("postfix.mailererror", R.mailererror, POSTFIX, "command died with status"),
    _rule("exim.mailererror", R.mailererror, EXIM, "transport returned", "pipe to |"),
    _rule("mta.mailererror", R.mailererror, MTA, "mailer error", "command failed", "procmail"),
    # --- Disabled mailbox --------------------------------------------------------------------
    _rule("mta.suspend", R.suspend, MTA, "disabled", "suspended", "deactivated", "inactive",
          "locked", "désactivé", "suspendu", "gesperrt", "deaktiviert",
          regex=r"(?:account|mailbox|user|address)(?: that you tried to reach)? (?:is |has been )?"
                r"(?:currently |temporarily )?(?:disabled|suspended|deactivated|inactive|locked)"
                r"|\b(?:disabled|suspended|deactivated|inactive|locked) (?:account|mailbox|user)"
                r"|compte .{0,20}(?:désactivé|suspendu)|(?:gesperrt|deaktiviert)"),
    # --- Domain unknown (after sender refusals: "sender domain not found" is `rejected`) ------
    _rule("ms.hostunknown", R.hostunknown, MS, "domainnonexistent", "dns domain"),
    _rule("mta.hostunknown", R.hostunknown, MTA, "domain", "host", "unrouteable",
          "mail exchanger", "no mx", "nxdomain", "name service error", "unable to route",
          "introuvable",
          regex=r"domain (?:name )?not found|host (?:or domain name )?not found"
                r"|(?:domain|host) (?:\S+ )?does not exist|no such domain"
                r"|couldn't find any host|no route found to domain|unrouteable address"
                r"|nxdomain|name service error|unable to route|couldn't find a mail exchanger"
                r"|no mx (?:or a )?records?|domaine (?:inconnu|introuvable)|domain (?:is )?unknown"
                r"|unknown domain|domain name (?:could not be )?resolved"),
    # --- Mailbox unknown ---------------------------------------------------------------------
    _rule("yahoo.userunknown", R.userunknown, YAHOO, "doesn't have a",
          regex=r"doesn't have an? [\w.]+ account"),
    _rule("ms.userunknown", R.userunknown, MS, "recipientnotfound"),
    _rule("exchange.userunknown", R.userunknown, EXCH, "recipnotfound"),
    _rule("ironport.userunknown", R.userunknown, IRON, "#5.1.0 address rejected"),
    _rule("mimecast.userunknown", R.userunknown, MIME, "invalid recipient"),
    _rule("domino.userunknown", R.userunknown, DOMINO, "not listed in",
          regex=r"not listed in (?:the )?(?:domino directory|public name & address book)"),
    _rule("qmail.userunknown", R.userunknown, QMAIL, "no mailbox here"),
    _rule("mta.userunknown", R.userunknown, MTA, "unknown", "no such", "not found",
          "does not exist", "doesn't exist", "may not exist", "mailbox unavailable",
          "invalid", "not exist",
          regex=r"user unknown|unknown user|no such (?:user|recipient|mailbox|address)"
                r"|(?:user|mailbox|recipient|address|account) (?:was )?not found"
                r"|does(?: not|n't) exist|may not exist|mailbox (?:is )?unavailable"
                r"|unknown (?:local[- ]part|recipient\b(?!s)|address|mailbox)"
                r"|invalid (?:mailbox|recipient|address)|address (?:is )?unknown"),
    _rule("fr.userunknown", R.userunknown, FR, "inconnu", "invalide", "n'existe pas",
          regex=r"(?:utilisateur|destinataire|adresse|boite|boîte)\b.{0,30}(?:inconnue?|invalide)"
                r"|n'existe pas"),
    _rule("de.userunknown", R.userunknown, GMX, "unbekannt", "existiert nicht",
          "nicht vorhanden"),
    # --- Delivery over time, network, systems ---------------------------------------------------
    _rule("exim.expired", R.expired, EXIM, "retry timeout exceeded", "failing for a long time"),
    _rule("sendmail.expired", R.expired, SENDMAIL, "could not be delivered for"),
    _rule("qmail.expired", R.expired, QMAIL, "in the queue too long"),
    _rule("mta.expired", R.expired, MTA, "expired", "too long in queue"),
    _rule("ms.networkerror", R.networkerror, MS, "did not accept our requests to connect"),
    _rule("exchange.networkerror", R.networkerror, EXCH, "socketerror", "connection dropped"),
    _rule("sendmail.networkerror", R.networkerror, SENDMAIL, "reply: read error from",
          "connection refused by"),
    _rule("mta.networkerror", R.networkerror, MTA, "connect", "timed out", "timeout",
          "no route to host", "unreachable", "loop", "hop count", "read error", "socketerror",
          "dns", "lost connection", "connection dropped",
          regex=r"connection (?:timed out|refused|reset|dropped|lost|closed)|timed out"
                r"|(?:failed|unable|could not) to connect"
                r"|connect to |no route to host|unreachable|loop|hop count|read error"
                r"|socketerror|lost connection|establish an smtp connection|dns (?:error"
                r"|failure|lookup|temporary|server failure)|timeout"),
    _rule("mimecast.systemerror", R.systemerror, MIME, "internal resources"),
    _rule("mta.systemerror", R.systemerror, MTA, "local error", "temporary local problem",
          "configuration problem", "system problem", "internal error", "server error",
          "misconfigur", "temporarily unavailable"),
    _rule("exchange.contenterror", R.contenterror, EXCH, "storedrv.deliver", "cat.invalidcontent",
          "conversionfailed"),
    _rule("mta.contenterror", R.contenterror, MTA, "conversion", "corrupt", "invalidcontent",
          "invalid content", "charset", "media", "attachment type", "unsupported",
          regex=r"conversion ?failed|conversion (?:required|not supported)|corrupt"
                r"|invalid ?content|invalid ?charset|media (?:type )?not supported"
                r"|attachment type|unsupported (?:content|media|attachment)"),
    _rule("acs.quarantined", R.quarantined, ACS, "quarantin"),
    # --- Generic policy (last: many texts above mention a policy) ---------------------------
    _rule("apple.policyviolation", R.policyviolation, APPLE, "[cs01]", "[cs02]", "[hm07]",
          "[hm08]"),
    _rule("proofpoint.policyviolation", R.policyviolation, PFPT, "local policy violation"),
    _rule("mta.policyviolation", R.policyviolation, MTA, "polic", "administrative prohibition",
          "not authorized", "prohibited"),
    _rule("mta.syntaxerror", R.syntaxerror, MTA, "syntax", "command unrecognized",
          "command not recognized", "unrecognized command", "bad sequence", "need mail command",
          "need rcpt command", "invalid command"),
)
# fmt: on

# The prefilter's index. Testing ~280 needles one by one costs more than the rest of a
# classification, so needles are grouped under short "triggers" (3-character substrings, chosen
# greedily so that every needle contains one): only the needles under a trigger that occurs in
# the text are tested, and only their rules are tried. Exact by construction: a needle that
# occurs contains its trigger, which then occurs too.


_Index = tuple[tuple[str, tuple[tuple[str, tuple[int, ...]], ...]], ...]


@cache
def _index() -> _Index:
    """Built on first use, not at import (cold starts pay for imports)."""
    needles = dict.fromkeys(n for rule in RULES for n in rule.needles)
    rules_of = {n: tuple(i for i, r in enumerate(RULES) if n in r.needles) for n in needles}
    grams = {n: dict.fromkeys(n[i : i + 3] for i in range(max(1, len(n) - 2))) for n in rules_of}
    counts: dict[str, int] = {}
    for n in rules_of:
        for gram in grams[n]:
            counts[gram] = counts.get(gram, 0) + 1
    uncovered, groups = dict.fromkeys(rules_of), []
    while uncovered:
        trigger = max(counts, key=counts.__getitem__)  # first of the most shared: deterministic
        members = [n for n in uncovered if trigger in n]
        for n in members:
            del uncovered[n]
            for gram in grams[n]:
                counts[gram] -= 1
                if not counts[gram]:
                    del counts[gram]
        groups.append((trigger, tuple((n, rules_of[n]) for n in members)))
    return tuple(groups)


def first_match(prose: str, codes: tuple[str | None, str | None]) -> PhraseRule | None:
    """The first rule in RULES order that matches: the same result as trying each in turn."""
    candidates: set[int] = set()
    for trigger, needles in _index():
        if trigger in prose:
            for needle, rules in needles:
                if needle in prose:
                    candidates.update(rules)
    for i in sorted(candidates):
        if RULES[i]._confirms(prose, codes):
            return RULES[i]
    return None
