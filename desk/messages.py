"""Every sentence the pages show for an error or a notice, by a short code.

Handlers and checks return codes; the templates look the code up here and translate
the sentence (``desk/locale``). No sentence is built by concatenation.
"""

from __future__ import annotations

from desk.i18n import N_

LOGIN_ERRORS = {
    "credentials": N_("The user name or the password is not right."),
    "wait": N_("Too many failed attempts. Wait a minute and try again."),
    "locked": N_(
        "Too many failed attempts: logging in is blocked for a while. "
        "Try again later, or ask your desk administrator."
    ),
    "code": N_("This code is not right, or it was used before. Enter the newest code."),
    "key": N_("The security key could not be checked. Try again, or use a code."),
    "purpose": N_("Choose what you are working on."),
    "purpose-text": N_("The explanation is at most 200 characters, without special characters."),
}

LIBRARY_ERRORS = {
    "unreachable": N_(
        "The hub cannot be reached right now. Nothing was sent; try again in a moment."
    ),
    "refused": N_("The hub refused this. Nothing was changed."),
    "verification": N_(
        "This message did not pass the security checks, so it is not shown. "
        "Tell your administrator."
    ),
    "not-found": N_("This message is not here."),
    "erased": N_(
        "This message was erased here: the retention period of its case has ended. "
        "It can no longer be read, by anyone."
    ),
    "not-ready": N_("The desk is not ready: the organisation's keys are not complete."),
    "log": N_(
        "The hub's access log is not consistent with the one seen before. "
        "Nothing is shown or sent; tell your privacy officer."
    ),
    "invalid": N_("Something in this form does not fit; check the fields and try again."),
}

ANSWER_ERRORS = {
    "code": N_("Choose what you want to do with this referral."),
    "explanation": N_("Explain your answer, in at most 4000 characters."),
    "reason": N_("Choose why you decline."),
    "date": N_("Enter the date care started, such as 22-11-2026."),
    "date-early": N_("Care cannot have started before the referral was sent."),
    "date-future": N_("This date lies in the future."),
    "invisible": N_("This contains invisible or control characters; remove them."),
}

NOTICES = {
    "sent": N_("Your signal has been sent."),
    "queued": N_(
        "The hub cannot be reached right now. Your signal is kept in the queue below and "
        "is sent by itself as soon as the hub is back."
    ),
    "answered": N_("Your answer has been sent."),
    "answer-queued": N_(
        "The hub cannot be reached right now. Your answer is kept in the queue below and "
        "is sent by itself as soon as the hub is back."
    ),
    "outbox-sent": N_("Everything in the queue has been sent."),
    "outbox-waiting": N_("Not everything could be sent yet; the queue below says why."),
    "outbox-dropped": N_("The refused message has been removed from the queue."),
    "no-link": N_("Confirm that you want to send a signal without any identifier: tick the box."),
    "case-referred": N_("The referral has been sent. It is listed under Referrals."),
    "case-referred-waiting": N_(
        "The referral waits in the outbox: the hub can not take it now. It is sent later."
    ),
    "case-label": N_("The label has been saved. Only your desk keeps it; the hub never sees it."),
    "case-splitsen": N_("The signals have been moved to a new case, kept apart from this one."),
    "case-samenvoegen": N_("The cases have been merged."),
    "case-ontkoppelen": N_("The merge has been undone: the case is on its own again."),
}

CASE_ERRORS = {
    "choose": N_("Choose one of the options."),
    "label-long": N_("A label has at most 80 characters."),
    "invisible": N_("This contains invisible or control characters; remove them."),
    "case-none": N_("Choose at least one signal to move to a new case."),
    "case-too-many": N_("A split moves at most 198 messages."),
    "case-ref": N_("A case reference is 16 letters and digits, as shown on the cases page."),
    "case-self": N_("Choose another case than this one."),
    "case-refused": N_(
        "The hub refused this: the case may have changed meanwhile. Nothing was changed."
    ),
    "required": N_("Fill this in."),
    "too-long": N_("This text is too long."),
    "refer-consent": N_(
        "A referral shares the person's details: it needs the person's consent to share them."
    ),
    "refer-refused": N_(
        "The hub refused this referral: the case or the declined referral may have changed "
        "meanwhile. Nothing was sent."
    ),
}

ADMIN_ERRORS = {
    "person": N_("A user name is 1 to 64 letters, digits or signs, without spaces."),
    "exists": N_("There is already a person with this user name."),
    "name": N_("Enter the person's name."),
    "roles": N_("Choose at least one role."),
    "too-short": N_("A password has at least 12 characters."),
    "too-long": N_("This password is too long."),
    "self": N_("You cannot disable your own account."),
    "unknown": N_("This person is not known at this desk."),
}

PASSWORD_ERRORS = {
    "too-short": N_("A password has at least 12 characters."),
    "too-long": N_("This password is too long."),
    "same": N_("Choose a password of your own, not the one you were given."),
    "mismatch": N_("The two passwords are not the same."),
}

ADMIN_NOTICES = {
    "added": N_(
        "The person has been added. At first login they choose their own password and set "
        "up their second factor."
    ),
    "disabled": N_("The account has been disabled; its sessions have ended."),
    "enabled": N_("The account has been enabled again."),
    "reset-2fa": N_("The second factor has been reset; the person sets up a new one at login."),
    "password": N_(
        "A new first password has been set and the person's sessions have ended. "
        "They choose a password of their own at their next login."
    ),
}

FORM_ERRORS = {
    "too-long": N_("This is too long."),
    "invisible": N_("This contains invisible or control characters; remove them."),
    "bsn": N_("This BSN is not valid: it must be 9 digits and pass the eleven-test."),
    "date": N_("Enter a date such as 14-03-1999."),
    "date-future": N_("This date lies in the future."),
    "phone": N_("Enter a phone number such as 06 12345678 or +31 6 12345678."),
    "document_number": N_("A document number is 5 to 20 letters and digits."),
    "document_pair": N_("Give both the document number and the country that issued it."),
    "country": N_("Choose a country from the list."),
    "age": N_("Enter an age in years, from 0 to 120."),
    "choose": N_("Choose one of the options."),
    "exploitation": N_("Choose the form of exploitation, or 'Not known yet'."),
    "urgency": N_("Choose how urgent this is."),
    "indicators": N_("Choose indicators from the list only."),
    "email": N_("Enter an email address such as name@example.nl."),
    "name_pair": N_("A given name needs a family name, and the other way round."),
    "recipients": N_("Choose who receives this signal."),
    "consent": N_("Say whether the person agreed to sharing this signal."),
    "subject-none": N_(
        "Enter at least a BSN, a name with a date of birth, a phone number or a document."
    ),
}

AUDIT_ERRORS = {
    "threshold": N_("Enter a whole number from 1 to 100000."),
    "period": N_("The end of the period lies before its start."),
    "purpose": N_("Choose the purpose 'Answering a person's request about their data' first."),
    "user-required": N_("Enter the user name of the person whose accesses you want to see."),
    "org": N_("Enter an organisation's name as the network knows it, such as police-utrecht."),
}

# Why an entry of the outbox has not gone out (desk.adapter.outbox_reason).
OUTBOX_REASONS = {
    "queued": N_("Not tried yet."),
    "unreachable": N_("The hub could not be reached."),
    "busy": N_("The hub could not take it just now (busy or a fault)."),
    "behind": N_("Waits for an earlier message in the queue."),
    "refused": N_("Refused by the hub or the recipient: it will not be sent again."),
}

# name in the templates -> table
TABLES = {
    "errors": LOGIN_ERRORS,
    "library_errors": LIBRARY_ERRORS,
    "answer_errors": ANSWER_ERRORS,
    "notices": NOTICES,
    "admin_errors": ADMIN_ERRORS,
    "admin_notices": ADMIN_NOTICES,
    "messages": FORM_ERRORS,
    "outbox_reasons": OUTBOX_REASONS,
    "password_errors": PASSWORD_ERRORS,
    "case_errors": CASE_ERRORS,
    "audit_errors": AUDIT_ERRORS,
}
