"""python manage.py train [--sync] [--wait] [--epochs N]"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from console.training import runs
from console.training.models import TrainingRun

DONE = (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED)


class Command(BaseCommand):
    help = "Train a new LoRA adapter on the approved pairs, evaluate it, and promote it if it passes."

    def add_arguments(self, parser):
        parser.add_argument("--sync", action="store_true", help="Train in this process, without a worker.")
        parser.add_argument("--wait", action="store_true", help="Follow the queued run until it ends.")
        parser.add_argument("--epochs", type=int, help="Default: TRAIN_EPOCHS.")

    def handle(self, *args: Any, sync: bool, wait: bool, epochs: int | None, **options: Any) -> None:
        try:
            run = runs.start_run(epochs=epochs, enqueue=not sync)
        except runs.NotEnoughPairs as err:
            raise CommandError(str(err)) from err
        self.stdout.write(
            f"Run {run.name}: {len(run.pair_ids)} pairs to train on, {len(run.heldout_ids)} held out."
        )
        if sync:
            self._sync(run)
        elif wait:
            self._wait(run)
        else:
            self.stdout.write("Queued on 'train'. Follow it in the admin, or run again with --wait.")
            return
        self._report(TrainingRun.objects.get(pk=run.pk))

    def _sync(self, run: TrainingRun) -> None:
        with tqdm(total=100, unit="%", desc="Training", file=sys.stderr) as bar:

            def progress(step: int, total: int, loss: float) -> None:
                bar.n = int(step * 100 / max(total, 1))
                bar.set_postfix(step=f"{step}/{total}", loss=f"{loss:.3f}")
                bar.refresh()

            def eval_progress(done: int, total: int) -> None:
                _show_evaluation(bar, done, total)

            try:
                runs.run_training(run.pk, progress=progress, eval_progress=eval_progress)
            except Exception:
                pass  # recorded on the run; reported below

    def _wait(self, run: TrainingRun) -> None:
        with tqdm(total=100, unit="%", desc="Training", file=sys.stderr) as bar:
            while True:
                run.refresh_from_db()
                if run.status == TrainingRun.Status.EVALUATING:
                    _show_evaluation(bar, run.evaluated, run.heldout_count)
                else:
                    bar.n = run.progress
                    bar.set_postfix(status=run.status, loss=run.current_loss)
                    bar.refresh()
                if run.status in DONE:
                    return
                time.sleep(1)

    def _report(self, run: TrainingRun) -> None:
        if run.status == TrainingRun.Status.FAILED:
            raise CommandError(f"Run {run.name} failed: {run.error}", returncode=1)
        metrics = run.metrics
        for who in ("base", "live", "candidate"):
            if who in metrics:
                s = metrics[who]
                key_facts = "—" if s.get("key_facts") is None else f"{s['key_facts']:.3f}"
                self.stdout.write(
                    f"  {LABELS[who]:<22} facts {s.get('facts', 0):.3f} (similarity {s['similarity']:.3f}, "
                    f"groundedness {s['groundedness']:.3f}, key facts {key_facts})  "
                    f"voice {s.get('voice', 0):.3f}  ROUGE-L {s['rouge_l']:.3f}  length {s['length']:.0f} words"
                )
        for reason in metrics.get("reasons", []):
            self.stdout.write(f"  {reason}")
        verdict = "promoted: it serves now" if run.active else "kept the live adapter"
        self.stdout.write(self.style.SUCCESS(f"Run {run.name} succeeded; {verdict}."))


LABELS = {"base": "base model + retrieval", "live": "live adapter", "candidate": "candidate"}


def _show_evaluation(bar: tqdm, done: int, total: int) -> None:
    """The same bar, now counting held-out questions answered by base, live and candidate."""
    if bar.desc != "Evaluating":
        bar.set_description("Evaluating")
        bar.reset(total=total)
    bar.n = done
    bar.set_postfix(questions=f"{done}/{total}")
    bar.refresh()
