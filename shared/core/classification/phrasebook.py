"""Receiver phrase rules: ordered, precompiled, first match wins, each row saying where it is seen.

Rules read the status message as `prose`: its words (runs of letters, in any script) lower-cased
and joined by single spaces, with a space at each end. Digits and punctuation are dropped, so
reply codes at the start of continuation lines (`550-5.7.26`), line breaks, quotes and
apostrophes (`doesn't` and `doesn’t` both read `doesn t`) do not split a sentence. A needle is
written in the same form and matches where a word starts: " spam" matches "spam" and "spambox",
not "antispam"; a one-word needle shorter than four letters must be the whole word (" ptr ").
CJK needles (Chinese, Japanese, Korean, written without spaces) match anywhere.

A rule fires when one of its `needles` occurs (the cheap prefilter) and, when it has them, its
`pattern` matches the prose, its `raw` pattern matches the lower-cased text with digits and
punctuation (for vendor tags such as `[TSS04]`), and the message's enhanced or basic reply code
is one of its `codes`. A `weak` rule is a vague wording ("mailbox unavailable", "access
denied", "try again later"): it yields to an enhanced code that names an address or mailbox
status (X.1.n, X.2.n with n > 0), which is more specific than it. Everything else in the text
beats the code (see classifier).

Sections are ordered so that the more specific reading of an overlapping wording comes first:
ACS tokens; reputation; authentication; throttling; reverse DNS; blocklists; content; the
recipient's own filters; sender refusals; relaying; TLS and security; then the address and
mailbox reasons (size, full, disabled, given up, DNS, unknown host, unknown user); then network,
system and protocol failures; generic policy; and last the vague wordings.

Wordings are general: each row is what a family of servers says (Postfix's `Recipient address
rejected: ...`, Microsoft's `Access denied, ...`, the many ways of saying "no such user"), not one
sentence. Sources: the receivers' published error references (Gmail, Microsoft 365 "NDRs in
Exchange Online", Yahoo/AOL, Apple iCloud, GMX/web.de, Orange, Comcast, Mimecast, Proofpoint, QQ,
Mail.ru), the MTAs' own texts (Postfix, Exim, Sendmail, qmail/vpopmail, Exchange, Domino,
Coremail) and tests/data/bounces_real.jsonl (real replies, each with its source). The non-English
rows are the usual wordings of localised servers in each language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from .taxonomy import Reason

# Words: runs of letters in any script (no digits, no underscore). Shared with the classifier.
WORDS = re.compile(r"[^\W\d_]+")
# Chinese, Japanese and Korean letters: their needles match anywhere, not at word starts.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


# ASCII digits, punctuation and controls to spaces: the fast path for ASCII texts.
_ASCII_NOT_LETTERS = str.maketrans({c: " " for c in map(chr, range(128)) if not c.isalpha()})


def prose_of(text: str) -> str:
    """The words of a lower-cased text, single-spaced, with a space at each end."""
    if text.isascii():
        return " " + " ".join(text.translate(_ASCII_NOT_LETTERS).split()) + " "
    return " " + " ".join(WORDS.findall(text)) + " "


def _needle(text: str) -> str:
    words = WORDS.findall(text.lower())
    if not words:
        raise ValueError(f"needle without letters: {text!r}")
    joined = " ".join(words)
    if _CJK.match(joined):
        return joined
    # A short one-word needle is matched whole (see the module docstring): " ptr " is not " ptrs".
    tail = " " if text.endswith(" ") or (len(words) == 1 and len(words[0]) < 4) else ""
    return " " + joined + tail


@dataclass(frozen=True, slots=True, eq=False)  # compared and hashed by identity: rows are unique
class PhraseRule:
    id: str  # stable id reported as Classification.rule
    reason: Reason
    source: str  # who uses this wording; completes "Matched wording seen from ..."
    needles: tuple[str, ...]  # normalised (see module docstring); the rule is tried only if one is
    pattern: re.Pattern[str] | None  # must also match the prose, when present
    raw: re.Pattern[str] | None  # must also match the lower-cased text, when present
    codes: frozenset[str]  # when not empty: the message's enhanced or basic code must be one
    weak: bool  # a vague wording that yields to an address/mailbox enhanced code

    def matches(self, prose: str, raw: str, codes: tuple[str | None, str | None]) -> bool:
        return any(n in prose for n in self.needles) and self.confirms(prose, raw, codes)

    def confirms(self, prose: str, raw: str, codes: tuple[str | None, str | None]) -> bool:
        if self.codes and codes[0] not in self.codes and codes[1] not in self.codes:
            return False
        if self.pattern is not None and self.pattern.search(prose) is None:
            return False
        return self.raw is None or self.raw.search(raw) is not None


def _rule(
    rule_id: str,
    reason: Reason,
    source: str,
    *needles: str,
    regex: str | None = None,
    raw: str | None = None,
    codes: tuple[str, ...] = (),
    weak: bool = False,
) -> PhraseRule:
    return PhraseRule(
        rule_id,
        reason,
        source,
        tuple(dict.fromkeys(_needle(n) for n in needles)),
        None if regex is None else re.compile(regex),
        None if raw is None else re.compile(raw),
        frozenset(codes),
        weak,
    )


R = Reason
ACS = "Azure Communication Services"
GMAIL = "Gmail / Google Workspace"
GROUPS = "Google Groups, Mailman, Sympa, Yahoo Groups and other list services"
MS = "Microsoft 365 / Outlook.com / Exchange Online Protection"
EXCH = "Exchange Server (on-premises)"
YAHOO = "Yahoo / AOL"
APPLE = "Apple iCloud Mail"
GMX = "GMX / web.de / T-Online (German wording)"
FR = "Orange / Free / La Poste / SFR (French wording)"
COMCAST = "Comcast / AT&T / Cox (US ISPs)"
CN = "QQ Mail / NetEase / Coremail / Sina (Chinese providers)"
RU = "Mail.ru / Yandex / Rambler (Russian providers)"
MIME = "Mimecast"
PFPT = "Proofpoint"
BARRA = "Barracuda"
IRON = "Cisco Secure Email (IronPort)"
POSTFIX = "Postfix"
EXIM = "Exim (incl. cPanel)"
SENDMAIL = "Sendmail"
QMAIL = "qmail / vpopmail / netqmail"
DOMINO = "HCL/Lotus Domino"
DNSBL = "DNS blocklists (Spamhaus, SpamCop, Barracuda RBL, SORBS, UCEPROTECT, Cloudmark)"
FILTERS = "content filters (amavis, rspamd, SpamAssassin, ClamAV, Symantec, MailMarshal)"
MTA = "many mail servers"
ES = "Spanish-language servers (Telefónica, Fibertel, Latin American ISPs)"
IT = "Italian-language servers (Aruba, Libero, TIM, Register.it)"
PT = "Portuguese-language servers (UOL, Terra, IG, Sapo)"
NL = "Dutch-language servers (KPN, Ziggo, XS4ALL)"
PL = "Polish-language servers (Onet, WP, Interia, o2.pl)"
RUL = "Russian-language servers (Mail.ru, Yandex, Rambler)"
JA = "Japanese-language servers (Docomo, au, SoftBank, Nifty, OCN)"
ZH = "Chinese-language servers (QQ, NetEase 163/126, Sina, Sohu, Coremail)"

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
          "messagesizeexceeded", "mb",
          raw=r"emailtoolarge|email too large|messagesizeexceeded"
              r"|(?:size|large).{0,60}\b10 ?mb\b.{0,40}(?:limit|allowed|maximum)"),
    # --- Reputation (these texts also say "spam", "blocked", "rate limited") ---------------
    _rule("gmail.securityerror.tls", R.securityerror, GMAIL,
          "wasn't sent over a tls connection", "was not sent over a tls connection"),
    _rule("gmail.badreputation.unsolicited", R.badreputation, GMAIL,
          "unusual rate of unsolicited mail"),
    _rule("mta.badreputation", R.badreputation, MTA, "reputation", "spam sender",
          "suspected spammer",
          "known spammer",
          regex=r" (?:poor|low|bad) reputation| ip reputation| reputation of the sending"
                r"| sender reputation| reputation is too low| (?:suspected |known )?spam sender"
                r"| (?:suspected|known) spammer"),
    # Yahoo's [TS0n]/[TSSnn] tags: deferrals for volume, complaints or reputation.
    _rule("yahoo.blocked", R.blocked, YAHOO, "permanently deferred", "connections will not be "
          "accepted from", "connections not accepted from", "bl", "tss",
          raw=r"permanently deferred|connections (?:will )?not (?:be )?accepted from|\[tss09\]"
              r"|\[bl2[123]\]"),
    _rule("yahoo.badreputation", R.badreputation, YAHOO, "tss", "ts", "user complaints",
          "unexpected volume",
          raw=r"\[tss?0[0-8]\]|user complaints|unexpected volume"),
    # Yahoo [TSS11]: too many unknown recipients from this sender, so not `userunknown`.
    _rule("yahoo.badreputation.unknown", R.badreputation, YAHOO, "tss",
          "excessive unknown recipients", raw=r"\[tss11\]|excessive unknown recipients"),
    _rule("free.badreputation", R.badreputation, FR, "too many spams"),
    # Yahoo "temporarily deferred - 4.16.50": its reputation deferral codes.
    _rule("yahoo.badreputation.deferred", R.badreputation, YAHOO, "temporarily deferred",
          raw=r"temporarily deferred.{0,20}4\.16\.5\d"),
    # --- Content filters that name SPF/PTR among their checks (before authentication) -------
    _rule("mta.spamdetected.checks", R.spamdetected, FILTERS, "antispam", "anti spam",
          regex=r" anti ?spam (?:check|filter|system|test|rule)"),
    # --- Sender authentication (before throttling: "rate limited because no DMARC") ---------
    _rule("gmail.authfailure.unauthenticated", R.authfailure, GMAIL,
          "this mail is unauthenticated", "sender is unauthenticated", "unauthenticated email"),
    _rule("gmail.authfailure.spfdkim", R.authfailure, GMAIL,
          "authenticate with", "fails to pass authentication checks", "authenticated spf or dkim",
          "does not have authentication information"),
    _rule("ms.authfailure.level", R.authfailure, MS, "required authentication level"),
    _rule("mta.authfailure.dmarc", R.authfailure, MTA, "dmarc"),
    _rule("mta.authfailure.spf", R.authfailure, MTA, "spf", "sender policy framework",
          "not allowed to send mail from", "allow sending mails from",
          "not permitted to send mail from", "not permitted by the domain owner",
          "not a permitted sender", "designated sender", "mismatches client ip",
          "originating ip of the message is not permitted"),
    _rule("mta.authfailure.dkim", R.authfailure, MTA, "dkim", "domainkeys"),
    _rule("mta.authfailure.arc", R.authfailure, MTA, "arc validation", "arc seal"),
    # cPanel's "may not exist" text also says "they may be blacklisted".
    _rule("exim.userunknown", R.userunknown, EXIM, "the account or domain may not exist"),
    # --- Throttling: sending rate, recipient rate, sender quotas, greylisting, connections ---
    # Microsoft's 4.7.500-599 "Access denied, please try again later" / "Server busy": its
    # throttling of a new or suspicious sending IP.
    _rule("ms.ratelimited", R.ratelimited, MS, "server busy", "access denied", "try again later",
          raw=r"\b4\.7\.5\d\d\b"),
    _rule("mta.toomanyconn", R.toomanyconn, MTA, "too many", "trop de connexions",
          "concurrent connections", "connection limit", "maximum number of concurrent",
          regex=r" too many (?:concurrent |simultaneous |open )?(?:smtp )?(?:connections"
                r"|sessions)| trop de connexions| concurrent connections| connection limit"),
    # --- Reverse DNS and HELO ----------------------------------------------------------------
    _rule("gmail.speeding", R.speeding, GMAIL, "unusual rate of mail"),
    _rule("outlook.speeding", R.speeding, MS, "limits for how many messages can be sent",
          "thread limit", "queue quota"),
    _rule("postfix.speeding", R.speeding, POSTFIX, "too much mail from"),
    _rule("mta.speeding", R.speeding, MTA, "sending rate", "too many messages", "trop de messages",
          "rate limit", "message rate", "receive limit", "excessive volume", "too many recent",
          "too many mails", "too many emails", "per hour", "hourly", "too fast", "slow down",
          "slower",
          regex=r" sending rate (?:is )?(?:too high|exceeded)| too many (?:recent )?(?:e ?mails"
                r"|messages)(?! on the server| in)| trop de messages| rate limit(?:ed)? exceeded"
                r"| exceeded (?:\w+ )?(?:message )?rate limit| message rate| receive limit"
                r"| excessive volume| per hour| too fast| slow(?:er)? down| try again slower"
                r"| limit for the number of messages| hourly (?:message )?limit"),
    _rule("gmail.ratelimited", R.ratelimited, GMAIL, "receiving mail at a rate"),
    _rule("mta.ratelimited.greylist", R.ratelimited, MTA, "greylist", "graylist", "grey list"),
    _rule("ms.ratelimited.threshold", R.ratelimited, MS, "thresholdexceeded",
          "exceeded permitted limits"),
    # The sender's own quotas (submission, daily sending, relay): soft, wait for the window.
    _rule("mta.ratelimited.quota", R.ratelimited, MTA, "submission quota", "sending quota",
          "sending limit", "relay quota", "daily limit", "sender frequency", "frequency limit",
          "daily user sending", "too many recipients", "quota for relay",
          regex=r" (?:submission|sending|relay|outbound|daily|hourly) (?:\w+ )?quota"
                r"| sending limit| daily limit| frequency limit| sender frequency"
                r"| too many recipients| quota for relay"),
    _rule("aol.requireptr", R.requireptr, YAHOO, "dns nr", raw=r"\(dns:nr\)"),
    _rule("mta.requireptr", R.requireptr, MTA, "ptr", "reverse", "rdns", "hostname", "helo",
          "ehlo",
          regex=r" ptr | reverse (?:dns|lookup|hostname|mapping)| rdns | cannot find your "
                r"(?:reverse )?hostname| no (?:valid )?reverse| (?:e?helo|hostname) .{0,40}"
                r"(?:does not|doesn t|did not) match| (?:e?helo|hostname) mismatch"
                r"| mismatch(?:ed)? (?:e?helo|hostname)"),
    # --- Refusals whose texts also say spam or block: sender bans, callouts, tenant lists --
    _rule("ms.policyviolation.tenant", R.policyviolation, MS, "tenant allow block list",
          "blocked by your organization"),
    _rule("ms.blocked.bannedsender", R.blocked, MS, "banned sender", codes=("5.7.511",)),
    _rule("ms.rejected", R.rejected, MS, "banned sender", "spam abuse", "tenant has exceeded",
          "unregistered domain", "bad outbound sender"),
    _rule("mta.rejected.callout", R.rejected, MTA, "callback", "callout", "sender verify",
          "verify mailfrom", "sender verification", "verification failed for",
          regex=r" call(?:back|out) (?:setup )?(?:failed|verification)| sender verif"
                r"| verify mailfrom| verification failed for"),
    # A group or list refusing a sender who is not a member, in many languages.
    # --- Blocklists (before spam: SORBS says "sending spam") ----------------------------------
    _rule("dnsbl.blocked", R.blocked, DNSBL, "spamhaus", "spamcop", "sorbs", "barracudacentral",
          "barracuda reputation", "uceprotect", "psbl", "dnsbl", "rbl", "invaluement", "dnsrbl",
          "cloudmark", "dynablock", "prs proofpoint", "spam list", "blocklisted", "blacklisted",
          regex=r" spamhaus| spamcop| sorbs | barracudacentral| barracuda reputation| uceprotect"
                r"| psbl | dnsbl| rbl | invaluement| dnsrbl| cloudmark| dynablock"
                r"| prs proofpoint| spam list| (?:block|black)listed"),
    # Proofpoint's own blocklist; Apple iCloud's inbound filtering answers with it too.
    _rule("proofpoint.blocked", R.blocked, f"{PFPT} (also Apple iCloud)", "ipcheck proofpoint com",
          "support proofpoint com dnsbl lookup"),
    # AOL's RLY:B1..B3 (blocked for volume/complaints); "deny IP" pages of Chinese providers.
    _rule("aol.blocked", R.blocked, YAHOO, "rly", raw=r"\brly:b\d"),
    _rule("mta.blocked.denyip", R.blocked, CN, "denyip", "deny ip", raw=r"deny ?ip"),
    _rule("mta.blocked.list", R.blocked, MTA, "blocked using", "blacklist", "black list",
          "block list", "blocklist", "block listed", "blocked see", "block for spam",
          "blocked for abuse", "blocked for spam", "bloquee", "bloquée",
          regex=r" blocked using (?!spam)| blacklist| black list| block ?list| block listed"
                r"| blocked see| block(?:ed)? for (?:spam|abuse)| bloqu[eé]e"),
    # Outlook.com's block texts mention "Unsolicited Commercial Email".
    _rule("ms.blocked", R.blocked, MS, "banned sending ip", "not accepted from this ip",
          "weren t sent", "were not sent", "traffic not accepted"),
    # --- Message content -------------------------------------------------------------------------
    _rule("gmail.notcompliantrfc", R.notcompliantrfc, GMAIL, "rfc", "message id header",
          regex=r" not rfc (?:\w+ )?compliant| message id header"),
    _rule("mta.notcompliantrfc", R.notcompliantrfc, MTA, "rfc", "bare", "header", "headers",
          "missing", "duplicate", "no from",
          regex=r" not rfc (?:\w+ )?compliant| rfc (?:section )?compliant"
                r"| bare ?line ?feed| bare lf | missing (?:required )?(?:\w+ )?header"
                r"| duplicate (?:\w+ )?header| header (?:syntax|is malformed|is missing)"
                r"| headers are not rfc| missing a valid address in from header| no from header"),
    _rule("mta.virusdetected", R.virusdetected, FILTERS, "virus", "malware", "infected", "eicar",
          "trojan", "banned attachment", "dangerous attachment", "infection"),
    # Gmail's "content presents a potential security issue" and "illegal attachment": its policy on
# attachment types and links, not a virus found.
    _rule("gmail.policyviolation.content", R.policyviolation, GMAIL,
          "content presents a potential security issue", "illegal attachment"),
    _rule("barracuda.spamdetected", R.spamdetected, BARRA, "blocked", raw=r":blocked\)"),
    _rule("mimecast.policyviolation.spoofing", R.policyviolation, MIME, "anti spoofing"),
    _rule("mimecast.spamdetected", R.spamdetected, MIME, "rejected due to security policies"),
    _rule("mta.spamdetected", R.spamdetected, FILTERS, "spam", "unsolicited", "junk",
          "mass mailer", "bulk", "ube", "uribl", "dspam", "spoofed", "mail content denied",
          "content filter", "spam", "unerwünscht", "unerwuenscht",
          regex=r" d?spam(?!haus|cop)| unsolicited| junk| mass mailer| bulk (?:e ?mail|mail)"
                r"| ube | uribl| spoofed| mail content denied| content filter"
                r"| unerw(?:ü|ue)nscht"),
    # Localised spam wordings (es, it, pt, nl, pl, ru, ja, zh).
    _rule("es.spamdetected", R.spamdetected, ES, "correo no deseado", "correo basura",
          "mensaje no deseado", "no solicitado"),
    _rule("it.spamdetected", R.spamdetected, IT, "posta indesiderata", "messaggio indesiderato",
          "posta non richiesta"),
    _rule("pt.spamdetected", R.spamdetected, PT, "lixo eletrônico", "lixo eletronico",
          "mensagem indesejada", "mensagem não solicitada", "correio não solicitado"),
    _rule("nl.spamdetected", R.spamdetected, NL, "ongewenste e mail", "ongewenste mail",
          "ongewenst bericht"),
    _rule("pl.spamdetected", R.spamdetected, PL, "niechciana", "niechciany", "niepożądan"),
    _rule("ru.spamdetected", R.spamdetected, RUL, "спам", "нежелательн"),
    _rule("cjk.spamdetected", R.spamdetected, f"{JA}; {ZH}", "迷惑メール", "スパム", "垃圾邮件",
          "垃圾郵件", "垃圾信"),
    # --- Refused by the recipient's own filters or group restrictions ---------------------------
    _rule("ms.exceedlimit", R.exceedlimit, MS, "recipsizelimit"),
    _rule("ms.mesgtoobig", R.mesgtoobig, MS, "sendsizelimit", "too large for this organization"),
    # Microsoft's directory-based edge blocking (the recipient is not in the tenant's directory).
    _rule("ms.userunknown.dbeb", R.userunknown, MS, "recipient address rejected access denied",
          codes=("5.4.1", "5.7.504")),
    _rule("ms.userunknown.dbeb.as", R.userunknown, MS, "as", raw=r"as\(201806281\)"),
    _rule("ms.userunknown.banned", R.userunknown, MS, "banned recipient"),
    _rule("ms.blocked.recipient", R.blocked, MS, "access denied rejected by recipient"),
    _rule("ms.filtered.resolver", R.filtered, MS, "resolver rst", "delivery restriction"),
    _rule("ms.filtered.group", R.filtered, MS, "allowed senders list",
          "sender not authenticated for",
          "sender was not authenticated"),
    _rule("mimecast.filtered", R.filtered, MIME, "blocked senders", "user entry"),
    _rule("mta.filtered", R.filtered, MTA, "not authorized to send to", "not allowed to send to",
          "has blocked", "blocked by the recipient", "recipient address rejected access denied",
          "blocked by recipient", "rejected by recipient",
          "refuses mail from", "mail filter", "allowed senders", "refused to receive",
          "message filtered", "delivery restricted", "restricted by policy",
          "rejected by the destination", "rejected by destination", "delivery not authorized",
          "not accepting mail", "not accepting e mail", "not accepting email",
          "does not accept email", "does not accept e mail", "does not accept mail",
          "doesn t accept mail", "doesn t accept email",
          regex=r" not authorized to send to| not allowed to send to| has blocked"
                r"| recipient address rejected access denied| blocked by"
                r" (?:the )?recipient| rejected by recipient| refuses mail from| mail filter"
                r"| allowed senders| refused to receive| message filtered| delivery restricted"
                r"| restricted by policy| (?:mail|message) (?:is |was )?rejected by (?:the )?"
                r"(?:recipient|destination)| delivery not authorized (?!message refused)"
                r"| (?:not accepting|does not accept|doesn t accept)"
                r" (?:e ?)?mails? (?:with|from|in|containing) "),
    # --- Sender refusals first among blocks: "banned sender", group non-members, callouts ------
    _rule("groups.rejected", R.rejected, GROUPS, "permission to post", "not a member",
          "non member", "nonmember", "members only", "only members", "not allowed to post",
          "not subscribed", "post messages to", "posting to", "keine berechtigung",
          "nicht berechtigt", "autorisation de", "pas autoris", "permiso para",
          "autorizzazione", "permissão para", "toestemming", "uprawnie", "нет прав",
          "не являетесь", "投稿する権限", "権限がありません", "发帖", "没有权限", "無權",
          "沒有權限",
          regex=r" permission to post| not a member(?! of domain)| non ?member| members only"
                r"| only members"
                r"| not allowed to post| not subscribed| keine berechtigung| nicht berechtigt"
                r"| autorisation de (?:publier|poster|diffuser)| pas autoris[ée]e? (?:à|a) "
                r"(?:publier|poster)| permiso para (?:publicar|enviar)| autorizzazione (?:a|per)"
                r" (?:pubblicare|inviare)| permissão para (?:postar|publicar|enviar)"
                r"| toestemming om| uprawnie[nń] do (?:publikowania|wysy)| нет прав| не являетесь"
                r"|投稿する権限|権限がありません|发帖|没有权限|無權|沒有權限"),
    # --- Relaying --------------------------------------------------------------------------------
    _rule("qmail.norelaying", R.norelaying, QMAIL, "allowed rcpthosts"),
    _rule("mta.norelaying", R.norelaying, MTA, "relay", "relaying", "not a gateway",
          regex=r" relay(?:ing)? (?:access )?(?:is )?(?:denied|not permitted|prohibited|rejected"
                r"|not allowed|disallowed)| relaying to .{0,60}prohibited| unable to relay"
                r"| (?:not permitted|not allowed) to relay| we do not relay| open relay not allowed"
                r"| as a relay| unauthori[sz]ed relay| relay through| not a gateway"),
    # --- The sending IP or host is refused -----------------------------------------------------
    _rule("ironport.blocked", R.blocked, IRON, "mail system has been rejected",
          regex=r" access to (?:submit messages to )?this e ?mail system has been rejected"),
    _rule("gmail.blocked", R.blocked, GMAIL, "not authorized to send email directly"),
    # Orange's "Service refusé": a block (OFR006), or a deferral when it says to retry later.
    _rule("orange.blocked", R.blocked, FR, "ofr", raw=r"ofr_?006"),
    _rule("orange.ratelimited", R.ratelimited, FR, "service refus",
          raw=r"service refus.{0,60}(?:plus tard|later)"),
    _rule("orange.blocked.refused", R.blocked, FR, "service refus"),
    _rule("mta.blocked", R.blocked, MTA, "client host", "ip blocked", "your ip", "ip address",
          "host",
          "connection refused by policy", "access from ip", "not accepting connections",
          "service denied", "bypassing", "abuse", "policy rejection", "ip based", "client",
          regex=r" client host (?:\w+ )?(?:rejected|blocked|refused)| (?:ip|ip address|host)"
                r" (?:\S+ )?(?:has been |is )?(?:blocked|banned|blacklisted|denied)"
                r"| connection refused by policy| access from ip address .{0,40}blocked"
                r"| not accepting connections| service denied| bypassing"
                r"| (?:blocked|rejection|banned) for abuse| policy rejection abuse"
                r"| (?:ip|client) (?:\w+ )?based"
                r"| client (?:ip )?(?:\S+ )?(?:blocked|banned|rejected)"),
    # --- The envelope sender is refused ----------------------------------------------------------
    _rule("mta.rejected", R.rejected, MTA, "sender address", "envelope sender domain must exist",
          "domain of sender", "from address", "sender domain", "sender has no", "sender rejected",
          "sender denied", "sender is rejected", "invalid sender", "invalid from", "from domain",
          "invalid mail from", "sender email", "sender unknown",
          "unknown sender", "sender is unknown", "unroutable sender", "unrouteable sender",
          "envelope blocked", "domain based", "sender address blocked", "no valid mx for your",
          "invalid dns mx", "from address",
          regex=r" sender address (?:rejected|blocked|denied)| sender verify failed"
                r"| envelope sender domain must exist| domain of sender address"
                r"| unresolvable rfc from address| sender domain (?:does not exist|not found"
                r"|must (?:exist|resolve)|is (?:invalid|unroutable|unrouteable))"
                r"| sender has no (?:a aaaa or mx|mx)| sender address has null mx"
                r"| sender (?:is |was )?(?:rejected|denied)| invalid (?:sender|from|mail from)"
                r" (?:address|domain)| invalid sender| from:? domain (?:does not exist|not found)"
                r"| invalid mail from| sender email is not"
                r"| (?:unknown sender|sender (?:is )?unknown)| unrout(?:e)?able sender"
                r"| envelope blocked| domain based| no valid mx for your"
                r"| invalid dns mx or a aaaa| from address (?:is )?(?:invalid|rejected)"),
    # --- TLS and other security requirements ---------------------------------------------------
    _rule("mta.securityerror.dns", R.securityerror, MTA, "mta sts", "dnssec",
          regex=r" (?:mx hosts?|domain) .{0,40}(?:failed mta sts| dnssec)| dnssec invalid"
                r"| invalid dnssec"),
    _rule("mta.failedstarttls", R.failedstarttls, MTA, "tls", "ssl", "handshake", "certificate",
          "starttls", "dane", "tlsa",
          regex=r" tls is required but was not offered| tls negotiation failed| handshake fail"
                r"| starttls (?:failed|negotiation|not supported)| cannot start tls"
                r"| tls not available| ssl (?:routines|handshake)| certificate"
                r"| must support tls| dane | tlsa "),
    _rule("ms.securityerror", R.securityerror, MS, "client not authenticated",
          "client was not authenticated"),
    _rule("mta.securityerror", R.securityerror, MTA, "starttls", "tls", "authenticat",
          "encryption", "auth", "username and password", "password not accepted",
          regex=r" must issue a starttls command first| starttls is required| tls (?:is )?"
                r"required| requires? tls| authentication (?:is )?required| authentication failed"
                r"| authentication credentials invalid| encryption (?:is )?(?:required|needed)"
                r"| auth failed| username and password not accepted| password not accepted"
                r"| cannot authenticate(?! due to temporary)"),
    # --- Moved, or the address no longer takes mail -----------------------------------------
    _rule("mta.suspend.nolonger", R.suspend, MTA, "no longer accepts"),
    # --- The domain accepts no mail (null MX, RFC 7505 / RFC 7504) -----------------------------
    _rule("mta.notaccept", R.notaccept, MTA, "does not accept", "null mx", "nullmx",
          "not accepting", "accepts no mail", "no smtp service",
          regex=r" does not accept (?:e ?)?mail| null ?mx| not accepting (?:network )?(?:messages"
                r"|mail)| accepts no mail| no smtp service"),
    _rule("mta.hasmoved", R.hasmoved, MTA, "has moved", "user not local", "no longer with",
          "changed owner", "final email delivery point", "final delivery point",
          "alternate means"),
    # --- Size (most specific first: recipient limit, sending side, mailbox, server) -------------
    _rule("mta.exceedlimit", R.exceedlimit, MTA, "this recipient", "recipient s size limit",
          "recipient size limit", "administrative limit",
          regex=r" (?:too large|too big|size limit) for this recipient| recipient s? ?size limit"
                r"| exceeds? (?:the )?administrative limit"),
    _rule("postfix.emailtoolarge", R.emailtoolarge, POSTFIX, "message file too big"),
    _rule("mta.systemfull", R.systemfull, MTA, "insufficient system", "insufficient disk",
          "disk full", "no space left on device", "system storage", "system resources"),
    _rule("mta.mailboxfull", R.mailboxfull, MTA, "full", "quota", "storage", "file too large",
          "mail file", "mailbox size", "space", "overquota", "too many messages on",
          "too much mail", "mailbox exceeds", "exceeds allowed size", "disk space",
          regex=r" (?:mailbox|mail box|inbox|mailfolder|mail folder|account|box|maildir|folder)"
                r" (?:\S+ ){0,4}?(?:is )?(?:currently |temporarily )?full| full mailbox"
                r"| mailbox full"
                r"| inbox is out of storage| out of storage space| over ?quota| quota"
                r"| storage (?:allocation|space|full|limit)| file too large"
                r"| mail ?file (?:size|quota|is full)| user s? (?:mailbox )?is full"
                r"| mailbox size limit| (?:mailbox|mail box|disk|storage) space"
                r"| (?:mailbox|user mailbox) exceeds| exceeds allowed size| too many messages on"
                r"| too much mail| not enough (?:storage )?space"),
    _rule("fr.mailboxfull", R.mailboxfull, FR, "pleine", regex=r" bo[iî]te .{0,30}pleine"),
    _rule("de.mailboxfull", R.mailboxfull, GMX, "postfach", "speicherplatz", "zuviele mails",
          "zu viele mails", "speicher",
          regex=r" postfach (?:des empfängers )?(?:ist )?(?:voll|überfüllt)| speicherplatz"
                r"| zu ?viele mails| speicher (?:\w+ )?(?:voll|überschritten)"),
    _rule("es.mailboxfull", R.mailboxfull, ES, "buzón", "buzon", "casilla", "cuota", "espacio",
          regex=r" (?:buz[oó]n|casilla) (?:\w+ ){0,3}(?:est[aá] )?(?:lleno|llena)"
                r"| cuota (?:excedida|superada)| (?:excede|super[oó]) (?:la |su )?cuota"
                r"| espacio en (?:casilla|buz[oó]n)| sin espacio| espacio insuficiente"),
    _rule("it.mailboxfull", R.mailboxfull, IT, "casella", "mailbox piena", "quota superata",
          "spazio", regex=r" casella (?:\w+ ){0,4}(?:è )?piena| mailbox piena"
                          r"| quota superata| spazio (?:esaurito|insufficiente)"),
    _rule("pt.mailboxfull", R.mailboxfull, PT, "caixa", "cota", "quota excedida", "sem espaço",
          regex=r" caixa (?:\w+ ){0,4}(?:est[aá] )?(?:cheia"
                r"|lotada)| cota (?:excedida|esgotada)| quota excedida| sem espa[çc]o"),
    _rule("nl.mailboxfull", R.mailboxfull, NL, "mailbox is vol", "mailbox vol", "postvak",
          "quotum", "opslaglimiet",
          regex=r" mailbox (?:is )?vol | postvak (?:is )?vol | quotum (?:is )?overschreden"
                r"| opslaglimiet"),
    _rule("pl.mailboxfull", R.mailboxfull, PL, "skrzynka", "przepełnion", "przepelnion",
          "brak miejsca", "limit",
          regex=r" skrzynka (?:\w+ )?(?:jest )?(?:pe[lł]na|przepe[lł]niona)| przepe[lł]nion"
                r"| brak miejsca| przekroczon[oy] limit"),
    _rule("ru.mailboxfull", R.mailboxfull, RUL, "переполнен", "превышен", "нет места",
          "недостаточно места",
          regex=r" переполнен| превышен[аоы]? (?:лимит|квота|размер)| нет места"
                r"| недостаточно места"),
    _rule("cjk.mailboxfull", R.mailboxfull, f"{JA}; {ZH}", "メールボックスがいっぱい", "容量",
          "邮箱已满", "信箱已满", "信箱已滿", "郵箱已滿", "空间不足", "空間不足", "邮箱空间",
          regex=r"メールボックスがいっぱい|容量(?:を超え|オーバー|超過|が不足|不足|已满|已滿)"
                r"|超出容量|超过容量|邮箱已满|信箱已满|信箱已滿|郵箱已滿|空间不足|空間不足"
                r"|邮箱空间"),
    _rule("mta.mesgtoobig", R.mesgtoobig, MTA, "size", "too big", "too large", "databytes",
          regex=r" message size (?:exceeds|violation|limit)| size limit| size violation"
                r"| (?:message|mail) (?:is )?too (?:big|large)| exceeds? (?:the )?maximum"
                r" (?:message )?size| exceeded (?:the )?maximum (?:inbound )?message size"
                r"| databytes limit| message exceeds| exceeded .{0,20}message size limits"
                r"| larger than .{0,20}(?:limit|allowed)"),
    # --- Local delivery programs (their output says "does not exist", "not found") ---------
    # qmail/vpopmail's own file errors ("file does not exist" is its Maildir, not the user).
    _rule("qmail.systemerror", R.systemerror, QMAIL, "unable to switch to",
          "can not open new email file", "input output error"),
    _rule("sendmail.mailererror", R.mailererror, SENDMAIL, "unknown mailer error",
          "can t create output"),
    _rule("postfix.mailererror", R.mailererror, POSTFIX, "command died with status",
          "command output"),
    _rule("exim.mailererror", R.mailererror, EXIM, "transport returned", "pipe to",
          raw=r"transport returned|pipe to \|"),
    _rule("mta.mailererror", R.mailererror, MTA, "mailer error", "command failed", "procmail"),
    # --- Disabled mailbox (before "expired": "account expired" is a disabled account) -------
    _rule("rambler.suspend", R.suspend, RU, "recipient address rejected inactive",
          "recipient address rejected blocked", "recipient address rejected disabled"),
    _rule("mta.suspend", R.suspend, MTA, "disabled", "suspended", "deactivated", "inactive",
          "locked", "closed", "not activated", "expired", "inactivity", "suspend",
          "désactivé", "suspendu", "gesperrt", "deaktiviert", "inactif",
          regex=r" (?:account|mailbox|mail box|user|address|recipient|addressee|konto)"
                r"(?: that you tried to reach)?(?: status)? (?:is |has been |was )?(?:now )?"
                r"(?:currently |temporarily )?(?:disabled|suspended|deactivated|inactive|locked"
                r"|closed|not activated|expired)| (?:disabled|suspended|deactivated|inactive"
                r"|locked) (?:account|mailbox|user)| disabled or discontinued| is disabled"
                r"| is now disabled| receiving disabled| blocked due to inactivity"
                r"| due to inactivity| compte .{0,20}(?:désactivé|suspendu|inactif)"
                r"| (?:gesperrt|deaktiviert)| suspend "),
    _rule("es.suspend", R.suspend, ES, "cuenta", "buzón", "buzon", "casilla", "falta de uso",
          regex=r" (?:cuenta|buz[oó]n|casilla|usuario) (?:\w+ ){0,3}(?:est[aá] |ha sido |ha )?"
                r"(?:desactivad[ao]|suspendid[ao]|deshabilitad[ao]|inactiv[ao]|bloquead[ao]"
                r"|expirado)| falta de uso"),
    _rule("it.suspend", R.suspend, IT, "account", "casella", "utente",
          regex=r" (?:account|casella|utente|utenza) (?:\w+ )?(?:è |e |stat[ao] )?"
                r"(?:disattivat[ao]|sospes[ao]|disabilitat[ao]|bloccat[ao])"),
    _rule("pt.suspend", R.suspend, PT, "conta", "caixa", "usuário", "usuario",
          regex=r" (?:conta|caixa postal|usu[aá]rio|utilizador) (?:\w+ )?(?:est[aá] |foi )?"
                r"(?:desativad[ao]|suspens[ao]|bloquead[ao]|inativ[ao])"),
    _rule("nl.suspend", R.suspend, NL, "account", "mailbox", "postvak",
          regex=r" (?:account|mailbox|postvak) (?:is )?(?:geblokkeerd|opgeschort"
                r"|uitgeschakeld|gedeactiveerd)"),
    _rule("pl.suspend", R.suspend, PL, "konto", "skrzynka",
          regex=r" (?:konto|skrzynka) (?:\w+ )?(?:jest |zosta[lł]o |zosta[lł]a )?"
                r"(?:zablokowan|zawieszon|nieaktywn|wy[lł][aą]czon|niedost[eę]pn)"),
    _rule("ru.suspend", R.suspend, RUL, "заблокирован", "отключен", "приостановлен",
          "неактивн"),
    _rule("cjk.suspend", R.suspend, f"{JA}; {ZH}", "利用停止", "停止されて", "無効になって",
          "無効です", "冻结", "凍結", "停用", "已禁用", "被禁用"),
    # --- Given up after retrying (before network: the last error is often a connection) ------
    _rule("mta.systemerror.license", R.systemerror, MTA, "license expired", "licence expired"),
    _rule("exim.expired", R.expired, EXIM, "retry timeout exceeded", "failing for a long time"),
    _rule("sendmail.expired", R.expired, SENDMAIL, "could not be delivered for"),
    _rule("qmail.expired", R.expired, QMAIL, "in the queue too long"),
    _rule("mta.expired", R.expired, MTA, "expired", "too long in queue", "delivery attempts",
          "retry", "retries", "queue period", "not collected",
          "delayed", "delay", "unable to deliver", "attempts", "not been collected",
          "will continue",
          "time limit", "maximum time",
          regex=r" expired| too long in queue| (?:exceeded|maximum|max|after) (?:\w+ )?"
                r"(?:delivery )?(?:attempts|retries)| (?:retry|retries|retrying) (?:\w+ )?"
                r"(?:timeout|time|period|limit|exhausted|exceeded|failed)| queue period"
                r"| not (?:been )?collected"
                r"| delayed | delay reason| has been delayed| delivery (?:is |has been )?delayed"
                r"| unable to deliver (?:to \w+ )?for | (?:time|retry) limit"
                r"| (?:ran|run) out of time| will continue trying| still trying"),
    # --- DNS trouble that may pass: a timeout or a server failure, not a missing domain -------
    _rule("mta.networkerror.dns", R.networkerror, MTA, "try again", "name server", "nameserver",
          "lookup failure", "servfail", "server failure", "dns",
          regex=r" host not found try again| malformed (?:or unexpected )?name server reply"
                r"| (?:host )?name lookup failure| name server timeout| servfail"
                r"| dns (?:server )?failure| dns (?:lookup )?timeout| temporary dns"
                r"| dns (?:temporary|error temporary)| server failure| dns query timed out"),
    # --- Domain unknown (after sender refusals: "sender domain not found" is `rejected`) ------
    _rule("ms.hostunknown", R.hostunknown, MS, "domainnonexistent", "dns domain"),
    _rule("mta.hostunknown", R.hostunknown, MTA, "domain", "host", "unrouteable", "unroutable",
          "mail exchanger", "no mx", "nxdomain", "name service error", "unable to route",
          "introuvable", "name or service not known", "gateway", "unknown host",
          "invalid host", "domaine",
          regex=r" domain (?:name )?not found| host (?:or domain name )?not found"
                r"| (?:domain|host) (?:\S+ )?does not exist| no such domain"
                r"| couldn t find any host| no route found to domain| unrout(?:e)?able"
                r"| nxdomain| name service error| unable to route| couldn t find a mail exchanger"
                r"| no mx (?:or a )?records?| domaine (?:inconnu|introuvable)| domain (?:is )?"
                r"unknown| unknown domain| domain name (?:could not be )?resolved"
                r"| name or service not known| could not find a gateway| unknown host"
                r"| host unknown| invalid host ?name| no such host| non existent domain"),
    _rule("cjk.hostunknown", R.hostunknown, f"{JA}; {ZH}", "域名不存在", "ドメインが存在しません",
          "ドメインが見つかりません", "域名无效", "網域不存在"),
    # --- Mailbox unknown: vendor wordings, then the general family, then languages ------------
    _rule("yahoo.userunknown", R.userunknown, YAHOO, "doesn t have a", "does not have a",
          regex=r" (?:doesn t|does not) have an? (?:\w+ ){0,4}account"),
    _rule("ms.userunknown", R.userunknown, MS, "recipientnotfound"),
    _rule("exchange.userunknown", R.userunknown, EXCH, "recipnotfound",
          "recipient name is not recognized", "recipient cannot be verified"),
    _rule("ironport.userunknown", R.userunknown, IRON, "address rejected",
          raw=r"#5\.1\.0 address rejected"),
    _rule("mimecast.userunknown", R.userunknown, MIME, "invalid recipient"),
    _rule("domino.userunknown", R.userunknown, DOMINO, "not listed in", "not unique",
          "several matches found", "no matches to nameserver query",
          regex=r" not listed in (?:the )?(?:domino directory|public name address book)"
                r"| not unique| several matches found| no matches to nameserver query"),
    _rule("qmail.userunknown", R.userunknown, QMAIL, "no mailbox here", "by that name",
          "can t find user s mailbox", "badrcptto", "no valid recipients"),
    _rule("mta.userunknown", R.userunknown, MTA, "unknown", "no such", "not found",
          "does not exist", "doesn t exist", "may not exist", "not exist", "no exist",
          "no longer exists", "invalid", "not a known user", "not known", "user not", "nonexistent",
          "non existent", "no mailbox", "no mail box", "mail box not found",
          "bad destination mailbox", "bad recipient", "bad address", "not a valid",
          "no longer valid", "not our customer", "unallocated", "wasn t found", "was not found",
          "no account", "illegal alias", "illegal user", "lookup in domain map failed",
          "not an active address", "did not exactly match", "did not match", "not in recipient",
          "address error", "wrong recipient", "all recipients", "invalid final delivery",
          "no longer on", "not listed", "unknown recipient", "addressee unknown",
          "recipients are invalid", "not ok",
          regex=r" user unknown| unknown user| no such (?:user|recipient|mailbox|address|account)"
                r"| (?:user|mailbox|mail box|recipient|address|account|addressee|email address)"
                r" (?:\S+ ){0,4}(?:was |is )?(?:not found|unknown|not known)"
                r"| does(?: not|n t) exist| may not exist| not exist| no exist| no longer exists?"
                r"| mailbox (?:\w+ ){0,3}not found| unknown (?:local part|recipient(?! s)|address"
                r"|mailbox|user|or illegal)| invalid (?:mailbox|recipient|address|user|final)"
                r"| (?:address|recipient|user) (?:is )?(?:marked as )?invalid"
                r"| address (?:is )?unknown| not (?:a )?known user| user not known"
                r"| non ?existent (?:user|recipient|mailbox|address|account)| nonexistent"
                r"| no (?:mailbox|mail box|account)(?: \w+){0,3} (?:here|found|available|by)"
                r"| bad destination mailbox| bad[ _]recipient| bad address| not a valid"
                r"| no longer valid| not our customer| unallocated| wasn t found"
                r"| user (?:\S+ ){0,3}was not found| illegal (?:alias|user)"
                r"| lookup in domain map failed| not an active address| did not (?:exactly )?"
                r"match| not in recipient list| unknown address error| wrong recipients?"
                r"| all recipients are invalid| recipients are invalid| no longer on"
                r"| user (?:not a member of domain|(?:\S+ ){0,4}not ok)| addressee unknown"
                r"| (?:user|recipient) path no exist"),
    _rule("fr.userunknown", R.userunknown, FR, "inconnu", "invalide", "n existe pas",
          "n existe plus",
          regex=r" (?:utilisateur|destinataire|adresse|boite|boîte|compte)\b.{0,30}(?:inconnue?"
                r"|invalide)| n existe (?:pas|plus)"),
    _rule("de.userunknown", R.userunknown, GMX, "unbekannt", "existiert nicht",
          "nicht vorhanden", "ungültig", "ungueltig"),
    _rule("es.userunknown", R.userunknown, ES, "desconocid", "no existe", "inexistente",
          "no válid", "no valid", "inválid", "invalid", "no se encontr",
          regex=r" (?:usuario|destinatario|direcci[oó]n|cuenta|buz[oó]n)\b.{0,30}(?:desconocid"
                r"|inexistente|no existe|no v[aá]lid|inv[aá]lid)| no existe"
                r"| no se encontr[oó] (?:el )?(?:usuario|destinatario)"),
    _rule("it.userunknown", R.userunknown, IT, "sconosciut", "inesistente", "non esiste",
          "non valido", "non trovato",
          regex=r" (?:utente|destinatario|indirizzo|casella)\b.{0,30}(?:sconosciut|inesistente"
                r"|non esiste|non valido|non trovat)| non esiste"),
    _rule("pt.userunknown", R.userunknown, PT, "desconhecid", "inexistente", "não existe",
          "inválid", "nao existe", "não encontrad",
          regex=r" (?:usu[aá]rio|utilizador|destinat[aá]rio|endere[çc]o|conta|caixa)\b.{0,30}"
                r"(?:desconhecid|inexistente|n[aã]o existe|inv[aá]lid|n[aã]o encontrad)"
                r"| n[aã]o existe"),
    _rule("nl.userunknown", R.userunknown, NL, "onbekend", "bestaat niet", "ongeldig",
          "niet gevonden",
          regex=r" onbekende? (?:gebruiker|ontvanger|adres)| (?:gebruiker|ontvanger|adres)"
                r" (?:is )?onbekend| bestaat niet| ongeldig (?:e ?mail)?adres"
                r"| (?:gebruiker|ontvanger|adres|mailbox) niet gevonden"),
    _rule("pl.userunknown", R.userunknown, PL, "nie istnieje", "nieznany", "nieznana",
          "nieprawidłowy adres", "nieprawidlowy adres", "nie znaleziono"),
    _rule("ru.userunknown", R.userunknown, RUL, "не найден", "не существует", "нет такого",
          "несуществующ", "неизвестн", "такого ящика"),
    _rule("cjk.userunknown", R.userunknown, f"{JA}; {ZH}", "存在しません", "存在しない",
          "宛先不明", "見つかりません", "不存在", "无此用户", "無此用戶", "查无此人",
          "无效的收件人",
          "無效的收件人"),
    # --- Network, system and protocol failures ------------------------------------------------
    _rule("ms.networkerror", R.networkerror, MS, "did not accept our requests to connect"),
    _rule("exchange.networkerror", R.networkerror, EXCH, "socketerror", "socket error",
          "connection dropped"),
    _rule("sendmail.networkerror", R.networkerror, SENDMAIL, "reply read error from",
          "connection refused by"),
    _rule("mta.networkerror", R.networkerror, MTA, "connect", "connection", "timed out", "timeout",
          "no route to host", "unreachable", "read error",
          "lost connection", "connection dropped", "is broken", "dns", "conversation",
          "refused connection", "refused the connection", "refused our connection",
          regex=r" connection (?:\w+ ){0,2}(?:timed out|refused|reset|dropped|lost|closed|broken"
                r"|is broken)| timed out| (?:failed|unable|could not|can t) (?:to )?connect"
                r"| could not initiate smtp conversation| connect to | no route to host"
                r"| refused (?:the |our )?connections?"
                r"| unreachable| read error| lost connection"
                r"| establish an smtp connection| dns (?:error|failure|lookup|temporary|server"
                r" failure)| timeout| is broken"),
    # A mail loop is a configuration fault, not a "not now": it stays `networkerror` under Failed.
    _rule("mta.networkerror.loop", R.networkerror, MTA, "loop", "looping", "hop count", "hops",
          "points back", "loops back",
          regex=r" loop| hop count| too many hops| loops back| points back"),
    _rule("mimecast.systemerror", R.systemerror, MIME, "internal resource"),
    _rule("mta.systemerror", R.systemerror, MTA, "local error", "temporary local problem",
          "configuration problem", "system problem", "internal error", "server error",
          "system error", "misconfigur", "config error", "configuration error",
          "resources temporarily unavailable", "busy", "input output error", "i o error",
          "unable to switch to", "can not open", "cannot open", "errno", "replicated",
          "temporary domain failure", "unable to process", "temporarily rejected",
          "temporary system", "database",
          regex=r" local error| temporary local problem| configuration (?:problem|error)"
                r"| system (?:problem|error)| internal (?:server )?error| server error"
                r"| misconfigur| config error| resources temporarily unavailable"
                r"| (?:server|system) busy| busy try again| input output error| i o error"
                r"| unable to switch to| can ?not open| errno| failed to be replicated"
                r"| temporary domain failure| unable to process| temporarily rejected"
                r"| temporary system| database returned"
                r"| cannot authenticate due to temporary"),
    # "Service unavailable" is a system error only when the reply is temporary: with a 5xx
    # code it is a server's catch-all refusal (left to the code, usually undefined).
    _rule("mta.systemerror.unavailable", R.systemerror, MTA, "unavailable", "not available",
          regex=r" (?:server|service|system|resource) (?:was |is )?(?:currently |temporarily )?"
                r"(?:unavailable|not available)",
          codes=("421", "450", "451", "452", "454")),
    _rule("exchange.contenterror", R.contenterror, EXCH, "storedrv deliver", "cat invalidcontent",
          "conversionfailed"),
    _rule("mta.contenterror", R.contenterror, MTA, "conversion", "corrupt", "invalidcontent",
          "invalid content", "charset", "media", "attachment type", "unsupported", "mime",
          "invalid data", "invalid structure", "invalid characters", "invalid header",
          "content reject", "mail data refused", "field", "header is too long",
          regex=r" conversion ?failed| conversion (?:required|not supported)| corrupt"
                r"| invalid ?content| invalid ?charset| media (?:type )?not supported"
                r"| attachment type| unsupported (?:content|media|attachment)| mime (?:error"
                r"|reject)| invalid (?:data|structure|characters|header)| content reject"
                r"| mail data refused| without \w+ fields?| no [\w ]{1,20} field given"
                r"| header is too long"),
    _rule("acs.quarantined", R.quarantined, ACS, "quarantin"),
    # --- Generic policy (last of the specific ones: many texts above mention a policy) ------
    _rule("apple.policyviolation", R.policyviolation, APPLE, "cs", "hm",
          raw=r"\[(?:cs0[12]|hm0[78])\]"),
    _rule("proofpoint.policyviolation", R.policyviolation, PFPT, "local policy violation"),
    _rule("mta.policyviolation", R.policyviolation, MTA, "polic", "administrative prohibition",
          "not authorized", "prohibited", "banned content", "attachments are not allowed",
          "mismatched", "mailpolicy"),
    _rule("mta.syntaxerror", R.syntaxerror, MTA, "syntax", "command unrecognized",
          "command not recognized", "unrecognized command", "bad sequence", "need mail command",
          "need rcpt command", "invalid command", "protocol violation", "may not be repeated"),
    # --- Vague wordings: each yields to an address or mailbox code (weak) ---------------------
    # RFC 5321's own text for 550, used by Exchange and many others for a missing mailbox.
    _rule("mta.userunknown.unavailable", R.userunknown, MTA, "mailbox unavailable",
          "mailbox not available", "mailbox is unavailable", "recipient rejected",
          "recipient address rejected", "unavailable",
          regex=r" mailbox (?:is )?(?:unavailable|not available)| recipient (?:address )?"
                r"rejected (?:\w+ )?$| recipient rejected",
          weak=True),
    _rule("mta.blocked.denied", R.blocked, MTA, "access denied", "blocked", "block", "denied",
          regex=r" access denied| blocked | block | denied ", weak=True),
    # A retry-later with nothing more specific: `undefined`, but `expired` once ACS reports
    # Failed (ACS gives up only after its own retries; see classifier).
    _rule("mta.transient", R.undefined, MTA, "try again", "try later", "temporary failure",
          "temporarily deferred", "come back later", "please retry", "retry later",
          "temporarily", "deferred",
          regex=r" (?:please )?try (?:again )?later| try again| temporary failure| deferred"
                r"| come back later| please retry| retry later| temporarily",
          weak=True),
)
# fmt: on

# The prefilter. Testing ~900 needles one by one costs more than the rest of a classification:
# an Aho-Corasick automaton (pyahocorasick, in C) finds every needle that occurs in the prose in
# one pass over it, and only their rules are tried, in RULES order: the same result as trying
# each rule in turn (tests/test_classification.py holds it to that on the corpora).


@cache
def _automaton() -> Any:
    """Every needle, mapped to the indexes of the rules that have it. Built on first use, not
    at import (cold starts pay for imports)."""
    import ahocorasick

    rules_of: dict[str, list[int]] = {}
    for i, rule in enumerate(RULES):
        for needle in rule.needles:
            rules_of.setdefault(needle, []).append(i)
    automaton = ahocorasick.Automaton()
    for needle, rules in rules_of.items():
        automaton.add_word(needle, tuple(rules))
    automaton.make_automaton()
    return automaton


def first_match(prose: str, raw: str, codes: tuple[str | None, str | None]) -> PhraseRule | None:
    """The first rule in RULES order that matches: the same result as trying each in turn."""
    candidates: set[int] = {i for _, rules in _automaton().iter(prose) for i in rules}
    for i in sorted(candidates):
        if RULES[i].confirms(prose, raw, codes):
            return RULES[i]
    return None
