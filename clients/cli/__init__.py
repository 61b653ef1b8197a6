"""The command line of the client side: ``schakel org``, ``schakel audit``, ``schakel authority``.

::

    common.py     settings, options, output, error handling and the session, shared
    person.py     identifying details, read so that they stay out of shell history
    org.py        schakel org: the group, keys and set-up, local status
    messages.py   schakel org: signals, the inbox and the outbox
    cases.py      schakel org: referrals, statuses and the coordinator's case work
    audit.py      schakel audit: the privacy officer and the hub's access log
    authority.py  schakel authority: the network authority, offline

The commands only read options, call :class:`clients.organisation.Organisation` (or the
key stores) and print; the work is in the library. Errors are one line on stderr
(``error: ...``) and an exit code:

    0  done
    1  refused or failed (a bad payload, a hub's refusal, a missing step)
    2  usage (a missing or contradictory option)
    3  the hub can not be reached
    4  something the hub served, or a stored message, did not verify
    5  the hub's access log does not match what this client saw before, or an entry
       does not match a signed tree head
    6  a file given to 'schakel audit verify --export' is not an access-log export
    7  the hub's inbox went backwards (a restored backup?): 'schakel org inbox --resync'
       once the hub's operator confirms a restore
"""
