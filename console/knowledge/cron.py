"""RQ's cron configuration: `python manage.py rqcron console.knowledge.cron` (started by `make run`'s
runall, docker-compose's `cron` service). Every minute it queues the check for due source syncs;
each source's own schedule is a cron expression on the Source, checked by that job.

Run one `rqcron` process per deployment: two would queue the check twice (harmless, as
enqueue_sync queues one sync per source at a time, but wasteful).
"""

from rq import cron

from console.knowledge.jobs import sync_due_sources

# ttl: a check still waiting after two minutes (a long sync holds the worker) is dropped, not piled up.
cron.register(sync_due_sources, "ingest", cron="* * * * *", job_timeout=300, ttl=120, result_ttl=600)
