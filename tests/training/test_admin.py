import pytest
from django.db import IntegrityError
from django.urls import reverse

from console.training.models import TrainingRun

pytestmark = pytest.mark.django_db


def _serve(admin_client, *runs):
    return admin_client.post(
        reverse("admin:training_trainingrun_changelist"),
        {"action": "make_live", "_selected_action": [r.pk for r in runs]},
        follow=True,
    )


def test_make_live_promotes_and_rolls_back(admin_client, tmp_path):
    old = TrainingRun.objects.create(name="v1", status="succeeded", adapter_path=str(tmp_path), active=True)
    new = TrainingRun.objects.create(name="v2", status="succeeded", adapter_path=str(tmp_path))
    _serve(admin_client, new)
    assert list(TrainingRun.objects.filter(active=True)) == [new]
    _serve(admin_client, old)
    assert list(TrainingRun.objects.filter(active=True)) == [old]


def test_a_failed_run_cannot_be_served(admin_client):
    failed = TrainingRun.objects.create(name="broken", status="failed")
    response = _serve(admin_client, failed)
    assert "has no finished adapter" in response.content.decode()
    assert not TrainingRun.objects.filter(active=True).exists()


def test_the_database_allows_only_one_active_adapter():
    TrainingRun.objects.create(name="a", active=True)
    with pytest.raises(IntegrityError):
        TrainingRun.objects.create(name="b", active=True)


def test_train_now_queues_a_run_or_says_why_not(admin_client, settings, django_capture_on_commit_callbacks):
    import django_rq

    from console.training.models import TrainingPair

    settings.TRAIN_MIN_PAIRS = 3
    url = reverse("admin:training_trainingrun_train")
    refused = admin_client.post(url, follow=True).content.decode()
    assert "at least 3 are needed" in refused
    for i in range(4):
        TrainingPair.objects.create(question=f"q{i}", answer=f"a{i}", source="manual", status="approved")
    queue = django_rq.get_queue("train")
    queue.empty()
    with django_capture_on_commit_callbacks(execute=True):
        page = admin_client.post(url, follow=True).content.decode()
    run = TrainingRun.objects.get()
    assert f"Queued {run.name}" in page and run.status == "queued"
    assert queue.count == 1 and queue.jobs[0].args == (run.pk,)
    queue.empty()


def test_evaluation_page_shows_answers_side_by_side(admin_client):
    run = TrainingRun.objects.create(
        name="v3",
        status="succeeded",
        metrics={
            "promoted": False,
            "reasons": ["similarity 0.40 vs 0.50 for the live adapter: worse"],
            "base": {"similarity": 0.3, "rouge_l": 0.1, "groundedness": 0.5, "length": 20},
        },
        evaluation=[
            {
                "question": "What is SEV1?",
                "reference": "A full outage.",
                "base": "BASE-ANSWER",
                "live": "LIVE-ANSWER",
                "candidate": "CANDIDATE-ANSWER",
            }
        ],
    )
    page = admin_client.get(reverse("admin:training_trainingrun_evaluation", args=[run.pk])).content.decode()
    assert "refused" in page and "worse" in page
    assert all(text in page for text in ("BASE-ANSWER", "LIVE-ANSWER", "CANDIDATE-ANSWER", "A full outage."))
    listing = admin_client.get(reverse("admin:training_trainingrun_changelist")).content.decode()
    assert "refused: see evaluation" in listing


def test_a_runs_pages_show_the_system_prompt_it_trained_with(admin_client):
    run = TrainingRun.objects.create(name="v4", status="succeeded", system_prompt="You are HARBOR-BOT.")
    old = TrainingRun.objects.create(name="v0", status="succeeded")
    evaluation = reverse("admin:training_trainingrun_evaluation", args=[run.pk])
    change = reverse("admin:training_trainingrun_change", args=[run.pk])
    assert "You are HARBOR-BOT." in admin_client.get(evaluation).content.decode()
    assert "You are HARBOR-BOT." in admin_client.get(change).content.decode()
    page = admin_client.get(reverse("admin:training_trainingrun_evaluation", args=[old.pk])).content.decode()
    assert "Not recorded" in page


def test_evaluation_page_shows_rag_live_and_candidate_with_facts_voice_and_the_training_contexts(
    admin_client,
):
    scores = {"similarity": 0.5, "rouge_l": 0.2, "groundedness": 0.6, "length": 30, "key_facts": 0.25}
    run = TrainingRun.objects.create(
        name="v5",
        status="succeeded",
        pair_ids=[1, 2],
        heldout_ids=[3],
        metrics={
            "promoted": False,
            "retrieval": "live",
            "live_adapter": "v4",
            "reasons": [
                "facts 0.300 vs 0.500 for the base model with retrieval: worse by 0.200, more than the margin"
            ],
            "base": {**scores, "facts": 0.5, "voice": 0.125},
            "live": {**scores, "facts": 0.45, "voice": 0.875},
            "candidate": {**scores, "facts": 0.3, "voice": 0.975},
        },
        evaluation=[
            {
                "question": "What is SEV1?",
                "reference": "A full outage.",
                "context": [
                    {"number": 1, "title": "Severities", "heading": "", "text": "SEV1 is a full outage."}
                ],
                "base": "RAG-ANSWER",
                "live": "LIVE-ANSWER",
                "candidate": "CANDIDATE-ANSWER",
                "scores": {
                    "base": {"facts": 0.61, "voice": 0.25},
                    "candidate": {"facts": 0.33, "voice": 0.75},
                },
            }
        ],
        examples=[
            {
                "pair_id": 1,
                "question": "Who pages?",
                "answer": "PagerDuty.",
                "context": [{"number": 1, "title": "On-call", "heading": "", "text": "PagerDuty pages."}],
                "context_from": "retrieval",
                "heldout": False,
            },
            {
                "pair_id": 3,
                "question": "What is SEV1?",
                "answer": "A full outage.",
                "context": [],
                "context_from": "pair",
                "heldout": True,
            },
        ],
    )
    page = admin_client.get(reverse("admin:training_trainingrun_evaluation", args=[run.pk])).content.decode()
    for column in (
        "Base model + retrieval (rag)",
        "Live adapter + retrieval (v4)",
        "Candidate + retrieval (both)",
    ):
        assert column in page
    assert "0.975" in page and "0.125" in page  # voice per system
    assert "facts 0.61 · voice 0.25" in page and "facts 0.33 · voice 0.75" in page  # per answer
    assert "SEV1 is a full outage." in page  # what retrieval gave the held-out question
    assert "retrieved for the question" in page and "PagerDuty pages." in page  # a training context
    assert "1 pair(s) were rejected or went stale" in page
