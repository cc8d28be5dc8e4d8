"""Text generation behind one interface, with two back ends.

`LocalGenerator` runs transformers + peft in this process and hot-swaps LoRA adapters by name;
`OpenAIGenerator` talks to any OpenAI-compatible server (vLLM with LoRA enabled serves adapters
as model names). Both take chat messages from `ml.prompting.build_messages` and return plain
data. Heavy libraries are imported when a generator is built, never at module import.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from ml.model_files import AdapterError, check_adapter_folder
from ml.prompting import DOC_CLOSE, DOC_OPEN, FENCE_CLOSE, FENCE_OPEN

if TYPE_CHECKING:
    import torch
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# End-of-turn tokens of common chat templates; generation stops at any that the vocabulary has.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")
_ADAPTER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. `context_contrast` is context-aware decoding's alpha (0: off; local only):
    see `ContextContrast`; it needs the caller's `contrast_messages` to take effect."""

    max_new_tokens: int = 256
    temperature: float = 0.2  # 0 -> greedy
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    context_contrast: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.context_contrast <= 10:
            raise ValueError(
                f"context_contrast must be between 0 (off) and 10, not {self.context_contrast}; "
                "0.5 to 1 is the usual range."
            )


@dataclass(frozen=True)
class GenerationResult:
    """The answer text (stripped) and its cost; `seconds` excludes waiting for other requests."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


class GenerationError(RuntimeError):
    """The model could not produce an answer (server down, timeout, HTTP error)."""


class Generator(Protocol):
    """`contrast_messages`: the same turn without the documents (`build_messages` with no chunks),
    for context-aware decoding when `config.context_contrast` > 0; back ends that cannot contrast
    ignore it."""

    def generate(
        self,
        messages: list[dict],
        *,
        adapter: str | None = None,
        config: GenerationConfig | None = None,
        contrast_messages: list[dict] | None = None,
    ) -> GenerationResult: ...

    def stream(
        self,
        messages: list[dict],
        *,
        adapter: str | None = None,
        config: GenerationConfig | None = None,
        on_finish: Callable[[GenerationResult], None] | None = None,
        contrast_messages: list[dict] | None = None,
    ) -> Iterator[str]: ...

    def ensure_adapter(self, name: str, path: str | Path) -> None: ...


# The prompt's own fence tags: small models sometimes echo them; they never belong in an answer.
FENCE_TAGS = (FENCE_OPEN, FENCE_CLOSE, DOC_OPEN, DOC_CLOSE)
_FENCE_TAG = re.compile("|".join(re.escape(tag) for tag in FENCE_TAGS))


def without_fence_tags(deltas: Iterable[str]) -> Iterator[str]:
    """The deltas with the prompt's fence tags removed, even a tag split across deltas.

    Text that could still be the start of a tag is held back until the next delta settles it, so
    the pieces join to exactly what removing the tags from the joined text gives.
    """
    pending = ""
    for delta in deltas:
        text = pending + delta
        start = text.rfind("<")
        if start != -1 and any(tag != text[start:] and tag.startswith(text[start:]) for tag in FENCE_TAGS):
            text, pending = text[:start], text[start:]  # perhaps the start of a tag: wait and see
        else:
            pending = ""
        text = _FENCE_TAG.sub("", text)
        if text:
            yield text
    if pending:
        yield pending  # an unfinished tag at the very end is only text


def clean_reply(text: str) -> str:
    """A whole reply as the streamed deltas join: fence tags removed, then stripped."""
    return "".join(trimmed(without_fence_tags([text])))


def trimmed(deltas: Iterable[str]) -> Iterator[str]:
    """Stream deltas whose join equals the stripped full text, as `generate()` returns it.

    Leading whitespace is dropped and trailing whitespace held back until more text follows.
    """
    pending = ""
    started = False
    for delta in deltas:
        if not started:
            delta = delta.lstrip()
            started = bool(delta)
        text = pending + delta
        body = text.rstrip()
        pending = text[len(body) :]
        if body:
            yield body


# --- local back end: transformers + peft -------------------------------------------------------


class _StopWhenSet:
    """A stopping criterion for `model.generate`: stop once the streaming consumer has gone."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        import torch

        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class ContextContrast:
    """Context-aware decoding (Shi et al., 2023) as the first logits processor of `model.generate`.

    Small models paraphrase what the documents say into what they believe ("$29" for a $55 pass
    that is in the context). Each step the next-token logits with the documents are contrasted
    with those of the same turn without them: (1 + alpha) * with - alpha * without, amplifying
    what only the documents make likely. The no-documents prompt is short and keeps its own KV
    cache, so after its one prefill each step costs one extra one-token forward. Greedy, sampling
    and streaming all decode from the contrasted logits; `model` is the one serving (adapter on).
    """

    def __init__(self, model: Any, plain_ids: torch.Tensor, alpha: float):
        self.model = model
        self.plain_ids = plain_ids
        self.alpha = alpha
        self._cache: Any = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch
        from transformers import DynamicCache

        if self._cache is None:  # first step: prefill the no-documents prompt
            self._cache = DynamicCache()
            step = self.plain_ids
        else:  # then only the token chosen last step, which the cached prompt has not seen yet
            step = input_ids[:, -1:]
        with torch.no_grad():
            output = self.model(input_ids=step, past_key_values=self._cache, use_cache=True)
        without = output.logits[:, -1, :].to(scores.dtype)
        return (1 + self.alpha) * scores - self.alpha * without


class LocalGenerator:
    """A causal LM with LoRA adapters loaded by name and switched per request.

    One lock serialises adapter switching and generation: the active adapter is model-wide state,
    so requests from several threads run one at a time, each with its own adapter. A consumer of
    `stream()` must not call this generator again before finishing or closing that stream.
    """

    def __init__(self, base_model: str | Path, *, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.base_model = str(base_model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = self.device.startswith("cuda")
        self._tokenizer = AutoTokenizer.from_pretrained(self.base_model, local_files_only=True)
        if not self._tokenizer.chat_template:
            raise ValueError(f"{self.base_model} has no chat template: use an instruct/chat model.")
        model = AutoModelForCausalLM.from_pretrained(
            self.base_model,
            local_files_only=True,
            dtype=torch.bfloat16 if on_gpu else torch.float32,
            attn_implementation="sdpa" if on_gpu else None,
        )
        # transformers wraps PreTrainedModel.to in functools.wraps, which mypy reads as unbound.
        self._model = model.to(self.device).eval()  # type: ignore[arg-type]
        self._peft: Any = None  # the PeftModel wrapping self._model, once an adapter is loaded
        self._adapters: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop_ids = self._end_of_turn_ids()

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._tokenizer

    @property
    def model(self) -> PreTrainedModel:
        """The base model; adapters are injected into it in place, never reloaded."""
        return self._model

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    def _end_of_turn_ids(self) -> list[int]:
        configured = self._model.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured]
        ids = [*ids, self._tokenizer.eos_token_id]
        vocab = self._tokenizer.get_vocab()
        ids += [vocab[token] for token in END_OF_TURN_TOKENS if token in vocab]
        return sorted({i for i in ids if i is not None})

    def ensure_adapter(self, name: str, path: str | Path) -> None:
        """Load the adapter at `path` under `name` once; later calls with that name do nothing."""
        if name in self._adapters:
            return
        if not _ADAPTER_NAME.match(name):
            raise AdapterError(f"Adapter name {name!r} is invalid: use up to 64 letters, digits, - or _.")
        folder = check_adapter_folder(path)
        with self._lock:
            if name in self._adapters:
                return
            if self._peft is None:
                from peft import PeftModel

                self._peft = PeftModel.from_pretrained(self._model, str(folder), adapter_name=name)
            else:
                self._peft.load_adapter(str(folder), adapter_name=name)
            self._peft.eval()
            self._adapters[name] = folder
        logger.info("Loaded adapter %s from %s", name, folder)

    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self._adapters:
            raise AdapterError(f"Adapter {adapter!r} is not loaded: call ensure_adapter() first.")

    @contextmanager
    def _serving(self, adapter: str | None) -> Iterator[Any]:
        """The model to call with `adapter` active (None: base weights). Caller holds the lock."""
        if adapter is not None:
            self._peft.set_adapter(adapter)
            yield self._peft
        elif self._peft is not None:
            with self._peft.disable_adapter():
                yield self._peft
        else:
            yield self._model

    def _encode(self, messages: list[dict]) -> BatchEncoding:
        encoded = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        return cast("BatchEncoding", encoded).to(self.device)

    def _generate_kwargs(
        self, config: GenerationConfig, prompt_tokens: int, contrast: ContextContrast | None = None
    ) -> dict[str, Any]:
        from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

        # The contrast comes first: it works on the raw logits, which the penalty then adjusts.
        processors: list[Any] = [contrast] if contrast else []
        if config.repetition_penalty != 1.0:
            # The penalty counts generated tokens only: penalising the prompt's tokens would push
            # the model away from the very words of the documents it should quote.
            processors.append(
                RepetitionPenaltyLogitsProcessor(
                    config.repetition_penalty, prompt_ignore_length=prompt_tokens
                )
            )
        pad = self._tokenizer.pad_token_id
        kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "logits_processor": LogitsProcessorList(processors),
            "eos_token_id": self._stop_ids,
            "pad_token_id": self._stop_ids[0] if pad is None else pad,
        }
        if config.temperature > 0:
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _run(
        self,
        messages: list[dict],
        adapter: str | None,
        config: GenerationConfig,
        contrast_messages: list[dict] | None = None,
        **extra: Any,
    ) -> GenerationResult:
        self._check_adapter(adapter)
        # The tokenizer is used under the lock too: fast tokenizers are not safe across threads.
        with self._lock:
            started = time.perf_counter()
            inputs = self._encode(messages)
            prompt_tokens = int(inputs["input_ids"].shape[1])
            plain = contrast_messages if config.context_contrast > 0 else None
            plain_ids = self._encode(plain)["input_ids"] if plain is not None else None
            with self._serving(adapter) as model:
                contrast = (
                    None if plain_ids is None else ContextContrast(model, plain_ids, config.context_contrast)
                )
                kwargs = self._generate_kwargs(config, prompt_tokens, contrast)
                output = model.generate(**inputs, **kwargs, **extra)
            completion = output[0, prompt_tokens:]
            reply = self._tokenizer.decode(completion, skip_special_tokens=True)  # one sequence: a str
            text = clean_reply(cast(str, reply))
            seconds = time.perf_counter() - started
        return GenerationResult(text, prompt_tokens, int(completion.shape[0]), seconds)

    def generate(
        self,
        messages: list[dict],
        *,
        adapter: str | None = None,
        config: GenerationConfig | None = None,
        contrast_messages: list[dict] | None = None,
    ) -> GenerationResult:
        """The reply to `messages` with `adapter` (None: the base model); counts include end-of-turn.

        With `config.context_contrast` > 0 and `contrast_messages` (the turn without its documents),
        decoding contrasts the two (`ContextContrast`); prompt_tokens counts `messages` only.
        """
        return self._run(messages, adapter, config or GenerationConfig(), contrast_messages)

    def stream(
        self,
        messages: list[dict],
        *,
        adapter: str | None = None,
        config: GenerationConfig | None = None,
        on_finish: Callable[[GenerationResult], None] | None = None,
        contrast_messages: list[dict] | None = None,
    ) -> Iterator[str]:
        """Text deltas as they are generated; `on_finish` gets the full result with token counts.

        Generation runs in a worker thread; closing the iterator early stops it at the next token.
        `contrast_messages` as for `generate`.
        """
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        self._check_adapter(adapter)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["result"] = self._run(
                    messages,
                    adapter,
                    config or GenerationConfig(),
                    contrast_messages,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_StopWhenSet(stop)]),
                )
            except BaseException as error:  # re-raised in the consumer's thread below
                outcome["error"] = error
                streamer.end()

        worker = threading.Thread(target=work, name="generation-stream", daemon=True)
        worker.start()
        try:
            yield from trimmed(without_fence_tags(streamer))
        finally:
            stop.set()
            worker.join()
        if "error" in outcome:
            raise outcome["error"]
        if on_finish:
            on_finish(outcome["result"])


_generators_lock = threading.Lock()


@lru_cache(maxsize=2)
def _cached_local_generator(base_model: str, device: str | None) -> LocalGenerator:
    return LocalGenerator(base_model, device=device)


def local_generator(base_model: str | Path, *, device: str | None = None) -> LocalGenerator:
    """The process-wide LocalGenerator for `base_model`, loaded on first use (thread-safe)."""
    with _generators_lock:
        return _cached_local_generator(str(base_model), device)


# --- remote back end: any OpenAI-compatible server ------------------------------------------------


class OpenAIGenerator:
    """Chat completions from an OpenAI-compatible server, e.g. vLLM serving LoRA adapters.

    The adapter name is sent as `model` (vLLM's --lora-modules names), else the base model name.
    Timeouts and retries (with backoff, on connection errors, 408/409/429 and 5xx) come from the
    official client. `repetition_penalty` is a vLLM extension, sent only when it is not 1.0.
    """

    def __init__(self, base_url: str, api_key: str, *, model: str, timeout: float = 60, max_retries: int = 2):
        from openai import OpenAI

        self.base_url = base_url
        self.model = model
        self.timeout = timeout
        # Local servers often need no key, but the client insists on one.
        self._client = OpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout, max_retries=max_retries
        )

    def ensure_adapter(self, name: str, path: str | Path) -> None:
        """Nothing to do: the server loads its adapters itself."""

    def _request(
        self, messages: list[dict], adapter: str | None, config: GenerationConfig | None
    ) -> dict[str, Any]:
        config = config or GenerationConfig()
        request: dict[str, Any] = {
            "model": adapter or self.model,
            "messages": messages,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
        }
        if config.repetition_penalty != 1.0:
            request["extra_body"] = {"repetition_penalty": config.repetition_penalty}
        return request

    def _failure(self, error: Exception) -> GenerationError:
        import openai

        if isinstance(error, openai.APITimeoutError):
            reason = f"did not answer within {self.timeout:g} s"
        elif isinstance(error, openai.APIStatusError):
            reason = f"answered HTTP {error.status_code}: {error.message}"
        else:
            reason = f"could not be reached ({error})"
        return GenerationError(f"The model server at {self.base_url} {reason}. Check that it is running.")

    def generate(
        self,
        messages: list[dict],
        *,
        adapter: str | None = None,
        config: GenerationConfig | None = None,
        contrast_messages: list[dict] | None = None,
    ) -> GenerationResult:
        """One chat completion; token counts are the server's `usage` (0 when it reports none).

        `contrast_messages` is ignored: a chat-completions server gives no logits to contrast.
        """
        import openai

        started = time.perf_counter()
        try:
            completion = self._client.chat.completions.create(**self._request(messages, adapter, config))
        except openai.APIError as error:
            raise self._failure(error) from error
        text = clean_reply(completion.choices[0].message.content or "") if completion.choices else ""
        usage = completion.usage
        return GenerationResult(
            text,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            time.perf_counter() - started,
        )

    def stream(
        self,
        messages: list[dict],
        *,
        adapter: str | None = None,
        config: GenerationConfig | None = None,
        on_finish: Callable[[GenerationResult], None] | None = None,
        contrast_messages: list[dict] | None = None,
    ) -> Iterator[str]:
        """Text deltas from a streamed completion; `on_finish` gets the full result and usage.

        `contrast_messages` is ignored, as in `generate`.
        """
        import openai

        started = time.perf_counter()
        usage: list[Any] = []
        parts: list[str] = []

        def deltas() -> Iterator[str]:
            chunks = self._client.chat.completions.create(
                **self._request(messages, adapter, config),
                stream=True,
                stream_options={"include_usage": True},
            )
            try:
                for chunk in chunks:
                    if chunk.usage:
                        usage.append(chunk.usage)
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
            finally:
                chunks.close()

        try:
            for delta in trimmed(without_fence_tags(deltas())):
                parts.append(delta)
                yield delta
        except openai.APIError as error:
            raise self._failure(error) from error
        if on_finish:
            prompt_tokens = usage[-1].prompt_tokens if usage else 0
            completion_tokens = usage[-1].completion_tokens if usage else 0
            seconds = time.perf_counter() - started
            on_finish(GenerationResult("".join(parts), prompt_tokens, completion_tokens, seconds))
