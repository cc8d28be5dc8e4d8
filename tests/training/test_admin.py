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
