"""The whole loop on a CPU with a tiny real model.

👍 in Slack (through the fake Web API) → candidate pair → a curator approves it in the admin →
`train --sync` → evaluated and promoted → the next Slack answer is given by the new adapter.
"""

import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from bots.slack import blocks as slack_blocks
from console.conversations.models import Answer
from console.training.adapters import forget_active_adapter
from console.training.models import TrainingPair, TrainingRun
from tests.bots.test_slack import answered, fake_slack, handbook, slack, wait_until  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def test_thumbs_up_to_promoted_adapter_answering_the_next_question(slack, fake_slack, admin_client, settings):  # noqa: F811
    settings.TRAIN_MIN_PAIRS = 6
    settings.TRAIN_EPOCHS = 1
    settings.EVAL_MAX_NEW_TOKENS = 6
    settings.PROMOTION_VOICE_GAIN = -1.0
    settings.PROMOTION_MARGIN = (
        1.0  # the tiny random model's scores are noise; the gate's refusals are tested elsewhere
    )

    slack.mention()
    answered(fake_slack)
    first = Answer.objects.get()
    assert first.adapter is None
    for voter in ("U0ALICE", "U0BOB"):
        slack.click(slack_blocks.VOTE_UP, first.pk, user=voter)
    wait_until(lambda: TrainingPair.objects.filter(origin=first, votes=2).exists())
    candidate = TrainingPair.objects.get(origin=first)
    assert candidate.status == "candidate" and candidate.question == first.question

    for i in range(6):
        TrainingPair.objects.create(question=f"Question {i}?", answer=f"Answer {i}.", source="manual")
    admin_client.post(
        reverse("admin:training_trainingpair_changelist"),
        {"action": "approve", "_selected_action": list(TrainingPair.objects.values_list("pk", flat=True))},
    )
    assert TrainingPair.objects.filter(status="approved").count() == 7

    call_command("train", "--sync", stdout=io.StringIO(), stderr=io.StringIO())
    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.active, run.error
    assert candidate.pk in run.pair_ids + run.heldout_ids

    forget_active_adapter()
    slack.mention("And who gets paged after that?")
    answered(fake_slack, 2)
    latest = Answer.objects.latest("created_at")
    assert latest.adapter == run and latest.mode == "both"
