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
