"""The scheduler: a process of its own that runs jobs on cron schedules (``riffle scheduler``).

```
job kinds (reports, …) ──jobs()──▶ Scheduler step: for each job, the newest fire time since
                                    its cursor ─▶ Redis MULTI: cursor + queued run + record
                                         │
                          worker threads ▼ kind.run(run) ─▶ succeeded | retrying (backoff) | failed
                                          Redis: the run's record (status, times, error, details)
```

* **One active scheduler**: a Redis lease (:mod:`sinks.redis.lease`, the notifier's
  too), renewed every step; a second scheduler waits and takes over when the first
  stops renewing. Every write is guarded by the lease.
* **Cron on the tenant's wall clock**, DST as cronie does it (:mod:`operators.schedule`).
* **Missed schedules run once**: after downtime across several fire times, the
  newest one runs once and the run records how many it stood for (``missed``).
  A job seen for the first time starts from now.
* **Retries with backoff**: a failed attempt is retried after ``backoff * 2^(n-1)``
  (capped at an hour) up to ``max_attempts`` (the job's own, when its
  :class:`~operators.schedule.Job` gives them); a run interrupted by a crash is
  picked up by the next scheduler as a failed attempt.
* **Every run recorded**: :class:`~sinks.redis.schedule.Run` (status, attempts,
  times, error, the kind's details), listable per job.

A job kind is a :class:`~dataflows.scheduler.kinds.JobKind` registered in
:mod:`riffle.jobs`.
"""

from riffle.dataflows.scheduler.kinds import JobKind
from riffle.dataflows.scheduler.service import Scheduler, SchedulerError

__all__ = ["JobKind", "Scheduler", "SchedulerError"]
