"""Context-aware decoding in the local generator: the contrast of the next-token logits with and
without the documents, checked against a hand computation on a tiny random model."""

import os
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ml.generation import GenerationConfig, LocalGenerator, clean_reply  # noqa: E402
from ml.prompting import DEFAULT_SYSTEM_PROMPT, ContextChunk, build_messages  # noqa: E402
from tests.tiny_models import build_tiny_adapter, build_tiny_model  # noqa: E402

CHUNK = ContextChunk(title="Handbook", text="The office opens at nine in the morning on monday.")
QUESTION = "When does the office open?"
TOKENS = 8


def plain_greedy(alpha: float = 0.0) -> GenerationConfig:
    return GenerationConfig(
        max_new_tokens=TOKENS, temperature=0, repetition_penalty=1.0, context_contrast=alpha
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("tiny-contrast")
    base = build_tiny_model(root / "base")
    return SimpleNamespace(base=base, adapter=build_tiny_adapter(base, root / "adapter", seed=3))


@pytest.fixture(scope="module")
def generator(tiny) -> LocalGenerator:
    local = LocalGenerator(tiny.base)
    local.ensure_adapter("a", tiny.adapter)
    return local


@pytest.fixture
def turn() -> SimpleNamespace:
    return SimpleNamespace(
        messages=build_messages(DEFAULT_SYSTEM_PROMPT, [CHUNK], [], QUESTION),
        plain=build_messages(DEFAULT_SYSTEM_PROMPT, [], [], QUESTION),
    )


def prompt_ids(generator: LocalGenerator, messages: list[dict]) -> list[int]:
    encoded = generator.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    return list(encoded["input_ids"])


def contrasted_by_hand(generator: LocalGenerator, turn, alpha: float, adapter: str | None = None) -> str:
    """Greedy decoding re-running both whole prompts each step (no cache), contrasted by hand."""
    import torch

    tokenizer = generator.tokenizer
    ids = [prompt_ids(generator, m) for m in (turn.messages, turn.plain)]
    chosen: list[int] = []
    with generator._lock, generator._serving(adapter) as model, torch.no_grad():
        for _ in range(TOKENS):
            with_docs, without = (
                model(input_ids=torch.tensor([prompt + chosen])).logits[0, -1] for prompt in ids
            )
            token = int(torch.argmax((1 + alpha) * with_docs - alpha * without))
            chosen.append(token)
            if token in generator._stop_ids:
                break
    return clean_reply(tokenizer.decode(chosen, skip_special_tokens=True))


def test_no_contrast_gives_exactly_the_plain_output(generator, turn):
    plain = generator.generate(turn.messages, config=plain_greedy())

    off = generator.generate(turn.messages, config=plain_greedy(0.0), contrast_messages=turn.plain)

    assert (off.text, off.prompt_tokens, off.completion_tokens) == (
        plain.text,
        plain.prompt_tokens,
        plain.completion_tokens,
    )


def test_contrast_without_plain_messages_is_plain_decoding(generator, turn):
    plain = generator.generate(turn.messages, config=plain_greedy())

    assert generator.generate(turn.messages, config=plain_greedy(1.0)).text == plain.text


@pytest.mark.parametrize("adapter", [None, "a"])
def test_each_token_is_the_argmax_of_the_contrasted_logits(generator, turn, adapter):
    alpha = 2.0

    result = generator.generate(
        turn.messages, adapter=adapter, config=plain_greedy(alpha), contrast_messages=turn.plain
    )

    assert result.text == contrasted_by_hand(generator, turn, alpha, adapter)
    assert result.text != generator.generate(turn.messages, adapter=adapter, config=plain_greedy()).text


def test_streamed_contrast_joins_to_the_generated_text(generator, turn):
    config = plain_greedy(1.5)
    whole = generator.generate(turn.messages, config=config, contrast_messages=turn.plain)
    finished = []

    deltas = list(
        generator.stream(
            turn.messages, config=config, on_finish=finished.append, contrast_messages=turn.plain
        )
    )

    assert "".join(deltas) == whole.text
    assert finished[0].completion_tokens == whole.completion_tokens


def test_sampling_with_contrast_respects_max_new_tokens(generator, turn):
    config = GenerationConfig(max_new_tokens=6, temperature=0.8, context_contrast=1.0)

    result = generator.generate(turn.messages, config=config, contrast_messages=turn.plain)

    assert 1 <= result.completion_tokens <= 6


def test_the_plain_prompt_is_prefilled_once_then_one_token_per_step(generator, turn):
    """Cached: two prefills (with and without documents), then one-token forwards, two per step."""
    lengths: list[int] = []

    def record(module, args, kwargs):
        lengths.append(int(kwargs["input_ids"].shape[1]))

    hook = generator.model.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        result = generator.generate(turn.messages, config=plain_greedy(1.0), contrast_messages=turn.plain)
    finally:
        hook.remove()

    plain_prompt = len(prompt_ids(generator, turn.plain))
    assert sorted(n for n in lengths if n > 1) == sorted([plain_prompt, result.prompt_tokens])
    assert len(lengths) == 2 * result.completion_tokens
    assert lengths.count(1) == 2 * (result.completion_tokens - 1)


def test_out_of_range_contrast_is_refused():
    with pytest.raises(ValueError, match="context_contrast must be between 0"):
        GenerationConfig(context_contrast=-0.5)
