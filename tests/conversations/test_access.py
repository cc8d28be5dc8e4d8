"""Access holds in answering: a pinned channel never widens to every collection, and a channel shared
outside the workspace reads only channel-scoped collections."""

import pytest

from console.conversations import answering
from console.conversations.models import ChannelSettings
from console.knowledge.models import Collection
from tests.knowledge.conftest import ONCALL_MD

pytestmark = pytest.mark.django_db

QUESTION = "How quickly must the on-call engineer acknowledge a PagerDuty page?"
WORKSPACE_SECRET = "# Pager secrets\n\nThe PagerDuty acknowledge timeout override is 90 seconds."


@pytest.fixture
def handbook(collection, add_document):
    add_document(collection, "oncall.md", ONCALL_MD)
    return collection


def test_a_channel_pinned_to_a_deleted_collection_is_not_covered_instead_of_reading_everything(
    use_tiny_llm, handbook, add_document
):
    pinned = Collection.objects.create(name="Pinned", slug="pinned")
    add_document(pinned, "pager.md", "# Pager\n\nPagerDuty pages must be acknowledged within 2 minutes.")
    row = ChannelSettings.objects.create(platform="slack", channel_id="C7", mode="rag")
    row.collections.set([pinned])
    assert answering.answer(QUESTION, platform="slack", channel="C7").sources[0]["source"] == "pager.md"

    pinned.delete()
    assert answering.channel_config("slack", "C7").collections == ()
    after = answering.answer(QUESTION, platform="slack", channel="C7")
    assert after.text == answering.NOT_COVERED and after.sources == [] and not after.covered


def test_unpinning_by_hand_reads_every_collection_again(use_tiny_llm, handbook):
    other = Collection.objects.create(name="Other", slug="other")
    row = ChannelSettings.objects.create(platform="slack", channel_id="C8")
    row.collections.add(other)
    assert ChannelSettings.objects.get(pk=row.pk).pinned is True
    row.collections.remove(other)  # an admin clears the choice: the channel reads everything again
    assert ChannelSettings.objects.get(pk=row.pk).pinned is False
    assert answering.channel_config("slack", "C8").collections is None
    other.channelsettings_set.add(row)  # the reverse side pins too
    assert ChannelSettings.objects.get(pk=row.pk).pinned is True


def test_scopes_leave_out_the_workspace_in_a_shared_channel():
    assert answering.scopes_for("slack", "C1", "T1") == ["slack:C1", "slack:T1"]
    assert answering.scopes_for("slack", "C1", "T1", shared_channel=True) == ["slack:C1"]


def test_a_workspace_collection_never_answers_in_a_channel_shared_outside_the_workspace(
    use_tiny_llm, handbook, add_document
):
    secret = Collection.objects.create(name="Workspace", slug="workspace", allowed_scopes=["slack:T0OURS"])
    add_document(secret, "pager-secret.md", WORKSPACE_SECRET)
    inside = answering.answer(QUESTION, platform="slack", channel="C0OPS", workspace="T0OURS")
    shared = answering.answer(
        QUESTION, platform="slack", channel="C0CONNECT", workspace="T0OURS", shared_channel=True
    )
    assert "pager-secret.md" in {s["source"] for s in inside.sources}
    assert "pager-secret.md" not in {s["source"] for s in shared.sources}
    assert all(WORKSPACE_SECRET.split("\n")[-1] not in item["text"] for item in shared.context)
