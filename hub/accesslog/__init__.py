"""The access log: every request's entry, and reading and proving the log.

* :mod:`hub.accesslog.recording`: the audit scope of a request and appending its entry,
  in the same work item as the action it records;
* :mod:`hub.accesslog.reading`: the use-cases of ``/v1/audit`` (tree heads, proofs,
  entries, exports);
* :mod:`hub.accesslog.heads`: signing tree heads of the log on a schedule.

Its routes are in :mod:`hub.http.accesslog`; checkpoints and witnesses in
:mod:`hub.checkpoints`.
"""
