"""The desk: each organisation's web application for its people, in Dutch.

One desk per organisation, run by that organisation next to its keys (``schakel desk
serve``); the browser only displays server-rendered pages. Modules:

* ``adapter``     the one door to the client library (``clients``): the desk's single
                  ``Organisation``, acting for one person at a time;
* ``app``         the aiohttp application and ``serve``; ``web`` its plumbing (services,
                  rendering, security headers, sessions and CSRF middlewares);
* ``login``       password, second factor (``factors``: Argon2id, TOTP; ``webauthn``),
                  purpose, language, logout; ``sessions`` the server-side sessions;
* ``inbox``       the inbox, a message, answering a referral, the live stream (``live``);
* ``signals``     a new signal: form (``signalform``, pure), check page, sending;
* ``pages``       sent messages, the organisation's status, the administrator's page;
* ``accounts``    the desk's own database (people, second factors, reads, account log);
* ``i18n``, ``vocabulary``, ``messages``, ``catalog``: languages, the field's words,
                  every sentence by code, and the catalogue tool;
* ``config``, ``errors``, ``cli``, ``demo``.
"""
