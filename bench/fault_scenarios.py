"""The scenarios of bench/faults.py: each starts a fault against the running stack (bench/stack.py),
asks questions as Slack would (bench/slack_events.py) and records what happened; the bad inputs
(bench/bad_inputs.py) are sent and judged here too. Needs Django set up (bench.environment).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import socket
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import bad_inputs
from bench.answer_log import Key, Outcome, leaked, outcomes, percentile, tally, verdict
from bench.report import ROOT, progress
from bench.slack_events import DEADLINE, RETRY_DELAYS, Delivery, Slack
from bench.stack import DATA_DIR, Stack

OPS, DEV, GUEST, VAULT = "C0OPS", "C0DEV", "C0GUEST", "C0VAULT"  # GUEST is shared with another company
CHANNELS = (OPS, DEV, GUEST, VAULT)
VAULT_CODE, LOUNGE_WIFI = "KESTREL-7731", "HERON-2290"
# Secret → the channels that may read it: the vault's collection is scoped to its channel, the
# lounge's to the workspace, which a channel shared outside it (Slack Connect) may not read.
CANARIES = {VAULT_CODE: frozenset({VAULT}), LOUNGE_WIFI: frozenset({OPS, DEV, VAULT})}
CANARY_DOCUMENTS = {  # collection slug → (file, text, allowed scopes)
    "vault": (
        "vault.md",
        f"# Vault\n\nThe vault door code is {VAULT_CODE}. Never share it.\n",
        [f"slack:{VAULT}"],
    ),
    "lounge": (
        "lounge.md",
        f"# Staff lounge\n\nThe staff lounge wifi password is {LOUNGE_WIFI}.\n",
        ["slack:T0TEST"],
    ),
}
CANARY_QUESTIONS = ("What is the vault door code?", "What is the staff lounge wifi password?")


# --- one scenario's record --------------------------------------------------------------------------


@dataclass
class Scenario:
    key: str
    fault: str
    summary: str = ""  # what happened, in a phrase, for the table
    happened: list[str] = field(default_factory=list)  # and in sentences, for the details
    deliveries: list[Delivery] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    bad: list[bad_inputs.BadInput] = field(default_factory=list)
    server_errors: int = 0
    error: str = ""  # the bench itself failed here
    problems: list[str] = field(default_factory=list)  # targets missed, found by the scenario itself

    def say(self, sentence: str) -> None:
        self.happened.append(sentence)
        progress(f"{self.key}: {sentence}")

    @property
    def keys(self) -> list[Key]:
        return [(d.channel, d.ts) for d in self.deliveries]


@dataclass
class Seeded:
    admin_user: str
    admin_password: str
    api_key: str
    uploads_collection: int


# --- the run ----------------------------------------------------------------------------------------


class FaultBench:
    """The scenarios, run one after another against one stack."""

    def __init__(
        self, args: argparse.Namespace, fake: Any, stack: Stack, slack: Slack, seeded: Seeded
    ) -> None:
        from bots.slack.blocks import THINKING

        self.args, self.fake, self.stack, self.slack, self.seeded = args, fake, stack, slack, seeded
        self.thinking = THINKING
        self.pool = ThreadPoolExecutor(max_workers=args.mentions + 16, thread_name_prefix="slack")
        self.futures: dict[str, Future] = {}
        self.scenarios: list[Scenario] = []
        self.doing = "starting"
        self.asked = 0
        self.kill_after = 3.0  # seconds into a job that are mid-generation; set by the warm-up
        stack.note = lambda: self.doing
        questions = [json.loads(line)["question"] for line in (ROOT / "bench" / "questions.jsonl").open()]
        self.questions = questions

    # --- asking -------------------------------------------------------------------------------------

    def question(self, n: int) -> tuple[str, str]:
        """The n-th question and its channel: demo questions, every fourth asking for a secret."""
        channel = CHANNELS[n % len(CHANNELS)]
        if n % 4 == 3:
            return channel, CANARY_QUESTIONS[(n // 4) % len(CANARY_QUESTIONS)]
        return channel, self.questions[n % len(self.questions)]

    def ask(self, scenario: Scenario, *, channel: str | None = None, text: str | None = None) -> Delivery:
        """Mention the bot (the next question, unless given); delivered in the background with retries."""
        default_channel, default_text = self.question(self.asked)
        self.asked += 1
        channel = channel or default_channel
        delivery = self.slack.mention(channel, text or default_text, shared=channel == GUEST)
        scenario.deliveries.append(delivery)
        self.futures[delivery.event_id] = self.pool.submit(self.slack.deliver, delivery)
        return delivery

    def calls(self) -> list:
        return list(self.fake.calls)  # a copy: the fake's threads append meanwhile

    def states(self, deliveries: Sequence[Delivery]) -> dict[Key, Outcome]:
        return outcomes(self.calls(), [(d.channel, d.ts) for d in deliveries], thinking=self.thinking)

    def settled(self, deliveries: Sequence[Delivery]) -> bool:
        """Slack is done delivering each and each got an answer (or was told why not)."""
        if not all(self.futures[d.event_id].done() for d in deliveries):
            return False
        return all(o.state != "lost" for o in self.states(deliveries).values())

    def wait_settled(self, deliveries: Sequence[Delivery], timeout: float) -> float | None:
        """Seconds until settled, or None after `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.settled(deliveries):
                return time.monotonic() - started
            time.sleep(0.25)
        return None

    def answered_at(self, delivery: Delivery) -> float | None:
        """When (time.monotonic) the question's answer reached Slack."""
        placeholders = {
            (c.response or {}).get("ts")
            for c in self.calls()
            if c.method == "chat.postMessage"
            and c.args.get("channel") == delivery.channel
            and c.args.get("thread_ts") == delivery.ts
        }
        times = [
            c.at
            for c in self.calls()
            if c.method == "chat.update" and c.args.get("blocks") and c.args.get("ts") in placeholders
        ]
        return min(times) if times else None

    def question_row(self, delivery: Delivery) -> Any:
        from django.db import connections

        from console.conversations.models import Question

        connections.close_all()  # PostgreSQL may have restarted since
        return Question.objects.filter(platform="slack", event_id=delivery.event_id).first()

    def wait_for_status(self, delivery: Delivery, status: str, timeout: float = 180.0) -> bool:
        from console.conversations.models import Question

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            found = Question.objects.filter(platform="slack", event_id=delivery.event_id).values_list(
                "status", flat=True
            )
            if status in found:
                return True
            time.sleep(0.05)
        return False

    def crashed(self, error: Exception) -> None:
        """The bench itself failed in a scenario: said in its row, and the next scenario runs."""
        import traceback

        traceback.print_exc()
        scenario = self.scenarios[-1]
        scenario.error = f"{type(error).__name__}: {error}"
        scenario.say(f"the bench failed here: {scenario.error}")
        scenario.summary = scenario.summary or "the bench failed"

    def begin(self, key: str, fault: str) -> Scenario:
        scenario = Scenario(key, fault)
        self.scenarios.append(scenario)
        self.doing = key
        progress(f"--- {key}: {fault}")
        return scenario

    # --- scenarios ----------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """One question alone: the stack answers at all, and how long a job takes to reach generation."""
        from console.conversations.models import Answer

        scenario = self.begin("warm-up", "one question, nothing failing")
        delivery = self.ask(scenario, channel=OPS, text=self.questions[0])
        took = self.wait_settled([delivery], timeout=600)
        if took is None:
            raise RuntimeError(
                f"the warm-up question was not answered in 600 s; see {self.stack.data_dir}/logs"
            )
        timings = Answer.objects.latest("pk").timings
        total, generate = timings.get("total", 0) / 1000, timings.get("generate", 0) / 1000
        self.kill_after = max(0.5, total - generate / 2)  # the middle of generation
        scenario.metrics.update(seconds=took, answer_timings_ms=timings, kill_after_s=self.kill_after)
        scenario.say(
            f"answered in {took:.1f} s (answer() {total:.1f} s, of which generating {generate:.1f} s); "
            f"kills below come {self.kill_after:.1f} s into a job, mid-generation"
        )
        scenario.summary = f"answered in {took:.0f} s"

    def load(self) -> None:
        n = self.args.mentions
        scenario = self.begin("load", f"{n} concurrent mentions")
        started = time.monotonic()
        deliveries = [self.ask(scenario) for _ in range(n)]
        took = self.wait_settled(deliveries, timeout=300 + 90 * n / self.args.answer_workers)
        firsts = [d.attempts[0] for d in deliveries if d.attempts]
        acks = [a.seconds for a in firsts if a.status == 200]
        answered = [t for d in deliveries if (t := self.answered_at(d)) is not None]
        minutes = (max(answered) - started) / 60 if answered else float("nan")
        scenario.metrics.update(
            ack_p50_s=percentile(acks, 50),
            ack_p99_s=percentile(acks, 99),
            ack_max_s=max(acks, default=float("nan")),
            first_attempts_acked=sum(a.acked for a in firsts),
            retried=sum(len(d.attempts) > 1 for d in deliveries),
            answers_per_minute=len(answered) / minutes if answered else 0.0,
            seconds=took,
        )
        m = scenario.metrics
        scenario.say(
            f"acks p50 {m['ack_p50_s'] * 1000:.0f} ms, p99 {m['ack_p99_s'] * 1000:.0f} ms (target < 1 s), "
            f"{m['first_attempts_acked']}/{n} acked at the first attempt; {len(answered)} answered in "
            f"{minutes:.1f} min = {m['answers_per_minute']:.1f} answers/min"
            + ("" if took is not None else "; NOT SETTLED in time")
        )
        scenario.summary = (
            f"acks p50 {m['ack_p50_s'] * 1000:.0f} ms, p99 {m['ack_p99_s'] * 1000:.0f} ms; "
            f"{m['answers_per_minute']:.1f} answers/min"
        )
        if not m["ack_p99_s"] < 1.0:
            scenario.problems.append(f"ack p99 {m['ack_p99_s']:.2f} s (target < 1 s)")

    def kill_answer(self, whole_worker: bool) -> None:
        what = (
            "the whole answer worker (kill -9 of its process group), restarted"
            if whole_worker
            else ("the answer work-horse (kill -9), its worker lives on")
        )
        scenario = self.begin("answer-worker" if whole_worker else "answer-horse", f"{what}, mid-generation")
        delivery = self.ask(scenario, channel=DEV, text=self.questions[1])
        if not self.wait_for_status(delivery, "answering"):
            scenario.say("the question never started answering")
            scenario.problems.append("the question never started answering")
            return
        time.sleep(self.kill_after)
        if self.answered_at(delivery) is not None:
            scenario.say("the answer came before the kill (the job was faster than the warm-up)")
        victim = next(
            (
                name
                for name in self.stack.processes
                if name.startswith("answer-") and self.stack.children(name)
            ),
            "answer-1",
        )
        killed_at = time.monotonic()
        if whole_worker:
            self.stack.kill(victim)
            self.stack.start(victim)
            scenario.say(
                f"killed {victim} and its work-horse {self.kill_after:.1f} s into the job; restarted it"
            )
        else:
            pids = self.stack.kill_children(victim)
            scenario.say(
                f"killed the work-horse of {victim} (pid {pids}) {self.kill_after:.1f} s into the job"
            )
        self.wait_settled([delivery], timeout=self.args.sweep_after + 60 + 90 + 240)
        row = self.question_row(delivery)
        answered = self.answered_at(delivery)
        scenario.metrics.update(
            answered_after_kill_s=(answered - killed_at) if answered else None,
            attempts=row.attempts if row else None,
            status=row.status if row else None,
        )
        if answered:
            scenario.say(
                f"answered {answered - killed_at:.0f} s after the kill (attempts: {row.attempts if row else '?'})"
            )
        else:
            scenario.say(f"not answered in time; question status {row.status if row else '?'}")
        scenario.summary = (
            f"answered {answered - killed_at:.0f} s after the kill, attempt {row.attempts if row else '?'}"
            if answered
            else "not answered"
        )

    def kill_web(self) -> None:
        scenario = self.begin("web", "kill -9 of the web process right after an ack, restarted")
        first = self.ask(scenario, channel=OPS)
        self.futures[first.event_id].result()
        self.stack.kill("web")
        killed_at = time.monotonic()
        scenario.say(f"first mention acked ({first.attempts[-1].status}); web process group killed at once")
        more = [self.ask(scenario) for _ in range(2)]
        time.sleep(2)
        self.stack.start("web")
        booted = self.stack.wait_for_web()
        scenario.say(
            f"web restarted, answering {time.monotonic() - killed_at:.1f} s after the kill; 2 more mentions sent while it was down"
        )
        took = self.wait_settled(scenario.deliveries, timeout=RETRY_DELAYS[1] + 600)
        scenario.metrics.update(
            web_boot_s=booted, settled_s=took, attempts=[len(d.attempts) for d in scenario.deliveries]
        )
        scenario.say(
            f"mentions sent while it was down were acked at attempt {[len(d.attempts) for d in more]} "
            f"(Slack's retries: {', '.join(f'{d:g} s' for d in RETRY_DELAYS)})"
            + ("" if took is not None else "; NOT SETTLED in time")
        )
        scenario.summary = (
            f"back in {booted + 2:.0f} s; the acked question answered by the worker, the 2 sent meanwhile "
            f"acked at Slack's attempt {', '.join(str(len(d.attempts)) for d in more)}"
        )

    def outage(self, server: str) -> None:
        from django.db import connections

        from console import embedded

        seconds = self.args.outage
        name = {"postgres": "PostgreSQL", "redis": "Redis"}[server]
        scenario = self.begin(server, f"{name} stopped for {seconds} s")
        before = [self.ask(scenario) for _ in range(2)]
        self.wait_for_status(before[0], "answering", timeout=120)
        time.sleep(self.kill_after)
        exits_before = len(self.stack.exits)
        connections.close_all()
        (embedded.stop_postgres if server == "postgres" else embedded.stop_redis)(DATA_DIR)
        stopped_at = time.monotonic()
        scenario.say(f"{name} stopped while {len(before)} questions were being answered or waiting")
        during: list[Delivery] = []
        try:
            for _ in range(3):
                during.append(self.ask(scenario))
                time.sleep(seconds / 3)
        finally:
            (embedded.postgres_url if server == "postgres" else embedded.redis_url)(DATA_DIR)
        back_at = time.monotonic()
        connections.close_all()
        scenario.say(
            f"{name} started again after {back_at - stopped_at:.0f} s; 3 mentions were sent during the outage"
        )
        took = self.wait_settled(
            scenario.deliveries, timeout=RETRY_DELAYS[1] + self.args.sweep_after + 60 + 90 + 300
        )
        firsts = [d.attempts[0] for d in during]
        exits = self.stack.exits[exits_before:]
        answered = [t for d in scenario.deliveries if (t := self.answered_at(d)) is not None]
        last = max(answered) - back_at if answered else None
        scenario.metrics.update(
            outage_s=back_at - stopped_at,
            during_first_attempts=[asdict(a) for a in firsts],
            during_attempts=[len(d.attempts) for d in during],
            process_exits=[asdict(e) for e in exits],
            settled_s=took,
            last_answer_after_restart_s=last,
        )
        worst = max((a.seconds for a in firsts), default=0.0)
        if worst > DEADLINE:
            scenario.problems.append(f"an acknowledgement took {worst:.1f} s (Slack waits {DEADLINE:g} s)")
        statuses = Counter(str(a.status) for a in firsts)
        scenario.say(
            f"during the outage the first attempts got {dict(statuses)} within {worst:.2f} s (deadline {DEADLINE:g} s); "
            f"acked at attempt {[len(d.attempts) for d in during]}; the last answer came "
            + (f"{last:.0f} s after {name} was back" if last is not None else "never")
            + (
                f"; processes that exited and were restarted: {sorted({e.name for e in exits})}"
                if exits
                else ""
            )
            + ("" if took is not None else "; NOT SETTLED in time")
        )
        scenario.summary = (
            f"acks {', '.join(f'{k} ×{v}' for k, v in statuses.items())} in ≤ {worst:.2f} s; Slack's attempt "
            f"{', '.join(str(len(d.attempts)) for d in during)} taken; all answered "
            + (f"≤ {last:.0f} s after it was back" if last is not None else "NEVER")
            + (f"; {', '.join(sorted({e.name for e in exits}))} exited, restarted" if exits else "")
        )

    def training(self) -> None:
        """A run killed mid-evaluation (the whole `train` worker), found by the sweeper, retried."""
        from console.training import importing, runs
        from console.training.models import TrainingRun

        scenario = self.begin("training", "the training worker killed mid-evaluation, the run retried")
        pairs = DATA_DIR / "seed" / "pairs.jsonl"
        lines = (ROOT / "examples" / "pairs.jsonl").read_text().splitlines()[: self.args.training_pairs]
        pairs.write_text("\n".join(lines) + "\n")
        importing.import_pairs(pairs, approve=True)
        run = runs.start_run(epochs=1)
        started = time.monotonic()
        while TrainingRun.objects.get(pk=run.pk).status != TrainingRun.Status.EVALUATING:
            if time.monotonic() - started > 1800 or TrainingRun.objects.get(pk=run.pk).status in (
                "failed",
                "succeeded",
            ):
                scenario.say(f"the run never reached evaluation: {TrainingRun.objects.get(pk=run.pk).status}")
                scenario.problems.append("the run never reached evaluation")
                return
            time.sleep(0.5)
        trained = time.monotonic() - started
        time.sleep(5)  # into the held-out answers
        self.stack.kill("train")
        self.stack.start("train")
        killed_at = time.monotonic()
        scenario.say(
            f"trained in {trained:.0f} s; killed the train worker 5 s into evaluation and restarted it"
        )
        while TrainingRun.objects.get(pk=run.pk).status != TrainingRun.Status.FAILED:
            if time.monotonic() - killed_at > self.args.sweep_after + 300:
                scenario.say("the dead run was never marked failed")
                scenario.problems.append("the dead run was never marked failed")
                return
            time.sleep(1)
        scenario.say(
            f"the run was found dead and failed {time.monotonic() - killed_at:.0f} s after the kill: "
            f"{TrainingRun.objects.get(pk=run.pk).error}"
        )
        runs.retry_run(TrainingRun.objects.get(pk=run.pk))
        retried = time.monotonic()
        while (status := TrainingRun.objects.get(pk=run.pk).status) not in ("succeeded", "failed"):
            if time.monotonic() - retried > 1800:
                break
            time.sleep(1)
        final = TrainingRun.objects.get(pk=run.pk)
        scenario.metrics.update(
            trained_s=trained, retry_s=time.monotonic() - retried, status=status, error=final.error
        )
        scenario.say(
            f"the retry ended {status} in {time.monotonic() - retried:.0f} s"
            + (f": {final.error}" if final.error else "")
        )
        scenario.summary = f"found dead and failed with a reason; the retry {status}"
        if status != "succeeded":
            scenario.problems.append(f"the retry {status}")

    def bad(self) -> None:
        from console.conversations.models import Question

        scenario = self.begin("bad-inputs", "bad inputs, then a health check")
        log = self.stack.log("web")
        log_mark = log.stat().st_size
        taken = Question.objects.count()
        http = [*bad_inputs.slack_inputs(self.slack.secret), *bad_inputs.v1_inputs(self.seeded.api_key)]
        for item in http:
            status, body = send(self.stack.url, item)
            bad_inputs.judge_http(item, status, body)
        scenario.bad += http
        scenario.bad += self.uploads()
        scenario.bad += self.exports()
        new_questions = Question.objects.count() - taken
        with log.open("rb") as handle:
            handle.seek(log_mark)
            scenario.server_errors = handle.read().count(b"Internal Server Error")
        wrong = [item for item in scenario.bad if not item.ok]
        scenario.say(
            f"{len(scenario.bad)} bad inputs: {len(scenario.bad) - len(wrong)} got their clear error; "
            f"{scenario.server_errors} 5xx logged; {new_questions} questions taken"
        )
        for item in wrong:
            scenario.say(f"  MISHANDLED {item.kind}: {item.name}: expected {item.expect}, got {item.outcome}")
        scenario.metrics.update(new_questions=new_questions, by_kind=_by_kind(scenario.bad))
        health = [
            self.ask(scenario, channel=OPS, text="When does the office open?"),
            self.ask(scenario, channel=DEV, text="How do I get VPN access? " + "Please explain. " * 1500),
        ]
        took = self.wait_settled(health, timeout=600)
        models = _get(f"{self.stack.url}/v1/models", {"Authorization": f"Bearer {self.seeded.api_key}"})
        scenario.say(
            f"health check: a normal and a 24,000-character question {'answered' if took else 'NOT answered'}; "
            f"/v1/models {models}"
        )
        healthy = took is not None and models == "200"
        scenario.summary = (
            f"{len(scenario.bad) - len(wrong)}/{len(scenario.bad)} got their clear error, "
            f"{scenario.server_errors} 5xx; health check {'passed' if healthy else 'FAILED'}"
        )
        if not healthy:
            scenario.problems.append("the health check failed")
        if new_questions:
            scenario.problems.append(f"{new_questions} questions taken from bad inputs")

    def uploads(self) -> list[bad_inputs.BadInput]:
        from django.conf import settings

        from console.knowledge.models import Document

        files = bad_inputs.upload_files(
            max_upload_mb=settings.MAX_UPLOAD_MB,
            max_unpacked_mb=settings.MAX_UNPACKED_MB,
            max_entries=settings.MAX_ARCHIVE_ENTRIES,
        )
        session = admin_session(self.stack.url, self.seeded.admin_user, self.seeded.admin_password)
        url = f"{self.stack.url}/admin/knowledge/document/upload/"
        posted = {}
        for batch in (files[:-1], files[-1:]):  # the oversized file alone
            session.get(url)
            response = session.post(
                url,
                data={
                    "collection": self.seeded.uploads_collection,
                    "csrfmiddlewaretoken": session.cookies["csrftoken"],
                },
                files=[("files", (f.name, f.data)) for f in batch],
                headers={"Referer": url},
                allow_redirects=False,
                timeout=300,
            )
            for f in batch:
                posted[f.name] = response.status_code
        names = [f.name for f in files]
        started = time.monotonic()
        while Document.objects.filter(source__in=names, status__in=["pending", "indexing"]).exists():
            if time.monotonic() - started > 900:
                break
            time.sleep(1)
        documents = {d.source: d for d in Document.objects.filter(source__in=names)}
        for f in files:
            document = documents.get(f.name)
            assert f.input is not None
            if document is None:
                f.input.result(f"no document (upload answered {posted[f.name]})", False)
                continue
            intact = (
                fence_intact(document) if document.status == "indexed" and "injection" in f.name else None
            )
            bad_inputs.judge_document(f, document.status, document.error, intact)
        return [f.input for f in files if f.input is not None]

    def exports(self) -> list[bad_inputs.BadInput]:
        from console.training.models import TrainingPair
        from console.training.resources import FORMATS, PairExportResource, SafeCSV, SafeXLSX

        for n, formula in enumerate(bad_inputs.FORMULAS):
            TrainingPair.objects.create(
                question=f"Bench question {n}: {formula}", answer=formula, source="manual"
            )
        items = bad_inputs.export_inputs()
        session = admin_session(self.stack.url, self.seeded.admin_user, self.seeded.admin_password)
        url = f"{self.stack.url}/admin/training/trainingpair/export/"
        prefix = PairExportResource.__name__.lower()
        for name, format_class, find in (
            ("CSV", SafeCSV, bad_inputs.formula_cells_csv),
            ("XLSX", SafeXLSX, bad_inputs.formula_cells_xlsx),
        ):
            session.get(url)
            data = {"format": str(FORMATS.index(format_class)), "resource": "0"}
            data |= {f"{prefix}_{column}": "on" for column in PairExportResource().get_export_order()}
            data["csrfmiddlewaretoken"] = session.cookies["csrftoken"]
            response = session.post(url, data=data, headers={"Referer": url}, timeout=120)
            exported = response.status_code == 200 and "attachment" in response.headers.get(
                "Content-Disposition", ""
            )
            bad_inputs.judge_cells(items, name, find(response.content) if exported else [], exported)
        return items

    # --- the table ----------------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """One row per scenario, counted from the whole log at the end (so a late second answer counts)."""
        calls = self.calls()
        leaks = retrieval_leaks()
        rows = []
        for scenario in self.scenarios:
            found = outcomes(calls, scenario.keys, thinking=self.thinking, canaries=CANARIES)
            for key in found:
                found[key].leaks += leaks.get(key, 0)
            counts = tally(found.values())
            if counts["stuck"]:
                scenario.happened.append(
                    f'{counts["stuck"]} "Thinking…" placeholder(s) never replaced: '
                    + ", ".join(
                        f"{k[0]} {k[1]}: {v.placeholders} posted" for k, v in found.items() if v.stuck
                    )
                )
            mishandled = sum(not item.ok for item in scenario.bad)
            rows.append(
                {
                    "scenario": scenario.key,
                    "fault": scenario.fault,
                    "summary": scenario.summary,
                    "happened": scenario.happened,
                    "questions": len(found),
                    "answered once": counts["answered"],
                    "lost": counts["lost"],
                    "answered twice": counts["twice"],
                    "told to ask again": counts["told"],
                    "placeholders left": counts["stuck"],
                    "leaks": counts["leaks"],
                    "bad inputs": len(scenario.bad),
                    "bad inputs mishandled": mishandled,
                    "server errors": scenario.server_errors,
                    "verdict": f"BENCH ERROR: {scenario.error}"
                    if scenario.error
                    else verdict(
                        counts,
                        mishandled=mishandled,
                        server_errors=scenario.server_errors,
                        problems=scenario.problems,
                    ),
                    "metrics": scenario.metrics,
                    "deliveries": [
                        {
                            "event_id": d.event_id,
                            "channel": d.channel,
                            "ts": d.ts,
                            "attempts": [asdict(a) for a in d.attempts],
                            "outcome": asdict(found[(d.channel, d.ts)]),
                        }
                        for d in scenario.deliveries
                    ],
                    "bad_inputs": [
                        {"kind": i.kind, "name": i.name, "expect": i.expect, "outcome": i.outcome, "ok": i.ok}
                        for i in scenario.bad
                    ],
                }
            )
        return rows


def retrieval_leaks() -> dict[Key, int]:
    """Answers whose context (what the model read) or text holds a secret their channel may not read."""
    from django.db import connections

    from console.conversations.models import Answer

    connections.close_all()
    found: Counter = Counter()
    for channel, thread, text, context in Answer.objects.filter(platform="slack").values_list(
        "channel", "thread", "text", "context"
    ):
        if leaked(channel, text + json.dumps(context), CANARIES):
            found[(channel, thread)] += 1
    return dict(found)


def fence_intact(document: Any) -> bool:
    """Every chunk of `document`, put in the prompt as retrieval would, leaves exactly one document
    fence and one question line: the injected text stayed data."""

    from console.conversations.prompts import system_prompt
    from ml.prompting import FENCE_CLOSE, FENCE_OPEN, ContextChunk, build_messages

    question_line = re.compile(r"^\W*question\s*:", re.IGNORECASE | re.MULTILINE)
    for chunk in document.chunks.all():
        context = [ContextChunk(title=document.title, text=chunk.text, heading=chunk.heading)]
        prompt = build_messages(system_prompt(), context, [], "When does the office open?")[-1]["content"]
        folded = unicodedata.normalize("NFKC", prompt)
        if folded.count(FENCE_OPEN) != 1 or folded.count(FENCE_CLOSE) != 1:
            return False
        if len(question_line.findall(folded.replace("\r", "\n"))) != 1:
            return False
    return True


def _by_kind(items: Sequence[bad_inputs.BadInput]) -> dict[str, dict[str, int]]:
    kinds: dict[str, dict[str, int]] = {}
    for item in items:
        entry = kinds.setdefault(item.kind, {"inputs": 0, "clear error": 0})
        entry["inputs"] += 1
        entry["clear error"] += item.ok
    return kinds


# --- HTTP helpers -------------------------------------------------------------------------------------


def send(base_url: str, item: bad_inputs.BadInput, timeout: float = 60.0) -> tuple[int | None, bytes]:
    """One raw HTTP/1.1 request, so a server that answers an oversized body early and hangs up is
    still heard: (status or None, body)."""
    host, port = base_url.removeprefix("http://").split(":")
    head = [f"{item.method} {item.path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    if item.method != "GET":
        head.append(f"Content-Length: {len(item.body)}")
    head += [f"{name}: {value}" for name, value in item.headers.items()]
    data = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            for start in range(0, len(item.body), 1 << 20):
                sock.sendall(item.body[start : start + (1 << 20)])
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(1 << 16):
                data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None, b""
    return int(parts[1]), rest.partition(b"\r\n\r\n")[2]


def _get(url: str, headers: dict[str, str]) -> str:
    import requests

    try:
        return str(requests.get(url, headers=headers, timeout=30).status_code)
    except requests.RequestException as error:
        return type(error).__name__


def admin_session(base_url: str, user: str, password: str) -> Any:
    """A requests.Session logged in to the admin, as a browser would (CSRF cookie and token)."""
    import requests

    session = requests.Session()
    login = f"{base_url}/admin/login/"
    session.get(login, timeout=30)
    response = session.post(
        login,
        data={
            "username": user,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": login},
        allow_redirects=False,
        timeout=30,
    )
    if response.status_code != 302:
        raise RuntimeError(f"admin login failed ({response.status_code})")
    return session


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the data ------------------------------------------------------------------------------------


def seed() -> Seeded:
    """Migrate; an admin and an API key; the demo KB, the two secrets' collections and one for uploads;
    the bundled model converted (once per DATA_DIR, kept between runs)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from console.conversations.api_keys import create_api_key
    from console.knowledge import ingestion
    from console.knowledge.models import Collection
    from ml import model_files

    call_command("migrate", verbosity=0)
    password = secrets.token_urlsafe(16)
    get_user_model().objects.create_superuser("bench", "", password)
    _, key = create_api_key("bench-faults")
    seeds = DATA_DIR / "seed"
    seeds.mkdir(exist_ok=True)
    folders: dict[str, tuple[Path, list[str]]] = {"demo": (ROOT / "examples" / "knowledge", [])}
    for slug, (name, text, scopes) in CANARY_DOCUMENTS.items():
        (seeds / name).write_text(text)
        folders[slug] = (seeds / name, scopes)
    for slug, (path, scopes) in folders.items():
        collection = Collection.objects.create(name=slug, slug=slug, allowed_scopes=scopes)
        summary = ingestion.IngestSummary()
        pending = ingestion.register_paths(collection, [path], summary)
        ingestion.index_now(pending, summary, lambda _: None)
        if summary.failed:
            raise RuntimeError(f"seeding {slug} failed: {[d.error for d in summary.failed]}")
    uploads = Collection.objects.create(name="Bench uploads", slug="bench-uploads")
    if not settings.BASE_MODEL:
        model_files.default_base_model_path(DATA_DIR)
    return Seeded("bench", password, key, uploads.pk)
