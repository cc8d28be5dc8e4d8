"""The answering service: a question and where it was asked in, an Answer out.

retrieve (pgvector + full text, the channel's collections only) → build the prompt
(`messages_for`: ml.prompting, the same builder training uses, with the channel's system prompt
from console.conversations.prompts.system_prompt) → generate (the live adapter when the mode
uses one) → turn [n] markers into sources → record an Answer row with timings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from console.conversations.models import Answer, ChannelSettings, Mode, SourceRef
from console.conversations.prompts import system_prompt
from console.conversations.pseudonyms import hash_id
from console.knowledge.search import SearchResult, embed_query, merge_adjacent, search
from console.training.adapters import ActiveAdapter, active_adapter
from console.training.models import TrainingRun
from ml import generation, model_files
from ml.prompting import (
    ContextChunk,
    Turn,
    build_messages,
    citation_numbers,
    context_items,
    fit_to_budget,
)

logger = logging.getLogger(__name__)

NOT_COVERED = (
    "I couldn't find anything about that in the knowledge base, so I won't guess. "
    "Try rephrasing the question, or ask a teammate and add the answer to the documents."
)
MODES = [choice.value for choice in Mode]


class ChannelDisabled(Exception):
    """The bot is switched off in this channel (ChannelSettings.enabled)."""


class AnswerFailed(Exception):
    """The model could not answer: the adapter would not load or generation failed (a 503, not a 400).

    Callers catch this, never the ml errors behind it (`__cause__` keeps the original).
    """


@dataclass(frozen=True)
class Asked:
    """Where a question came from."""

    platform: str
    channel: str = ""
    workspace: str = ""
    thread: str = ""
    user: str = ""
    asker: str = ""  # the user's pseudonym, when it was hashed already (a written-down question)


@dataclass(frozen=True)
class ChannelConfig:
    enabled: bool = True
    mode: str = ""
    collections: tuple[str, ...] | None = None  # slugs; None: every collection the channel may read
    persona: str = ""


def channel_config(platform: str, channel: str) -> ChannelConfig:
    """The channel's settings; a channel pinned to collections searches only those, even when
    every one of them was deleted since (then nothing: "not covered", never every collection)."""
    row = ChannelSettings.objects.filter(platform=platform, channel_id=channel).first() if channel else None
    if row is None:
        return ChannelConfig()
    slugs = tuple(row.collections.values_list("slug", flat=True))
    return ChannelConfig(row.enabled, row.mode, slugs if slugs or row.pinned else None, row.persona)


def resolve_mode(requested: str | None, config: ChannelConfig, adapter: ActiveAdapter | None) -> str:
    """Explicit request, else the channel's mode, else ANSWER_MODE; `auto` is both with a live adapter."""
    mode = requested or config.mode or settings.ANSWER_MODE
    if mode == "auto":
        mode = Mode.BOTH if adapter else Mode.RAG
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
    return str(mode)


def named_adapter(name: str) -> ActiveAdapter:
    """A trained adapter picked by its run name (to compare with the live one); ValueError if none."""
    trained = TrainingRun.objects.exclude(adapter_path="").only("id", "name", "adapter_path")
    run = trained.filter(name=name).first()
    if run is None:
        raise ValueError(f"No trained adapter is named {name!r}; see the training runs in the admin.")
    return ActiveAdapter(run.pk, run.name, run.adapter_path)


_generator_lock = threading.Lock()


@lru_cache(maxsize=1)
def _generator(backend: str, base_model: str, api_url: str) -> generation.Generator:
    if backend == "openai":
        if not api_url:
            raise ValueError("GENERATOR=openai needs LLM_API_URL (an OpenAI-compatible server's /v1 URL).")
        return generation.OpenAIGenerator(
            api_url, settings.LLM_API_KEY, model=base_model or "default", timeout=settings.LLM_TIMEOUT
        )
    return generation.local_generator(model_files.resolve_base_model(base_model, settings.DATA_DIR))


def get_generator() -> generation.Generator:
    """The process-wide generator for the configured back end, loaded on first use."""
    with _generator_lock:
        return _generator(settings.GENERATOR, settings.BASE_MODEL, settings.LLM_API_URL)


def warm_up() -> None:
    """Load the embedding model and the generator now, so the first question does not wait for
    them (an answer worker at start-up). A remote generator loads nothing."""
    embed_query("warm-up")
    get_generator()


def generation_config() -> generation.GenerationConfig:
    return generation.GenerationConfig(
        max_new_tokens=settings.GENERATION_MAX_NEW_TOKENS,
        temperature=settings.GENERATION_TEMPERATURE,
        repetition_penalty=settings.GENERATION_REPETITION_PENALTY,
        context_contrast=settings.GENERATION_CONTEXT_CONTRAST,
    )


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._started = time.perf_counter()

    def lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[stage] = round((now - since) * 1000, 2)
        return now

    def total(self) -> dict[str, float]:
        return {**self.timings, "total": round((time.perf_counter() - self._started) * 1000, 2)}


def retrieve(
    question: str,
    config: ChannelConfig,
    scopes: Sequence[str],
    clock: _Stopwatch | None = None,
    *,
    k: int | None = None,
) -> list[SearchResult]:
    """Relevant chunks for the question: the channel's collections, its scopes, above the threshold.

    Training and the evaluation gate call it too, so an adapter learns from and is judged on what
    the bot retrieves. k: RETRIEVAL_TOP_K unless more are asked for (distractors for training).
    """
    clock = clock or _Stopwatch()
    started = time.perf_counter()
    embedding = embed_query(question)
    started = clock.lap("embed", started)
    results = search(
        question,
        k=k or settings.RETRIEVAL_TOP_K,
        collections=config.collections,
        scopes=scopes,
        query_embedding=embedding,
    )
    clock.lap("search", started)
    relevant = [r for r in results if (r.similarity or 0) >= settings.RETRIEVAL_MIN_SIMILARITY]
    return merge_adjacent(relevant, settings.RETRIEVAL_MERGE_TOKENS)


def scopes_for(platform: str, channel: str, workspace: str, *, shared_channel: bool = False) -> list[str]:
    """The collection scopes an answer may read: the channel's, and the asker's workspace's unless
    the channel is shared with people outside it (everyone in the channel reads the answer)."""
    idents = (channel,) if shared_channel else (channel, workspace)
    return [f"{platform}:{ident}" for ident in idents if ident]


def answer(
    question: str,
    *,
    platform: str,
    channel: str = "",
    user: str = "",
    workspace: str = "",
    thread: str = "",
    history: Sequence[Turn] = (),
    mode: str | None = None,
    adapter_name: str | None = None,
    on_delta: Callable[[str], None] | None = None,
    shared_channel: bool = False,
    asker: str = "",
) -> Answer:
    """Answer `question` as asked in `channel` and record it. Raises ChannelDisabled, AnswerFailed.

    shared_channel: people outside the workspace read the channel (Slack Connect), see `scopes_for`.
    asker: the user's pseudonym (hash_id) when only that was kept, instead of `user`.
    adapter_name: answer with that trained adapter instead of the live one (mode defaults to both).
    on_delta: called with each piece of text as it is generated (streaming); the pieces join to
    the recorded text, except for a not-covered answer, which is recorded without generating.
    """
    question = question.strip()
    if not question:
        raise ValueError("The question is empty.")
    config = channel_config(platform, channel)
    if not config.enabled:
        raise ChannelDisabled(f"The bot is switched off in {platform}:{channel}.")
    live = named_adapter(adapter_name) if adapter_name else active_adapter()
    mode = resolve_mode(mode or (Mode.BOTH if adapter_name else None), config, live)
    asked = Asked(platform, channel, workspace, thread, user, asker)
    clock = _Stopwatch()
    chunks: list[SearchResult] = []
    if mode in (Mode.RAG, Mode.BOTH):
        scopes = scopes_for(platform, channel, workspace, shared_channel=shared_channel)
        chunks = retrieve(question, config, scopes, clock)
        if not chunks:
            return _record(asked, question, NOT_COVERED, mode, None, [], None, clock)
    chunks, history = within_budget(question, chunks, history, config)
    adapter = live if mode in (Mode.ADAPTER, Mode.BOTH) else None
    missing = adapter is not None and not adapter_name and not _adapter_present(adapter)
    if missing:
        adapter = None
    try:
        result = _generate(question, chunks, history, config, adapter, clock, on_delta)
    except (model_files.AdapterError, generation.GenerationError) as error:
        raise AnswerFailed(str(error)) from error
    record = _record(asked, question, result.text, mode, adapter, chunks, result, clock)
    if missing:
        Answer.objects.filter(pk=record.pk).update(adapter_missing=True)
        record.adapter_missing = True
    return record


def _adapter_present(adapter: ActiveAdapter) -> bool:
    """Whether the live adapter's files are there; if not, say so loudly: answers fall back to the
    base model (marked `adapter_missing`) until the folder is restored or another run is promoted."""
    if settings.GENERATOR != "local":
        return True  # the model server holds the adapters
    try:
        model_files.check_adapter_folder(adapter.path)
    except model_files.AdapterError as error:
        logger.error(
            "LIVE ADAPTER MISSING: run %s (%s): %s Answering with the base model until its folder is "
            "restored or another run is promoted (admin > Training runs).",
            adapter.run_id,
            adapter.name,
            error,
        )
        return False
    return True


def _generate(
    question: str,
    chunks: Sequence[SearchResult],
    history: Sequence[Turn],
    config: ChannelConfig,
    adapter: ActiveAdapter | None,
    clock: _Stopwatch,
    on_delta: Callable[[str], None] | None,
) -> generation.GenerationResult:
    started = time.perf_counter()
    generator = get_generator()
    if adapter:
        generator.ensure_adapter(adapter.name, adapter.path)
    started = clock.lap("load", started)  # ~0 once the model and adapter are loaded
    messages = messages_for(question, chunks, history, config)
    decoding = generation_config()
    # Context-aware decoding contrasts with the same turn without its documents.
    contrast = messages_for(question, [], history, config) if chunks and decoding.context_contrast else None
    started = clock.lap("prompt", started)
    name = adapter.name if adapter else None
    if on_delta is None:
        result = generator.generate(messages, adapter=name, config=decoding, contrast_messages=contrast)
    else:
        finished: list[generation.GenerationResult] = []
        for delta in generator.stream(
            messages, adapter=name, config=decoding, on_finish=finished.append, contrast_messages=contrast
        ):
            on_delta(delta)
        result = finished[0]
    clock.lap("generate", started)
    return result


def messages_for(
    question: str, chunks: Sequence[SearchResult], history: Sequence[Turn], config: ChannelConfig
) -> list[dict[str, str]]:
    """What the model is asked: the channel's system prompt, the retrieved chunks, recent history."""
    recent = list(history)[-settings.HISTORY_TURNS :]
    return build_messages(system_prompt(config.persona), context_of(chunks), recent, question)


def within_budget(
    question: str, chunks: Sequence[SearchResult], history: Sequence[Turn], config: ChannelConfig
) -> tuple[list[SearchResult], list[Turn]]:
    """The chunks and recent turns that fit PROMPT_MAX_TOKENS with the question (which always stays).

    Dropped chunks are the lowest-ranked, so the recorded context is exactly what the model saw.
    """
    recent = list(history)[-settings.HISTORY_TURNS :]
    kept, recent = fit_to_budget(
        system_prompt(config.persona),
        context_of(chunks),
        recent,
        question,
        max_tokens=settings.PROMPT_MAX_TOKENS,
    )
    if len(kept) < len(chunks):
        logger.info(
            "prompt over %s tokens: %d of %d chunks kept", settings.PROMPT_MAX_TOKENS, len(kept), len(chunks)
        )
    return list(chunks[: len(kept)]), recent


def context_of(chunks: Sequence[SearchResult]) -> list[ContextChunk]:
    """Retrieved chunks as the prompt builder takes them, in rank order."""
    return [ContextChunk(title=c.document, text=c.text, source=c.source, heading=c.heading) for c in chunks]


def sources_for(text: str, chunks: Sequence[SearchResult]) -> list[SourceRef]:
    """The documents behind an answer: those cited as [n] first, then the rest retrieved."""
    cited = citation_numbers(text, len(chunks))
    order = cited + [n for n in range(1, len(chunks) + 1) if n not in cited]
    sources: list[SourceRef] = []
    seen: set[int] = set()
    for number in order:
        chunk = chunks[number - 1]
        if chunk.document_id in seen:
            continue
        seen.add(chunk.document_id)
        sources.append(
            {
                "number": number,
                "cited": number in cited,
                "document": chunk.document,
                "source": chunk.source,
                "heading": chunk.heading,
                "score": round(chunk.score, 6),
                "similarity": None if chunk.similarity is None else round(chunk.similarity, 6),
            }
        )
    return sources


def _record(
    asked: Asked,
    question: str,
    text: str,
    mode: str,
    adapter: ActiveAdapter | None,
    chunks: Sequence[SearchResult],
    result: generation.GenerationResult | None,
    clock: _Stopwatch,
) -> Answer:
    """Store the answer; no result means retrieval found nothing and nothing was generated."""
    covered = result is not None
    record = Answer.objects.create(
        platform=asked.platform,
        workspace=asked.workspace,
        channel=asked.channel,
        thread=asked.thread,
        asker=asked.asker or hash_id(asked.platform, asked.user),
        question=question,
        text=text,
        mode=mode,
        adapter_id=adapter.run_id if adapter else None,
        covered=covered,
        retrieved=[
            {
                "chunk_id": c.chunk_id,
                "document_id": c.document_id,
                "document_version": c.document_version,
                "score": round(c.score, 6),
                "similarity": None if c.similarity is None else round(c.similarity, 6),
            }
            for c in chunks
        ],
        sources=sources_for(text, chunks) if covered else [],
        context=context_items(context_of(chunks)),
        prompt_tokens=result.prompt_tokens if result else 0,
        completion_tokens=result.completion_tokens if result else 0,
        timings=clock.total(),
    )
    logger.info(
        "answer %s mode=%s adapter=%s covered=%s %s",
        record.pk,
        mode,
        adapter and adapter.name,
        covered,
        record.timings,
    )
    return record
