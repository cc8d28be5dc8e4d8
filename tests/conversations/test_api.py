"""The OpenAI-compatible API, driven by the official `openai` client against a live server."""

import json
from collections.abc import Iterator

import openai
import pytest
import requests

from console.conversations.answering import NOT_COVERED
from console.conversations.api import parse_chat_request
from console.conversations.models import Answer, ApiKey
from console.training.models import TrainingRun
from ml.prompting import Turn
from tests.conversations.conftest import ONCALL_QUESTION, UNRELATED_QUESTION


@pytest.fixture
def openai_client(live_server, api_key) -> Iterator[openai.OpenAI]:
    # Closed at the end, so the live server's keep-alive thread lets go of its database connection.
    with connect(live_server, api_key) as client:
        yield client


def connect(live_server, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=api_key, max_retries=0, timeout=60)


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def test_a_completion_is_the_recorded_answer_with_usage_and_sources(openai_client, handbook):
    completion = openai_client.chat.completions.create(model="answerbot", messages=ask(ONCALL_QUESTION))
    answer = Answer.objects.get()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == answer.text
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens == answer.prompt_tokens > 0
    assert completion.usage.total_tokens == answer.prompt_tokens + answer.completion_tokens
    extra = completion.model_extra["answerbot"]
    assert (extra["answer_id"], extra["mode"], extra["adapter"]) == (answer.pk, "rag", None)
    assert extra["sources"][0]["document"] == "On-call rotation"
    assert extra["sources"][0]["source"] == "oncall.md"
    assert (answer.platform, answer.question) == ("api", ONCALL_QUESTION)


def test_a_streamed_completion_joins_to_the_recorded_answer(openai_client, handbook):
    chunks = list(
        openai_client.chat.completions.create(
            model="rag", messages=ask(ONCALL_QUESTION), stream=True, stream_options={"include_usage": True}
        )
    )
    answer = Answer.objects.get()
    choices = [chunk.choices[0] for chunk in chunks if chunk.choices]
    assert choices[0].delta.role == "assistant"
    assert "".join(choice.delta.content or "" for choice in choices) == answer.text != ""
    assert [choice.finish_reason for choice in choices[:-1]] == [None] * (len(choices) - 1)
    assert choices[-1].finish_reason in ("stop", "length")
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[-1].usage.completion_tokens == answer.completion_tokens
    final = next(chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason)
    assert final.model_extra["answerbot"]["answer_id"] == answer.pk


def test_the_stream_is_server_sent_events_in_openai_chunk_format(live_server, api_key, handbook):
    with requests.post(
        f"{live_server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"model": "answerbot", "messages": ask(UNRELATED_QUESTION), "stream": True},
        stream=True,
        timeout=60,
    ) as response:
        content_type = response.headers["Content-Type"]
        events = [line for line in response.iter_lines(decode_unicode=True) if line]
    assert content_type == "text/event-stream"
    assert all(line.startswith("data: ") for line in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == NOT_COVERED
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["answerbot"]["covered"] is False


def test_models_lists_the_default_the_modes_and_trained_adapters(openai_client, trained_adapter):
    ids = [model.id for model in openai_client.models.list()]
    assert ids == ["answerbot", "prompt", "rag", "adapter", "both", "tone-v1"]


def test_model_selects_the_mode(openai_client, handbook):
    openai_client.chat.completions.create(model="prompt", messages=ask(ONCALL_QUESTION))
    assert (Answer.objects.get().mode, Answer.objects.get().sources) == ("prompt", [])


def test_default_model_answers_with_the_live_adapter(openai_client, handbook, trained_adapter):
    trained_adapter.active = True
    trained_adapter.save()
    completion = openai_client.chat.completions.create(model="answerbot", messages=ask(ONCALL_QUESTION))
    assert completion.model_extra["answerbot"]["mode"] == "both"
    assert Answer.objects.get().adapter == trained_adapter


def test_model_named_after_a_trained_adapter_answers_with_it(openai_client, handbook, trained_adapter):
    completion = openai_client.chat.completions.create(model="tone-v1", messages=ask(ONCALL_QUESTION))
    assert completion.model == "tone-v1"
    assert completion.model_extra["answerbot"]["adapter"] == "tone-v1"
    answer = Answer.objects.get()
    assert (answer.mode, answer.adapter) == ("both", trained_adapter)


def test_only_adapters_that_passed_the_gate_can_be_picked(openai_client, trained_adapter, tiny_adapter):
    TrainingRun.objects.create(
        name="refused-v2", status="succeeded", adapter_path=str(tiny_adapter), metrics={"promoted": False}
    )
    TrainingRun.objects.create(name="evaluating-v3", status="evaluating", adapter_path=str(tiny_adapter))
    TrainingRun.objects.create(
        name="failed-v4", status="failed", adapter_path=str(tiny_adapter), metrics={"promoted": True}
    )
    assert [m.id for m in openai_client.models.list()][-1:] == ["tone-v1"]
    for name in ("refused-v2", "evaluating-v3", "failed-v4"):
        with pytest.raises(openai.NotFoundError) as raised:
            openai_client.chat.completions.create(model=name, messages=ask(ONCALL_QUESTION))
        assert raised.value.code == "model_not_found"
    assert not Answer.objects.exists()


def test_an_unknown_model_is_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.chat.completions.create(model="gpt-4o", messages=ask(ONCALL_QUESTION))
    assert raised.value.code == "model_not_found"


def test_a_wrong_or_revoked_key_is_refused(live_server, api_key):
    with connect(live_server, "ab-not-a-key") as wrong, pytest.raises(openai.AuthenticationError) as raised:
        wrong.models.list()
    assert raised.value.code == "invalid_api_key"
    ApiKey.objects.update(active=False)
    with connect(live_server, api_key) as revoked, pytest.raises(openai.AuthenticationError):
        revoked.chat.completions.create(model="answerbot", messages=ask(ONCALL_QUESTION))
    assert not Answer.objects.exists()


# --- request validation, through Django's test client ---------------------------------------------


def post(client, api_key: str, body: bytes | str, **headers):
    headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {api_key}")
    return client.post("/v1/chat/completions", body, content_type="application/json", **headers)


@pytest.mark.parametrize(
    "body, param",
    [
        ("{not json", None),
        ("[1, 2]", None),
        ('{"model": "answerbot"}', "messages"),
        ('{"messages": []}', "messages"),
        ('{"messages": "hi"}', "messages"),
        ('{"messages": [{"content": "hi"}]}', "messages[0].role"),
        ('{"messages": [{"role": "assistant", "content": "hi"}]}', "messages"),
        ('{"messages": [{"role": "user", "content": "  "}]}', "messages[0].content"),
        ('{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', "messages[0].content"),
        ('{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', "stream"),
        ('{"messages": [{"role": "user", "content": "hi"}], "model": 4}', "model"),
    ],
)
def test_a_malformed_request_gets_a_400_in_openai_error_format(client, api_key, body, param, db):
    response = post(client, api_key, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"] and error["param"] == param
    assert not Answer.objects.exists()


def test_missing_authorization_gets_a_401_in_openai_error_format(client, db):
    response = client.post("/v1/chat/completions", "{}", content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "Authorization: Bearer" in response.json()["error"]["message"]


def test_the_api_ignores_session_logins_and_csrf(admin_client):
    response = admin_client.get("/v1/models")
    assert response.status_code == 401
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert post(strict, "ab-nothing", "{}").status_code == 401  # not a 403 CSRF failure


def test_wrong_method_gets_a_405_in_openai_error_format(client, api_key):
    response = client.get("/v1/chat/completions", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 405 and "use POST" in response.json()["error"]["message"]


def test_earlier_messages_become_history_and_client_system_prompts_are_ignored():
    body = {
        "messages": [
            {"role": "system", "content": "Talk like a pirate."},
            {"role": "user", "content": "Who is on call?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Alex is."}]},
            {"role": "user", "content": "And tomorrow?"},
        ]
    }
    chat = parse_chat_request(json.dumps(body).encode())
    assert chat.question == "And tomorrow?"
    assert chat.history == [Turn("user", "Who is on call?"), Turn("assistant", "Alex is.")]
    assert (chat.model, chat.stream) == ("answerbot", False)


def test_a_model_server_failure_is_a_503_in_openai_error_format(openai_client, model_server_down):
    with pytest.raises(openai.InternalServerError) as raised:
        openai_client.chat.completions.create(model="prompt", messages=ask(ONCALL_QUESTION))
    assert raised.value.status_code == 503 and "could not be reached" in raised.value.message


def test_a_model_server_failure_mid_stream_is_an_error_event(openai_client, model_server_down):
    with pytest.raises(openai.APIError, match="could not be reached"):
        list(
            openai_client.chat.completions.create(model="prompt", messages=ask(ONCALL_QUESTION), stream=True)
        )
    assert not Answer.objects.exists()
