"""The classifier's non-English wordings: full sentences in ten languages for the common reasons."""

from __future__ import annotations

import pytest

from shared.core.classification import BounceType, Reason, classify

R = Reason

# Full sentences the way localised servers word them (no codes in most, so the text decides).
# Every reason is there for es, it, pt, nl, pl, ru, ja and zh; fr and de have their own rows.
LANGUAGE_CASES: list[tuple[str, Reason]] = [
    # Spanish
    ("550 El usuario no existe en este servidor.", R.userunknown),
    ("Usuario desconocido: la dirección de correo no es válida", R.userunknown),
    ("552 El buzón del destinatario está lleno, inténtelo más tarde.", R.mailboxfull),
    ("La cuenta de correo ha sido desactivada por el administrador.", R.suspend),
    ("Mensaje rechazado: considerado correo no deseado.", R.spamdetected),
    # Italian
    ("550 Utente sconosciuto: l'indirizzo non esiste.", R.userunknown),
    ("452 La casella di posta del destinatario è piena.", R.mailboxfull),
    ("550 L'account è stato disattivato.", R.suspend),
    ("554 Messaggio rifiutato: posta indesiderata.", R.spamdetected),
    # Portuguese
    ("550 Usuário desconhecido neste servidor.", R.userunknown),
    ("550 O endereço de e-mail não existe.", R.userunknown),
    ("552 A caixa postal do destinatário está cheia.", R.mailboxfull),
    ("550 A conta foi desativada.", R.suspend),
    ("554 Mensagem recusada: lixo eletrônico detectado.", R.spamdetected),
    # Dutch
    ("550 Onbekende gebruiker: dit adres bestaat niet.", R.userunknown),
    ("452 De mailbox is vol, probeer het later opnieuw.", R.mailboxfull),
    ("550 Dit account is geblokkeerd.", R.suspend),
    ("554 Bericht geweigerd: ongewenste e-mail.", R.spamdetected),
    # Polish
    ("550 Użytkownik nie istnieje.", R.userunknown),
    ("552 Skrzynka odbiorcy jest pełna.", R.mailboxfull),
    ("550 Konto zostało zablokowane.", R.suspend),
    ("554 Wiadomość odrzucona: niechciana poczta.", R.spamdetected),
    # Russian
    ("550 Пользователь не найден.", R.userunknown),
    ("550 Такого почтового ящика не существует.", R.userunknown),
    ("552 Почтовый ящик получателя переполнен.", R.mailboxfull),
    ("550 Аккаунт заблокирован.", R.suspend),
    ("554 Сообщение отклонено как спам.", R.spamdetected),
    # Japanese
    ("550 宛先のユーザーは存在しません。", R.userunknown),
    ("552 受信者のメールボックスがいっぱいです。", R.mailboxfull),
    ("550 このアカウントは利用停止されています。", R.suspend),
    ("554 迷惑メールと判定されたため拒否しました。", R.spamdetected),
    # Chinese
    ("550 收件人用户不存在。", R.userunknown),
    ("552 收件人邮箱已满，请稍后再试。", R.mailboxfull),
    ("550 该帐号已被冻结。", R.suspend),
    ("554 邮件被识别为垃圾邮件，已被拒收。", R.spamdetected),
    ("550 域名不存在", R.hostunknown),
    # French and German (their rows predate this file)
    ("550 Adresse de destination inconnue.", R.userunknown),
    ("552 La boîte du destinataire est pleine.", R.mailboxfull),
    ("550 Ce compte est désactivé.", R.suspend),
    ("550 Empfänger unbekannt.", R.userunknown),
    ("552 Das Postfach des Empfängers ist voll.", R.mailboxfull),
    ("550 Das Konto ist gesperrt.", R.suspend),
    # Mailing lists and groups refusing a sender who is not a member, in several languages.
    ("550 You are not a member of this list and may not post.", R.rejected),
    ("550 Sie haben keine Berechtigung, Nachrichten an diese Gruppe zu senden.", R.rejected),
    ("550 Vous n'avez pas l'autorisation de publier dans ce groupe.", R.rejected),
    ("550 No tienes permiso para publicar en este grupo.", R.rejected),
    ("550 Non hai l'autorizzazione a pubblicare in questo gruppo.", R.rejected),
    ("550 Você não tem permissão para postar neste grupo.", R.rejected),
    ("550 Je hebt geen toestemming om berichten in deze groep te plaatsen.", R.rejected),
    ("550 このグループに投稿する権限がありません。", R.rejected),
    ("550 您没有权限向此群组发帖。", R.rejected),
]


@pytest.mark.parametrize(("text", "reason"), LANGUAGE_CASES, ids=[t for t, _ in LANGUAGE_CASES])
def test_localised_wording(text: str, reason: Reason) -> None:
    result = classify("Bounced", text)
    assert result.reason is reason, result.rule
    assert result.rule is not None
    assert not result.rule.startswith(("smtp:", "enhanced:"))


def test_localised_hard_bounces_suppress() -> None:
    result = classify("Bounced", "550 Пользователь не найден.")
    assert (result.bounce_type, result.suppress) == (BounceType.hard, True)


@pytest.mark.parametrize(
    "text",
    [
        "Die Nachricht konnte nicht zugestellt werden.",  # "could not be delivered": no reason
        "El mensaje no pudo ser entregado.",
        "メッセージを配信できませんでした。",
    ],
)
def test_localised_text_without_a_reason_stays_undefined(text: str) -> None:
    assert classify("Bounced", text).reason is Reason.undefined
