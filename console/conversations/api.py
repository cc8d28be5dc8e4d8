"""OpenAI-compatible API: POST /v1/chat/completions (plain and streamed) and GET /v1/models.

Any OpenAI client works with base_url=".../v1" and a key from the admin (Conversations › API keys).
The last user message is the question and earlier user/assistant messages are the history; the
system prompt stays the operator's (client system messages are ignored), and so do sampling
parameters (temperature, max_tokens: the server's settings apply). `model` picks how to answer:
"answerbot" (retrieval + the live adapter, as in a channel), a mode ("prompt", "rag", "adapter",
"both") or, by its run name, a trained adapter that passed the evaluation gate. Responses carry a
non-standard `answerbot` object (answer id, mode, adapter, sources), which OpenAI clients keep as
an extra field.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from console.conversations import answering
from console.conversations.api_keys import authenticate_api_key
from console.conversations.models import Answer, ApiKey, Platform
from console.conversations.streaming import AnswerStream, Delta, Done, Failed, failure_for
from console.training.models import TrainingRun
from ml.prompting import Turn

DEFAULT_MODEL = "answerbot"
HISTORY_ROLES = ("user", "assistant")
KNOWN_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class ApiError(Exception):
    """An error for the client, rendered as OpenAI renders its errors."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def payload(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JsonResponse:
        return JsonResponse(self.payload(), status=self.status)


@dataclass(frozen=True)
class ChatRequest:
    question: str
    history: list[Turn]
    model: str
    stream: bool
    include_usage: bool
    user: str


def api_view(method: str) -> Callable:
    """CSRF-exempt, key-authenticated, one HTTP method; ApiError becomes its JSON response."""

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                if request.method != method:
                    raise ApiError(405, f"{request.method} is not allowed here; use {method}.")
                return view(request, authenticate(request), *args, **kwargs)
            except ApiError as error:
                return error.response()

        return wrapped

    return decorate


def authenticate(request: HttpRequest) -> ApiKey:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "You didn't provide an API key. Send it in an Authorization header: 'Authorization: Bearer KEY'. "
            "Keys are created in the admin under Conversations › API keys.",
            code="invalid_api_key",
        )
    api_key = authenticate_api_key(key.strip())
    if api_key is None:
        raise ApiError(
            401,
            "Incorrect or revoked API key. Create a new key in the admin under Conversations › API keys.",
            code="invalid_api_key",
        )
    return api_key


# --- models -------------------------------------------------------------------------------------


def trained_adapters():
    """Adapters a client may pick by name: only runs that finished and passed the evaluation gate
    (a refused or unfinished adapter never answers API traffic, whatever its name)."""
    return (
        TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED, metrics__promoted=True)
        .exclude(adapter_path="")
        .order_by("-created_at")
    )


def model_choice(model: str) -> tuple[str | None, str | None]:
    """(mode, adapter name) for a `model` value; ApiError 404 for an unknown one."""
    if model == DEFAULT_MODEL:
        return None, None
    if model in answering.MODES:
        return model, None
    if trained_adapters().filter(name=model).exists():
        return None, model
    raise ApiError(
        404,
        f"The model {model!r} does not exist. GET /v1/models lists the models: "
        f"{DEFAULT_MODEL!r}, a mode ({', '.join(answering.MODES)}) or the name of an adapter that passed its evaluation gate.",
        code="model_not_found",
        param="model",
    )


@api_view("GET")
def models(request: HttpRequest, api_key: ApiKey) -> JsonResponse:
    started = int(time.time())
    data = [
        {"id": name, "object": "model", "created": started, "owned_by": "answerbot"}
        for name in [DEFAULT_MODEL, *answering.MODES]
    ]
    data += [
        {
            "id": run.name,
            "object": "model",
            "created": int(run.created_at.timestamp()),
            "owned_by": "answerbot",
        }
        for run in trained_adapters().only("name", "created_at")
    ]
    return JsonResponse({"object": "list", "data": data})


# --- chat completions ---------------------------------------------------------------------------


def message_text(message: dict, index: int) -> str:
    """The text of a message whose content is a string, a list of text parts, or null."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        ]
        if len(texts) == len(content):
            return "\n".join(texts)
    raise ApiError(
        400,
        "Only text content is supported: a string or a list of text parts.",
        param=f"messages[{index}].content",
    )


def parse_chat_request(body: bytes) -> ChatRequest:
    """The request body as a ChatRequest; ApiError 400 that says what is wrong otherwise."""
    try:
        data = json.loads(body or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(
            400, "The request body is not valid JSON. Send a JSON object with 'model' and 'messages'."
        ) from error
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object with 'model' and 'messages'.")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(
            400, "'messages' is required: a non-empty list of {role, content} objects.", param="messages"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in KNOWN_ROLES:
            raise ApiError(
                400,
                f"messages[{index}] needs a 'role' among {', '.join(KNOWN_ROLES)}.",
                param=f"messages[{index}].role",
            )
    asked = [i for i, message in enumerate(messages) if message["role"] == "user"]
    if not asked:
        raise ApiError(400, "'messages' has no user message to answer.", param="messages")
    question = message_text(messages[asked[-1]], asked[-1]).strip()
    if not question:
        raise ApiError(400, "The last user message is empty.", param=f"messages[{asked[-1]}].content")
    history = [
        Turn(message["role"], text)
        for index, message in enumerate(messages[: asked[-1]])
        if message["role"] in HISTORY_ROLES and (text := message_text(message, index).strip())
    ]
    check_sizes(question, history, asked[-1])
    model = data.get("model", DEFAULT_MODEL)
    stream = data.get("stream") or False
    options = data.get("stream_options") or {}
    user = data.get("user") or ""
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' must be a model name from GET /v1/models.", param="model")
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false.", param="stream")
    if not isinstance(options, dict) or not isinstance(user, str):
        raise ApiError(400, "'stream_options' must be an object and 'user' a string.")
    return ChatRequest(question, history, model, stream, bool(options.get("include_usage")), user)


def check_sizes(question: str, history: list[Turn], index: int) -> None:
    """ApiError 400 for a question or history over its limit, with the limit in the message."""
    limit = settings.QUESTION_MAX_CHARS
    if len(question) > limit:
        raise ApiError(
            400,
            f"The question (the last user message) is {len(question):,} characters; the limit is "
            f"{limit:,} (QUESTION_MAX_CHARS). Shorten it.",
            param=f"messages[{index}].content",
            code="question_too_long",
        )
    size, limit = sum(len(turn.content) for turn in history), settings.HISTORY_MAX_CHARS
    if size > limit:
        raise ApiError(
            400,
            f"The earlier messages add up to {size:,} characters; the limit is {limit:,} "
            "(HISTORY_MAX_CHARS). Send fewer or shorter earlier messages.",
            param="messages",
            code="history_too_long",
        )


def request_body(request: HttpRequest) -> bytes:
    """The body, refused with 413 before it is read when its declared length is over API_MAX_BODY_KB."""
    limit = settings.API_MAX_BODY_KB * 1024
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError(400, "The Content-Length header is not a number.") from None
    if declared > limit:
        raise ApiError(
            413,
            f"The request body is {declared:,} bytes; the limit is {limit:,} bytes "
            f"(API_MAX_BODY_KB={settings.API_MAX_BODY_KB}). Send a shorter conversation.",
            code="request_too_large",
        )
    return request.body


@api_view("POST")
def chat_completions(request: HttpRequest, api_key: ApiKey) -> HttpResponseBase:
    chat = parse_chat_request(request_body(request))
    mode, adapter_name = model_choice(chat.model)
    ask: dict[str, Any] = dict(
        platform=Platform.API,
        user=chat.user or f"key:{api_key.pk}",
        history=chat.history,
        mode=mode,
        adapter_name=adapter_name,
    )
    if chat.stream:
        return stream_completion(chat, ask)
    try:
        answer = answering.answer(chat.question, **ask)
    except Exception as error:
        raise answer_error(failure_for(error)) from error
    return JsonResponse(
        {
            "id": f"chatcmpl-{answer.pk}",
            "object": "chat.completion",
            "created": int(answer.created_at.timestamp()),
            "model": chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason(answer),
                }
            ],
            "usage": usage(answer),
            "answerbot": extension(answer),
        }
    )


def answer_error(failed: Failed) -> ApiError:
    """A failed answer as OpenAI reports errors: the client's fault (4xx) or the server's."""
    return ApiError(
        failed.status, failed.message, type="invalid_request_error" if failed.status < 500 else "server_error"
    )


def finish_reason(answer: Answer) -> str:
    """Why generation ended, as OpenAI reports it: "length" at the token limit, else "stop"."""
    return "length" if answer.completion_tokens >= settings.GENERATION_MAX_NEW_TOKENS else "stop"


def usage(answer: Answer) -> dict:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def extension(answer: Answer) -> dict:
    """The non-standard part: what answered and from which documents."""
    return {
        "answer_id": answer.pk,
        "mode": answer.mode,
        "adapter": answer.adapter.name if answer.adapter else None,
        "covered": answer.covered,
        "sources": [
            {key: source.get(key) for key in ("number", "document", "source", "cited", "score")}
            for source in answer.sources
        ],
        "timings": answer.timings,
    }


def stream_completion(chat: ChatRequest, ask: dict[str, Any]) -> StreamingHttpResponse:
    """Server-sent events in OpenAI's chunk format, with the tokens as the model writes them.

    Retrieval comes first, then generation streams; the Answer is recorded when it ends, even if
    the client has gone away by then (see streaming.AnswerStream).
    """
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": chat.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }
        return sse(body)

    def stream() -> Iterator[str]:
        # Started before the first chunk, so a client that leaves at once still gets its answer recorded.
        events = AnswerStream(chat.question, **ask).start()
        yield chunk({"role": "assistant", "content": ""})
        sent = ""
        for event in events:
            match event:
                case Delta(text):
                    sent += text
                    yield chunk({"content": text})
                case Failed() as failed:
                    yield sse(answer_error(failed).payload())
                    return
                case Done(answer):
                    break
        if answer.text != sent and answer.text.startswith(sent):  # not covered: nothing was generated
            yield chunk({"content": answer.text[len(sent) :]})
        yield chunk({}, finish_reason(answer), answerbot=extension(answer))
        if chat.include_usage:
            yield sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": chat.model,
                    "choices": [],
                    "usage": usage(answer),
                }
            )
        yield "data: [DONE]\n\n"

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return response


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"
