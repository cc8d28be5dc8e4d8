"""RQ's cron configuration: `python manage.py rqcron console.cron` (started by `make run`'s runall and
docker-compose's `cron` service). Every minute it queues:

- the check for due source syncs, on `ingest` (each source's own schedule is a cron expression on the
  Source, checked by that job);
- the sweep (console/sweeping.py), on `answer`, so a question whose job died is re-queued within about
  a minute and never waits behind a long sync.

Run one `rqcron` process per deployment: two would queue each job twice (harmless, as both jobs are
idempotent, but wasteful).
"""

from rq import cron

from console.knowledge.jobs import sync_due_sources
from console.sweeping import sweep

# ttl: a job still waiting after two minutes (a long job holds the workers) is dropped, not piled up.
cron.register(sync_due_sources, "ingest", cron="* * * * *", job_timeout=300, ttl=120, result_ttl=600)
cron.register(sweep, "answer", cron="* * * * *", job_timeout=120, ttl=120, result_ttl=600)
