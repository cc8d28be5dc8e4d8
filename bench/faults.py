"""The product's promises measured under faults (issue #12 §5): every question Slack was told we
took is answered exactly once, no channel sees another's documents, and every bad input gets a
clear error, whatever dies or stops meanwhile.

It starts the real processes on a throwaway DATA_DIR (var/bench-faults; bench/stack.py): gunicorn
as docker-compose runs it (or `runserver`), `rqworker answer`, `rqworker ingest`, `rqcron
console.cron` (the sweeper every minute) and, with --training, `rqworker train`, against the
embedded PostgreSQL and Redis, replying through a fake Slack Web API (tests/bots/slack_fake.py).
It plays Slack itself (bench/slack_events.py): signed events, a 3 s deadline and Slack's retries.
Then, one fault at a time: concurrent mentions; kill -9 of an answer work-horse and of a whole
answer worker mid-generation; kill -9 of the web process right after an ack; PostgreSQL and Redis
stopped; the training worker killed mid-evaluation (--training, slow on a CPU); and 200+ bad inputs
(bench/bad_inputs.py) followed by a health check. Answers are counted per question from the fake
Slack's log; leaks are secret codes in replies or in the context the model saw in a channel that
may not read them. Results: a table, docs/reliability.md (its section) and bench/results/faults.json.

    .venv/bin/python -m bench.faults [--mentions 50] [--outage 30] [--training] [--docs docs/reliability.md]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.fault_scenarios import GUEST, FaultBench, free_port, seed
from bench.report import (
    ROOT,
    command,
    machine_info,
    markdown_table,
    progress,
    text_table,
    versions,
    write_section,
)
from bench.slack_events import RETRY_DELAYS, Slack
from bench.stack import DATA_DIR, Stack, commands, fresh_data_dir, product_env

SECTION = "faults"
DOCS = ROOT / "docs" / "reliability.md"
RESULTS = ROOT / "bench" / "results" / "faults.json"
HEADERS = [
    "fault",
    "what happened",
    "questions",
    "answered once",
    "lost",
    "answered twice",
    "leaks",
    "verdict",
]


# --- report -----------------------------------------------------------------------------------------


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["fault"],
            r["summary"],
            str(r["questions"]),
            str(r["answered once"]),
            str(r["lost"]),
            str(r["answered twice"]),
            str(r["leaks"]),
            r["verdict"],
        ]
        for r in rows
    ]


def render_markdown(rows: Sequence[dict[str, Any]], args: argparse.Namespace, info: dict[str, Any]) -> str:
    machine = info["machine"]
    load: dict[str, Any] = next((r["metrics"] for r in rows if r["scenario"] == "load"), {})
    bad = next((r for r in rows if r["scenario"] == "bad-inputs"), None)
    lines = [
        "## Faults: the promises measured",
        "",
        f"`{info['command']}` on {machine['cores']} cores ({machine['cpu']}, {machine['memory']}), "
        f"{info['date']}; web: {args.web}, {args.answer_workers} answer worker(s), answers of at most "
        f"{args.max_new_tokens} new tokens by the bundled SmolLM2-135M, sweeper every minute for questions "
        f"untouched {args.sweep_after} s, Slack's retries after {', '.join(f'{d:g}' for d in RETRY_DELAYS)} s."
        + (
            ""
            if args.mentions >= 50 and args.outage >= 30
            else " **A reduced run** (the issue's sizes: 50 mentions, 30 s outages)."
        ),
        "",
        markdown_table(HEADERS, table_rows(rows)),
        "",
    ]
    lines += ["What happened, step by step:", ""]
    lines += [f"- **{r['fault']}**: " + "; ".join(r["happened"]) + "." for r in rows]
    lines.append("")
    if load:
        lines += [
            f"Load: acknowledgements p50 {load['ack_p50_s'] * 1000:.0f} ms, p99 {load['ack_p99_s'] * 1000:.0f} ms "
            f"(target < 1 s), max {load['ack_max_s'] * 1000:.0f} ms; {load['answers_per_minute']:.1f} answers/min.",
            "",
        ]
    if bad is not None:
        kinds = bad["metrics"].get("by_kind", {})
        lines += [
            "Bad inputs: "
            + ", ".join(f"{k} {v['clear error']}/{v['inputs']}" for k, v in kinds.items())
            + f" got their clear error; {bad['server errors']} 5xx in the web log; "
            f"{bad['metrics'].get('new_questions', 0)} questions taken from them.",
            "",
        ]
    if info["exits"]:
        lines += [
            "Processes that exited on their own (started again, as a restart policy would): "
            + "; ".join(f"{e['name']} (exit {e['code']}, during {e['note']})" for e in info["exits"])
            + ".",
            "",
        ]
    lines.append(f"Every attempt, answer count and bad input: `{RESULTS.relative_to(ROOT)}`.")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[FaultBench], None]] = {
    "load": FaultBench.load,
    "answer-horse": lambda bench: bench.kill_answer(whole_worker=False),
    "answer-worker": lambda bench: bench.kill_answer(whole_worker=True),
    "web": FaultBench.kill_web,
    "postgres": lambda bench: bench.outage("postgres"),
    "redis": lambda bench: bench.outage("redis"),
    "training": FaultBench.training,
    "bad-inputs": FaultBench.bad,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mentions", type=int, default=50, help="concurrent mentions of the load scenario")
    parser.add_argument("--outage", type=int, default=30, help="seconds PostgreSQL and Redis are stopped")
    parser.add_argument(
        "--training", action="store_true", help="also kill a training run mid-evaluation (slow on a CPU)"
    )
    parser.add_argument("--training-pairs", type=int, default=14)
    parser.add_argument("--only", default="", help=f"comma-separated scenarios among {', '.join(SCENARIOS)}")
    parser.add_argument("--web", choices=("gunicorn", "runserver"), default="gunicorn")
    parser.add_argument("--answer-workers", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument(
        "--sweep-after", type=int, default=120, help="SWEEP_AFTER_SECONDS (the product's default)"
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="Markdown file to update; '-' for none")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON file to write; '-' for none")
    return parser.parse_args(argv)


def selected(args: argparse.Namespace) -> list[str]:
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or [
        name for name in SCENARIOS if name != "training" or args.training
    ]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}: choose among {', '.join(SCENARIOS)}")
    return chosen


def main(argv: Sequence[str] | None = None) -> None:
    from bench.environment import setup_django
    from console import embedded
    from tests.bots.slack_fake import FakeSlack

    args = parse_args(argv)
    chosen = selected(args)
    progress(f"fresh DATA_DIR {DATA_DIR}")
    fresh_data_dir()
    fake = FakeSlack()
    fake.shared_channels.add(GUEST)
    secret = secrets.token_hex(16)
    env = product_env(
        args,
        database_url=embedded.postgres_url(DATA_DIR),
        redis_url=embedded.redis_url(DATA_DIR),
        slack_url=fake.url,
        secret=secret,
    )
    os.environ.update(env, LOG_LEVEL="WARNING")
    setup_django()
    progress("migrating, seeding the knowledge base, converting the model")
    seeded = seed()
    port = free_port()
    stack = Stack(
        DATA_DIR,
        env,
        commands(port, web=args.web, answer_workers=args.answer_workers, training="training" in chosen),
        port,
    )
    slack = Slack(f"{stack.url}/slack/events", secret)
    bench = FaultBench(args, fake, stack, slack, seeded)
    info: dict[str, Any] = {
        "command": command("faults", *(argv if argv is not None else sys.argv[1:])),
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d"),
        "versions": versions("PostgreSQL", "pgvector", "Python", "Django"),
        "load_average": os.getloadavg(),
    }
    try:
        progress("starting the processes")
        stack.start_all()
        stack.wait_for_web()
        import django_rq

        for name in stack.processes:
            if name.startswith("answer-"):
                stack.wait_for_worker(name, django_rq.get_connection("answer"), "answer")
        bench.warm_up()
        for name in chosen:
            try:
                SCENARIOS[name](bench)
            except Exception as error:  # reported in the scenario's row; the others still run
                bench.crashed(error)
        rows = bench.rows()
    finally:
        progress("stopping")
        stack.stop_all()
        bench.pool.shutdown(wait=False, cancel_futures=True)
        from django.db import connections

        connections.close_all()
        embedded.stop_postgres(DATA_DIR)
        embedded.stop_redis(DATA_DIR)
        fake.close()
    info["exits"] = [asdict(e) for e in stack.exits]
    info["load_average_end"] = os.getloadavg()
    print(text_table(HEADERS, table_rows(rows)))
    if str(args.results) != "-":
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"docs": str(args.docs), "results": str(args.results)},
                    **info,
                    "rows": rows,
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
        print(f"\nWrote {args.results}")
    if str(args.docs) != "-":
        write_section(args.docs, SECTION, render_markdown(rows, args, info))
        print(f"Wrote {args.docs}")


if __name__ == "__main__":
    main()
