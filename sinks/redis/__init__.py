"""Redis: the hot, recent windows and every store that lives in Redis.

:mod:`.windows` (partial and final windows of each series, the query cache's
stamps), :mod:`.live` (each tenant's stream of changed windows and alert
transitions), :mod:`.alerts` (each alert instance's newest transition), :mod:`.rules`
(alert rules made through the API, versioned), :mod:`.silences`, :mod:`.acks`,
:mod:`.notify_state` (the notifier's groups, offsets and outbox, one
transaction), :mod:`.undelivered` (notifications no channel could deliver)
and :mod:`.api_keys`. Each module defines its key layout once; every key
starts with the configured prefix.
"""
