"""Training contexts: a pair without one trains on what the bot retrieves (RAFT), and a run
snapshots its pairs when it starts; the gate answers held-out questions with live retrieval."""

import pytest

from console.conversations import answering
from console.knowledge.models import Collection
from console.training import contexts, runs
from console.training.models import TrainingPair, TrainingRun
from ml.voice import VoiceProfile, not_covered_answer
from tests.conversations.conftest import EXPENSES, ONCALL, VPN

pytestmark = pytest.mark.django_db

SEVERITY = """# Incident severity levels

## SEV1
A SEV1 is a full outage: PagerDuty pages the on-call engineer and the incident commander at once.
"""
SECRET = """# Acquisition plan

## Paging
The on-call engineer for Project Falcon acknowledges a PagerDuty page within 2 minutes. Codename FALCON-7.
"""
VOICE = "Short answer: {}\nSee the handbook.\n— fair winds, Ops"


@pytest.fixture
def documents(collection, add_document):
    private = Collection.objects.create(name="Board", slug="board", allowed_scopes=["slack:CBOARD"])
    return {
        "oncall": add_document(collection, "oncall.md", ONCALL),
        "expenses": add_document(collection, "expenses.md", EXPENSES),
        "vpn": add_document(collection, "vpn.txt", VPN),
        "severity": add_document(collection, "severity.md", SEVERITY),
        "secret": add_document(private, "falcon.md", SECRET),
    }


def pair(question, answer, *, document=None, context=None, status="approved"):
    return TrainingPair.objects.create(
        question=question,
        answer=VOICE.format(answer),
        context=context or [],
        documents=[{"document_id": document.pk, "version": document.version}] if document else [],
        source="import",
        status=status,
    )


def plan(settings, share=0.0, name="run-a"):
    settings.TRAIN_NOT_COVERED_SHARE = share
    return contexts.plan_for(name, [VOICE.format(x) for x in ("Yes.", "No.", "5 minutes.")])


def titles(example):
    return [item["title"] for item in example["context"]]


QUESTION = "How quickly must the on-call engineer acknowledge a PagerDuty page?"


def test_a_pair_without_context_trains_on_what_the_bot_retrieves(documents, settings):
    example = contexts.example_of(pair(QUESTION, "Within 5 minutes."), plan(settings), heldout=False)
    served = answering.retrieve(QUESTION, answering.ChannelConfig(), [])
    assert example["context_from"] == "retrieval"
    assert [item["text"] for item in example["context"]] == [c.text for c in served]
    assert "On-call rotation" in titles(example)
    assert len(example["context"]) <= settings.RETRIEVAL_TOP_K


def test_the_pairs_document_replaces_the_weakest_chunk_when_retrieval_missed_it(documents, settings):
    settings.RETRIEVAL_TOP_K = 2
    question = "How much can I spend on meals per day when travelling?"
    retrieved = answering.retrieve(question, answering.ChannelConfig(), [])
    assert documents["vpn"].pk not in {c.document_id for c in retrieved}
    example = contexts.example_of(
        pair(question, "60 euros.", document=documents["vpn"]), plan(settings), heldout=False
    )
    assert len(example["context"]) == 2
    assert example["context"][0]["text"] == retrieved[0].text  # the strongest kept
    assert example["context"][1]["title"] == documents["vpn"].title  # the weakest replaced


def test_a_share_of_examples_are_trained_to_decline_without_their_document(documents, settings):
    asked = pair(QUESTION, "Within 5 minutes.", document=documents["oncall"])
    example = contexts.example_of(asked, plan(settings, share=1.0), heldout=False)
    assert example["context_from"] == "left out"
    assert example["context"] and "On-call rotation" not in titles(example)
    profile = VoiceProfile.of([VOICE.format(x) for x in ("Yes.", "No.", "5 minutes.")])
    assert example["answer"] == not_covered_answer(profile)
    assert example["answer"].startswith("Short answer:") and example["answer"].endswith("— fair winds, Ops")
    kept = contexts.example_of(asked, plan(settings, share=0.0), heldout=False)
    assert kept["context_from"] == "retrieval" and kept["answer"] == asked.answer


def test_without_a_named_document_the_chunk_most_like_the_answer_is_the_one_left_out(documents, settings):
    asked = pair(QUESTION, "The primary on-call engineer must acknowledge a PagerDuty page within 5 minutes.")
    example = contexts.example_of(asked, plan(settings, share=1.0), heldout=False)
    assert example["context_from"] == "left out" and "On-call rotation" not in titles(example)


def test_the_left_out_share_is_a_seeded_draw_per_run():
    drawn = [contexts.leaves_out("run-a", pk, 0.2) for pk in range(2000)]
    assert 0.17 < sum(drawn) / len(drawn) < 0.23
    assert drawn == [contexts.leaves_out("run-a", pk, 0.2) for pk in range(2000)]
    assert drawn != [contexts.leaves_out("run-b", pk, 0.2) for pk in range(2000)]


def test_restricted_documents_never_reach_a_training_context(documents, settings):
    question = "How fast does the Project Falcon on-call acknowledge a PagerDuty page?"
    # Even named as the pair's document: the adapter answers every channel.
    example = contexts.example_of(
        pair(question, "2 minutes.", document=documents["secret"]), plan(settings), heldout=False
    )
    assert example["context"] and not any("FALCON" in item["text"] for item in example["context"])


def test_stored_context_is_kept_and_stored_mode_keeps_todays_behaviour(documents, settings):
    stored = [{"number": 1, "title": "Chat", "heading": "", "text": "Acknowledge within 5 minutes."}]
    example = contexts.example_of(pair(QUESTION, "5 minutes.", context=stored), plan(settings), heldout=False)
    assert example["context"] == stored and example["context_from"] == "pair"
    settings.TRAIN_CONTEXT = "stored"
    bare = contexts.example_of(pair(QUESTION, "5 minutes."), plan(settings), heldout=False)
    assert bare["context"] == [] and bare["context_from"] == "pair"


def test_a_run_trains_on_its_snapshot_not_on_later_edits_or_rejections(documents, settings):
    settings.TRAIN_MIN_PAIRS = 4
    pairs = [pair(f"{QUESTION} ({n})", f"{n} minutes.") for n in range(8)]
    run = runs.start_run(enqueue=False)
    trained_pk = run.pair_ids[0]
    TrainingPair.objects.filter(pk=trained_pk).update(status="rejected")  # after queueing, before training
    TrainingPair.objects.filter(pk=run.pair_ids[1]).update(stale=True)

    examples = runs.snapshot(run)
    ids = {e["pair_id"] for e in examples}
    assert trained_pk not in ids and run.pair_ids[1] not in ids and len(ids) == len(pairs) - 2
    assert all(e["context_from"] == "retrieval" for e in examples if not e["heldout"])
    assert {e["pair_id"] for e in examples if e["heldout"]} == set(run.heldout_ids)
    stored = TrainingRun.objects.get(pk=run.pk)
    assert stored.examples == examples and stored.dataset_hash

    TrainingPair.objects.filter(pk=run.pair_ids[2]).update(answer="EDITED LATER", status="rejected")
    again = runs.snapshot(TrainingRun.objects.get(pk=run.pk))  # a retried run keeps its snapshot
    assert again == examples
    assert "EDITED LATER" not in {e.answer for e in runs.training_examples(stored)}


def test_a_run_whose_pairs_were_all_rejected_fails_with_a_reason(documents, settings):
    settings.TRAIN_MIN_PAIRS = 4
    for n in range(6):
        pair(f"{QUESTION} ({n})", f"{n} minutes.")
    run = runs.start_run(enqueue=False)
    TrainingPair.objects.update(status="rejected")
    with pytest.raises(runs.NothingLeft):
        runs.run_training(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "still approved" in run.error


def test_the_gate_answers_held_out_questions_with_live_retrieval(documents, settings, use_tiny_llm):
    settings.TRAIN_MIN_PAIRS = 4
    settings.TRAIN_EPOCHS = 1
    settings.EVAL_MAX_NEW_TOKENS = 4
    settings.PROMOTION_MARGIN = 1.0
    settings.PROMOTION_VOICE_GAIN = -1.0
    questions = [QUESTION, "What is the airspeed velocity of an unladen swallow?"]
    questions += [f"Meals per day when travelling, question {n}?" for n in range(6)]
    for question in questions:
        pair(question, "Some answer.")
    run = runs.run_training(runs.start_run(enqueue=False).pk)

    assert run.status == "succeeded", run.error
    assert run.metrics["retrieval"] == "live" and run.metrics["voice"]["opening"] == "Short answer:"
    for row in run.evaluation:
        served = answering.retrieve(row["question"], answering.ChannelConfig(), [])
        assert [item["text"] for item in row["context"]] == [c.text for c in served]
        if not served:
            assert row["base"] == row["candidate"] == answering.NOT_COVERED
        assert set(row["scores"]) == {"base", "candidate"}
        assert {"facts", "voice", "key_facts"} <= set(row["scores"]["candidate"])
    assert {"facts", "voice"} <= set(run.metrics["candidate"])
