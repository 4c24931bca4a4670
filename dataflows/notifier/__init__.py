"""The notifier: a process of its own that reads ``riffle.alerts`` (or, with
``RIFFLE_SOURCE=pubsub``, a Pub/Sub subscription) and delivers notifications.

```
riffle.alerts ──▶ Dispatcher (routes, groups, inhibition, mute intervals, silences, acks)
 (Kafka, from        │ one step: consume ─▶ ingest ─▶ flush due groups
  the dataflow)      ▼
        Redis MULTI: groups + seen + offsets + outbox entries ──▶ delivery threads
                                                                   │ retries with backoff
                                                                   ▼
                                          channel (webhook/Slack/email/Alertmanager)
                                          Redis MULTI: outbox entry out, delivery logged
                                          (or dead letter in {prefix}:alerts:undelivered)
```

Why a separate process and not a Bytewax step: grouping timers are wall-clock and
deliveries are side effects that cannot be replayed; a dataflow resumed from a
snapshot replays input and would re-send what it sent after the snapshot. Here the
input offsets, the groups and the queued notifications are committed together, so:

* a restart resumes from the committed offsets (on Pub/Sub: from what was not
  acknowledged, which happens only after the commit) with the committed groups — no
  transition is read twice into a group, and none is skipped;
* a notification is queued in the outbox in the same transaction that consumed
  its input, so a crash cannot lose it; it leaves the outbox only after a
  receiver accepted it (or it was dead-lettered). A crash between the receiver's
  2xx and that Redis write is the one case of a re-send, with the same dedup key;
* the dataflow delivers transitions at least once (a replay after its own
  restart re-produces them): ``seen`` makes a transition already applied a no-op.

One notifier runs at a time (a Redis lease, renewed every step); a second one
waits, so two replicas give fail-over, not double sends.

It lives beside the dataflow it reads from, one module per part: :mod:`.service` (the
consume, dispatch, commit and deliver loop), :mod:`.feeds` (reading the Kafka topic with
offsets in the state, or the Pub/Sub subscription acknowledged after each commit),
:mod:`.metrics` (``riffle_notify_*``),
:mod:`.legacy` (the deprecated ``RIFFLE_ALERT_WEBHOOK_URL`` receiver) and :mod:`.run`
(channels built from the spec and the environment; ``riffle notify``).
"""
