import io
import json

import pytest
from django.core.management import call_command

from console.conversations import answering
from console.conversations.models import Answer, ChannelSettings
from console.conversations.prompts import system_prompt
from console.knowledge.models import Collection
from console.training.adapters import forget_active_adapter, promote
from console.training.models import TrainingRun
from ml.prompting import build_messages, context_chunks
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD

pytestmark = pytest.mark.django_db

QUESTION = "How quickly must the on-call engineer acknowledge a PagerDuty page?"
OFF_TOPIC = "What is the capital of Australia?"


@pytest.fixture
def handbook(collection, add_document):
    add_document(collection, "oncall.md", ONCALL_MD)
    add_document(collection, "expenses.md", EXPENSES_MD)
    return collection


@pytest.fixture
def live_adapter(tiny_adapter):
    run = TrainingRun.objects.create(name="voice-1", status="succeeded", adapter_path=str(tiny_adapter))
    promote(run)
    forget_active_adapter()
    return run


def test_rag_answer_is_recorded_with_sources_chunks_tokens_and_timings(use_tiny_llm, handbook):
    answer = answering.answer(QUESTION, platform="slack", channel="C1", user="U1", thread="1.0")
    stored = Answer.objects.get(pk=answer.pk)
    assert stored.mode == "rag" and stored.covered and stored.adapter is None
    assert stored.text
    assert stored.retrieved and all(
        {"chunk_id", "document_version", "score"} <= set(r) for r in stored.retrieved
    )
    assert stored.context[0]["number"] == 1 and "PagerDuty" in stored.context[0]["text"]
    assert stored.sources[0]["source"] == "oncall.md"
    assert stored.prompt_tokens > 0 and 0 < stored.completion_tokens <= 9
    assert {"embed", "search", "prompt", "generate", "total"} <= set(stored.timings)
    assert stored.asker and stored.asker != "U1"


def test_context_contrast_decodes_against_the_turn_without_documents(use_tiny_llm, handbook, settings):
    plain = answering.answer(QUESTION, platform="cli", mode="rag")
    settings.GENERATION_CONTEXT_CONTRAST = 2.0

    contrasted = answering.answer(QUESTION, platform="cli", mode="rag")

    messages = build_messages(system_prompt(), context_chunks(plain.context), [], QUESTION)
    without = build_messages(system_prompt(), [], [], QUESTION)
    expected = answering.get_generator().generate(
        messages, config=answering.generation_config(), contrast_messages=without
    )
    assert contrasted.text == expected.text != plain.text
    assert contrasted.context == plain.context


def test_prompt_mode_neither_retrieves_nor_cites(use_tiny_llm, handbook):
    answer = answering.answer(QUESTION, platform="cli", mode="prompt")
    assert answer.mode == "prompt"
    assert answer.retrieved == [] and answer.sources == [] and answer.context == []
    assert "search" not in answer.timings and answer.completion_tokens > 0


def test_off_topic_question_gets_the_not_covered_answer_without_generating(use_tiny_llm, handbook):
    answer = answering.answer(OFF_TOPIC, platform="cli")
    assert answer.text == answering.NOT_COVERED
    assert answer.covered is False
    assert answer.completion_tokens == 0 and "generate" not in answer.timings


def test_default_mode_is_both_when_an_adapter_is_live(use_tiny_llm, handbook, live_adapter):
    answer = answering.answer(QUESTION, platform="cli")
    assert answer.mode == "both"
    assert answer.adapter == live_adapter
    assert "voice-1" in answering.get_generator().adapters


def test_adapter_mode_uses_the_adapter_and_changes_the_output(use_tiny_llm, handbook, live_adapter):
    with_adapter = answering.answer(QUESTION, platform="cli", mode="adapter")
    base = answering.answer(QUESTION, platform="cli", mode="prompt")
    assert with_adapter.adapter == live_adapter and base.adapter is None
    assert with_adapter.retrieved == []
    assert with_adapter.text != base.text


def test_promoting_a_run_serves_it_on_the_next_question(use_tiny_llm, handbook, tiny_adapter, live_adapter):
    newer = TrainingRun.objects.create(name="voice-2", status="succeeded", adapter_path=str(tiny_adapter))
    assert answering.answer(QUESTION, platform="cli").adapter == live_adapter
    promote(newer)
    forget_active_adapter()  # what the on-commit hook does; the cache otherwise expires in seconds
    assert answering.answer(QUESTION, platform="cli").adapter == newer
    promote(live_adapter)  # rollback
    forget_active_adapter()
    assert answering.answer(QUESTION, platform="cli").adapter == live_adapter


def test_channel_settings_choose_mode_and_collections(use_tiny_llm, handbook, add_document):
    other = Collection.objects.create(name="Other", slug="other")
    add_document(
        other, "pager.md", "# Pager\n\nPagerDuty pages must be acknowledged within 2 minutes on weekends."
    )
    settings_row = ChannelSettings.objects.create(platform="slack", channel_id="C7", mode="rag")
    settings_row.collections.set([other])
    answer = answering.answer(QUESTION, platform="slack", channel="C7")
    assert answer.mode == "rag"
    assert {s["source"] for s in answer.sources} == {"pager.md"}


def test_disabled_channel_is_refused(use_tiny_llm, handbook):
    ChannelSettings.objects.create(platform="discord", channel_id="42", enabled=False)
    with pytest.raises(answering.ChannelDisabled):
        answering.answer(QUESTION, platform="discord", channel="42")


def test_restricted_collection_never_reaches_another_channel(use_tiny_llm, handbook, add_document):
    secret = Collection.objects.create(name="Secret", slug="secret", allowed_scopes=["slack:CSECRET"])
    add_document(
        secret, "pager-secret.md", "# Pager secrets\n\nThe PagerDuty acknowledge timeout override is 90s."
    )
    elsewhere = answering.answer(QUESTION, platform="slack", channel="COTHER")
    allowed = answering.answer(QUESTION, platform="slack", channel="CSECRET")
    assert "pager-secret.md" not in {s["source"] for s in elsewhere.sources}
    assert "pager-secret.md" in {s["source"] for s in allowed.sources}


def test_sources_put_cited_documents_first(handbook):
    from console.knowledge.search import search

    chunks = search("meals monitors pagerduty", k=4)
    text = f"See [{len(chunks)}]."
    sources = answering.sources_for(text, chunks)
    assert sources[0]["number"] == len(chunks) and sources[0]["cited"] is True
    assert len({s["source"] for s in sources}) == len(sources)


def test_ask_command_json_contract(use_tiny_llm, handbook):
    out = io.StringIO()
    call_command("ask", QUESTION, "--json", "--mode", "rag", stdout=out)
    payload = json.loads(out.getvalue())
    assert {"answer", "sources", "mode", "adapter", "timings"} <= set(payload)
    assert payload["mode"] == "rag" and payload["adapter"] is None
    assert payload["sources"][0]["source"] == "oncall.md"
    assert {"document", "source", "score"} <= set(payload["sources"][0])
    assert "generate" in payload["timings"]


def test_a_live_adapter_whose_files_are_gone_answers_with_the_base_model_marked_and_logged(
    use_tiny_llm, handbook, tiny_adapter, tmp_path, caplog
):
    import shutil

    copy = shutil.copytree(tiny_adapter, tmp_path / "voice-gone")
    run = TrainingRun.objects.create(name="voice-gone", status="succeeded", adapter_path=str(copy))
    promote(run)
    forget_active_adapter()
    shutil.rmtree(copy)  # a lost volume, a bad restore
    answer = answering.answer(QUESTION, platform="cli", mode="both")
    base = answering.answer(QUESTION, platform="cli", mode="rag")
    assert answer.adapter is None and answer.adapter_missing and not base.adapter_missing
    assert answer.text == base.text  # the base model answered
    assert Answer.objects.get(pk=answer.pk).adapter_missing
    assert any("LIVE ADAPTER MISSING" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
