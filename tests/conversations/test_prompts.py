"""One rule for the system prompt, and one rendering of a pair for serving, training and evaluation."""

import pytest

from console.conversations import answering
from console.conversations.models import Answer
from console.conversations.prompts import system_prompt
from console.knowledge.search import SearchResult
from console.training import runs
from console.training.models import TrainingPair, TrainingRun
from console.training.pairs import add_correction
from ml import training
from ml.prompting import DEFAULT_SYSTEM_PROMPT, context_items

pytestmark = pytest.mark.django_db

QUESTION = "How fast must P1 tickets be answered?"
CHUNKS = [
    SearchResult(
        chunk_id=1,
        document_id=10,
        document="Support handbook",
        source="support.md",
        document_version=3,
        heading="Priorities",
        text="P1 tickets are answered within 30 minutes, day or night.",
        score=0.9,
        similarity=0.8,
    ),
    SearchResult(
        chunk_id=2,
        document_id=11,
        document="On-call",
        source="oncall.md",
        document_version=1,
        heading="",
        text="The on-call engineer acknowledges a page within 5 minutes.",
        score=0.5,
        similarity=0.6,
    ),
]


def test_persona_then_setting_then_default(settings):
    settings.SYSTEM_PROMPT = ""
    assert system_prompt() == DEFAULT_SYSTEM_PROMPT
    settings.SYSTEM_PROMPT = "You are Tidewell's ops bot."
    assert system_prompt() == "You are Tidewell's ops bot."
    assert system_prompt("Answer like a pirate.") == "Answer like a pirate."


def test_a_pair_is_rendered_alike_for_serving_training_and_evaluation(settings):
    settings.SYSTEM_PROMPT = "You are Tidewell's ops bot. Cite documents as [n]."
    served = answering.messages_for(QUESTION, CHUNKS, [], answering.ChannelConfig())
    answer = Answer.objects.create(
        platform="slack",
        question=QUESTION,
        text="Within 30 minutes [1].",
        mode="rag",
        context=context_items(answering.context_of(CHUNKS)),  # as answering records it
    )
    pair = add_correction(answer, "Within 30 minutes, day or night [1].", platform="slack", voter="U1")
    TrainingPair.objects.filter(pk=pair.pk).update(status="approved")  # a curator approved it
    run = TrainingRun.objects.create(name="r1", pair_ids=[pair.pk], system_prompt=system_prompt())

    [example] = runs.training_examples(run)
    trained = training.example_messages(example, example.context)
    evaluated = runs.heldout_messages(QUESTION, CHUNKS, runs.system_prompt_of(run))

    assert served[0] == {"role": "system", "content": settings.SYSTEM_PROMPT}
    assert "P1 tickets are answered within 30 minutes" in served[-1]["content"]
    assert trained == served
    assert evaluated == served


def test_a_run_trains_and_is_evaluated_with_the_prompt_it_recorded(settings):
    settings.TRAIN_MIN_PAIRS = 3
    settings.SYSTEM_PROMPT = "Be brief."
    for n in range(5):
        TrainingPair.objects.create(question=f"q{n}", answer=f"a{n}", source="manual", status="approved")
    run = runs.start_run(enqueue=False)
    settings.SYSTEM_PROMPT = "Be long-winded."  # changed after the run was queued
    heldout = TrainingPair.objects.get(pk=run.heldout_ids[0])

    assert TrainingRun.objects.get(pk=run.pk).system_prompt == "Be brief."
    assert {example.system for example in runs.training_examples(run)} == {"Be brief."}
    assert (
        runs.heldout_messages(heldout.question, CHUNKS, runs.system_prompt_of(run))[0]["content"]
        == "Be brief."
    )


def test_a_run_from_before_prompts_were_recorded_uses_the_rule(settings):
    settings.SYSTEM_PROMPT = ""
    old = TrainingRun.objects.create(name="old", hyperparameters={"epochs": 1})
    assert runs.system_prompt_of(old) == DEFAULT_SYSTEM_PROMPT
    assert training.TrainingConfig(**old.hyperparameters).epochs == 1
