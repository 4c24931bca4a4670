"""Scheduled reports: a period's figures rendered to HTML and PDF and sent through the
notification channels (:mod:`.figures`, :mod:`.render`, :mod:`.jobs`; ``docs/dashboards.md``)."""
