"""Alertmanager-style dispatch of alert transitions: routing, grouping, inhibition, mute and
active time intervals, silences and acknowledgements. Pure: the wall clock is an argument.

```
transition ─▶ routing tree (matchers, continue) ─▶ group (tenant, route, group_by values)
                                                            │ group_wait, then every group_interval
                                                            ▼
                         flush: drop silenced and inhibited alerts; muted (or not
                                 active) route: skip
                                 send when an alert is new or resolved, or repeat_interval passed
                                 (repeats only while some firing alert is not acknowledged)
                                                            ▼
                                          Notification (stable dedup key)
```

Rule states are event time; grouping timers are wall-clock by nature (as in
Alertmanager). A group's state — its alerts, when it flushes next, what it
notified last and how many notifications it made (``seq``) — is plain data
(:meth:`.groups.Group.to_json`), so a notifier can persist it with its input offsets and
its outbox in one step. A notification's ``dedup_key`` is a hash of the group,
``seq`` and the transitions it reports: the same for every re-send of it.

Only the states a person acts on become alerts here: Firing and NoData are
active alerts; Recovering keeps an alert active; Normal or Pending after an
active state resolves it. Pending alone is not notified.

:mod:`.routes` (the routing tree and a route's groups), :mod:`.groups` (a group, its
alerts and the notifications it makes) and :mod:`.dispatcher` (every group of a
deployment: ingest, flush, inhibition, silences, acknowledgements).
"""
