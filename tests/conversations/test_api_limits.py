"""/v1 size limits: an oversized body is refused with 413 before it is read, an oversized question
or history with 400; each error names the limit, and nothing is answered."""

import json

import pytest

from console.conversations.models import Answer
from tests.conversations.test_api import post

pytestmark = pytest.mark.django_db


def body(question: str, history: list[str] = ()) -> str:
    earlier = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": text} for i, text in enumerate(history)
    ]
    return json.dumps({"model": "prompt", "messages": [*earlier, {"role": "user", "content": question}]})


def test_an_oversized_body_is_a_413_naming_the_limit(client, api_key, settings):
    settings.API_MAX_BODY_KB = 4

    response = post(client, api_key, body("x" * 5000))

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large" and "4,096 bytes" in error["message"]
    assert "API_MAX_BODY_KB" in error["message"]
    assert not Answer.objects.exists()


def test_an_oversized_question_is_a_400_naming_the_limit(client, api_key, settings):
    settings.QUESTION_MAX_CHARS = 100

    response = post(client, api_key, body("Why? " * 30, ["Hi", "Hello!"]))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "question_too_long" and error["param"] == "messages[2].content"
    assert "149 characters" in error["message"] and "limit is 100" in error["message"]
    assert not Answer.objects.exists()


def test_an_oversized_history_is_a_400_naming_the_limit(client, api_key, settings):
    settings.HISTORY_MAX_CHARS = 1000

    response = post(client, api_key, body("And now?", ["a" * 600, "b" * 600]))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "history_too_long" and "1,200 characters" in error["message"]
    assert "limit is 1,000" in error["message"] and "HISTORY_MAX_CHARS" in error["message"]
    assert not Answer.objects.exists()


def test_a_question_at_the_limit_passes_the_checks(client, api_key, settings):
    settings.QUESTION_MAX_CHARS = 100
    settings.API_MAX_BODY_KB = 4

    response = post(
        client, api_key, json.dumps({"model": "nope", "messages": [{"role": "user", "content": "q" * 100}]})
    )

    assert response.status_code == 404  # past every size check, stopped at the unknown model
