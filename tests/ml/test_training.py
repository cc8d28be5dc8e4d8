import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ml import checkpoints  # noqa: E402
from ml.files import write_atomically  # noqa: E402
from ml.generation import GenerationConfig, LocalGenerator  # noqa: E402
from ml.model_files import default_base_model_path  # noqa: E402
from ml.prompting import DEFAULT_SYSTEM_PROMPT, ContextChunk, build_messages  # noqa: E402
from ml.training import (  # noqa: E402
    IGNORE_INDEX,
    CheckpointMismatch,
    Example,
    ExampleTooLong,
    Trainer,
    TrainingConfig,
    collate,
    fingerprint,
    load_lora_model,
    padding_tokens,
    plan_batches,
    tokenize_example,
    tokenize_examples,
    train_adapter,
)

# Large steps so a few of them visibly move a tiny random model; 10 examples / 4 = 3 steps a epoch.
FAST = TrainingConfig(epochs=3, batch_size=4, learning_rate=1e-2, checkpoint_every=4, max_length=512)
SYSTEM = "Answer from the documents."
TOPICS = ["holiday policy", "office hours", "password reset", "refund", "printer", "wifi", "laptop"]


def example(n: int) -> Example:
    topic = TOPICS[n % len(TOPICS)]
    chunks = [ContextChunk(title=topic.title(), text=f"The {topic} is on {'monday ' * (n % 4)}friday.")]
    return Example(
        question=f"What about the {topic}?",
        answer=f"The {topic} is on friday [1].",
        context=chunks,
        system=SYSTEM,  # short: the default would triple the tokens and the test time
    )


EXAMPLES = [example(n) for n in range(10)]


@pytest.fixture(scope="module")
def tokenizer(tiny_llm):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llm, local_files_only=True)


@pytest.fixture(scope="module")
def trained(tiny_llm, tmp_path_factory) -> SimpleNamespace:
    """One uninterrupted run, with every progress call recorded."""
    calls: list[tuple[int, int, float]] = []
    folder = tmp_path_factory.mktemp("trained") / "adapter"
    result = train_adapter(tiny_llm, EXAMPLES, folder, config=FAST, progress=lambda *call: calls.append(call))
    return SimpleNamespace(folder=folder, result=result, calls=calls)


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def test_prompt_tokens_are_masked_and_equal_what_inference_feeds_the_model(tokenizer):
    item = replace(EXAMPLES[3], system="")
    input_ids, labels = tokenize_example(tokenizer, item, max_length=512)

    messages = build_messages(DEFAULT_SYSTEM_PROMPT, item.context, [], item.question)
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]
    assert input_ids[: len(prompt)] == prompt
    assert labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert labels[len(prompt) :] == input_ids[len(prompt) :]
    assert tokenizer.decode(input_ids[len(prompt) :]) == f"{item.answer}<|im_end|>"


def test_an_examples_own_system_prompt_is_used(tokenizer):
    item = Example(question="Who?", answer="The team.", context=[], system="Answer like a pirate.")
    input_ids, labels = tokenize_example(tokenizer, item, max_length=512)
    prompt = tokenizer.decode(
        [i for i, label in zip(input_ids, labels, strict=True) if label == IGNORE_INDEX]
    )
    assert "Answer like a pirate." in prompt and DEFAULT_SYSTEM_PROMPT not in prompt


def test_too_long_context_loses_its_last_chunks_but_never_the_answer(tokenizer):
    chunks = [ContextChunk(title=f"Doc {n}", text="the office hours policy " * 30) for n in range(3)]
    item = Example(question="When is the office open?", answer="On monday [1].", context=chunks)
    one_chunk, _ = tokenize_example(tokenizer, Example(item.question, item.answer, chunks[:1]), 10_000)
    two_chunks, _ = tokenize_example(tokenizer, Example(item.question, item.answer, chunks[:2]), 10_000)

    input_ids, labels = tokenize_example(tokenizer, item, max_length=len(two_chunks))
    assert input_ids == two_chunks
    assert tokenize_example(tokenizer, item, max_length=len(two_chunks) - 1)[0] == one_chunk
    with pytest.raises(ExampleTooLong, match="with 1 context chunk"):
        tokenize_example(tokenizer, item, max_length=len(one_chunk) - 1)


def test_an_empty_answer_is_refused_with_a_reason(tokenizer):
    with pytest.raises(ValueError, match="empty answer"):
        tokenize_example(tokenizer, Example(question="Why?", answer="  ", context=[]), max_length=512)


def test_length_grouped_batches_pad_far_less_than_padding_to_the_global_longest():
    lengths = [(n * 37) % 200 + 20 for n in range(64)]
    batches = plan_batches(lengths, 8, seed=42, epoch=0)

    assert sorted(i for batch in batches for i in batch) == list(range(64))
    assert [len(batch) for batch in batches] == [8] * 8
    to_global_longest = sum(max(lengths) - length for length in lengths)
    assert padding_tokens(lengths, batches) < to_global_longest / 5
    assert plan_batches(lengths, 8, seed=42, epoch=0) == batches
    assert plan_batches(lengths, 8, seed=42, epoch=1) != batches


def test_a_batch_is_padded_to_its_own_longest_example():
    batch = collate([([5, 6, 7], [IGNORE_INDEX, 6, 7]), ([5], [5])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [5, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_training_lowers_the_loss_and_reports_every_step(trained):
    steps = [step for step, _, _ in trained.calls]
    assert steps == list(range(1, 10)) and {total for _, total, _ in trained.calls} == {9}
    losses = [loss for _, _, loss in trained.calls]
    assert sum(losses[-3:]) < sum(losses[:3])
    result = trained.result
    assert result.steps == 9 and result.resumed_from_step == 0 and result.examples == 10
    assert result.train_loss == pytest.approx(sum(losses[-3:]) / 3)
    assert result.tokens > 0 and result.tokens_per_second > 0


def test_the_adapter_folder_holds_only_safetensors_and_config(trained):
    assert sorted(p.name for p in trained.folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert [p.name for p in trained.folder.parent.iterdir()] == ["adapter"]  # no staging or work dir left


def test_the_trained_adapter_loads_for_serving_and_changes_greedy_answers(tiny_llm, trained):
    generator = LocalGenerator(tiny_llm)
    generator.ensure_adapter("trained", trained.folder)
    messages = build_messages(DEFAULT_SYSTEM_PROMPT, EXAMPLES[0].context, [], EXAMPLES[0].question)
    greedy = GenerationConfig(max_new_tokens=12, temperature=0)

    base = generator.generate(messages, config=greedy).text
    tuned = generator.generate(messages, adapter="trained", config=greedy).text
    assert tuned != base


def test_the_same_seed_trains_identical_weights(tiny_llm, trained, tmp_path):
    again = train_adapter(tiny_llm, EXAMPLES, tmp_path / "again", config=FAST)
    first, second = adapter_tensors(trained.folder), adapter_tensors(again.adapter_path)
    assert first.keys() == second.keys()
    assert all(first[name].equal(second[name]) for name in first)


def test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_with_the_same_weights(
    tiny_llm, trained, tmp_path
):
    def stop_at_step_6(step: int, total: int, loss: float) -> None:
        if step == 6:
            raise RuntimeError("worker killed")

    output = tmp_path / "adapter"
    with pytest.raises(RuntimeError, match="worker killed"):
        train_adapter(tiny_llm, EXAMPLES, output, config=FAST, progress=stop_at_step_6)
    assert not output.exists()

    calls: list[int] = []
    result = train_adapter(
        tiny_llm, EXAMPLES, output, config=FAST, progress=lambda step, *_: calls.append(step)
    )
    assert result.resumed_from_step == 4 and calls == [5, 6, 7, 8, 9]
    assert result.train_loss == pytest.approx(trained.result.train_loss)
    expected, resumed = adapter_tensors(trained.folder), adapter_tensors(output)
    assert all(resumed[name].allclose(expected[name], atol=1e-6) for name in expected)
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def new_trainer(tiny_llm: Path, tokenizer, *, seed: int) -> Trainer:
    """A CPU trainer on EXAMPLES whose fresh LoRA weights depend on `seed`."""
    import torch

    torch.manual_seed(seed)
    model, _ = load_lora_model(str(tiny_llm), FAST, "cpu")
    features, _ = tokenize_examples(tokenizer, EXAMPLES, FAST.max_length)
    run = fingerprint(str(tiny_llm), FAST, features)
    return Trainer(model, features, tokenizer.pad_token_id, FAST, "cpu", run)


def test_a_trainers_saved_and_loaded_state_continues_like_the_uninterrupted_trainer(
    tiny_llm, tokenizer, tmp_path
):
    first = new_trainer(tiny_llm, tokenizer, seed=0)
    for _ in range(4):
        first.train_step()
    saved = checkpoints.save(first.state_dict(), tmp_path / "checkpoint")
    assert sorted(p.name for p in saved.iterdir()) == ["lora.safetensors", "optimizer.pt", "state.json"]
    uninterrupted = [first.train_step() for _ in range(5)]

    second = new_trainer(tiny_llm, tokenizer, seed=1)
    state = checkpoints.load_latest(tmp_path / "checkpoint")
    assert state is not None and state["step"] == 4 and state["config"]["learning_rate"] == FAST.learning_rate
    fresh = {name: p.detach().clone() for name, p in second.trainable_parameters().items()}
    assert any(not fresh[name].equal(state["model"][name]) for name in fresh)
    with pytest.raises(CheckpointMismatch):
        second.load_state_dict({**state, "fingerprint": "another run"})
    assert second.step == 0
    assert all(p.equal(fresh[name]) for name, p in second.trainable_parameters().items())

    second.load_state_dict(state)
    assert second.step == 4 and second.losses == first.losses[:4]
    assert all(p.equal(state["model"][name]) for name, p in second.trainable_parameters().items())
    resumed = [second.train_step() for _ in range(5)]

    assert second.step == first.step == 9
    assert resumed == pytest.approx(uninterrupted, rel=1e-6)
    ours, theirs = second.optimizer.state_dict()["state"], first.optimizer.state_dict()["state"]
    assert ours.keys() == theirs.keys()
    for index in ours:
        assert ours[index]["step"] == theirs[index]["step"] == 9
        assert ours[index]["exp_avg"].allclose(theirs[index]["exp_avg"], atol=1e-7)
        assert ours[index]["exp_avg_sq"].allclose(theirs[index]["exp_avg_sq"], atol=1e-9)
    expected = first.trainable_parameters()
    assert all(p.allclose(expected[name], atol=1e-6) for name, p in second.trainable_parameters().items())


def test_the_run_fingerprint_is_the_one_older_checkpoints_were_saved_with():
    features = [([1, 2, 3], [IGNORE_INDEX, 2, 3]), ([4], [4])]
    config = TrainingConfig()
    # Computed by the release that wrote the first checkpoints: changing it orphans them.
    pinned = "eafef97db396f94e329e1331b4a583e4bde6af6aacfd8cf2269fef195152ed62"
    assert fingerprint("tiny", config, features) == pinned
    assert fingerprint("tiny", replace(config, checkpoint_every=7), features) == pinned
    assert fingerprint("tiny", replace(config, epochs=4), features) != pinned
    assert fingerprint("tiny", config, features[:1]) != pinned


def test_a_checkpoint_made_for_other_data_is_not_resumed(tiny_llm, tmp_path):
    def stop_at_step_4(step: int, total: int, loss: float) -> None:
        if step == 4:
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        train_adapter(tiny_llm, EXAMPLES, tmp_path / "adapter", config=FAST, progress=stop_at_step_4)
    result = train_adapter(tiny_llm, EXAMPLES[:8], tmp_path / "adapter", config=FAST)
    assert result.resumed_from_step == 0 and result.examples == 8


def test_an_existing_output_folder_is_refused_and_left_alone(tiny_llm, tmp_path):
    output = tmp_path / "adapter"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        train_adapter(tiny_llm, EXAMPLES, output, config=FAST)
    assert [p.name for p in output.iterdir()] == ["keep.txt"]


def test_a_failed_write_leaves_neither_the_folder_nor_its_staging(tmp_path):
    def write_then_fail(staging: Path) -> None:
        (staging / "adapter_model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path / "adapter", write_then_fail)
    assert list(tmp_path.iterdir()) == []


def test_examples_too_long_for_max_length_are_skipped_and_counted(tiny_llm, tmp_path):
    rambling = Example(question="Tell me everything.", answer="the answer is long " * 200, context=[])
    config = TrainingConfig(epochs=1, batch_size=4, max_length=512)
    result = train_adapter(tiny_llm, [*EXAMPLES[:4], rambling], tmp_path / "adapter", config=config)
    assert result.examples == 4 and result.skipped_too_long == 1 and result.steps == 1

    with pytest.raises(ValueError, match="No training examples fit"):
        train_adapter(tiny_llm, [rambling], tmp_path / "other", config=config)
    assert not (tmp_path / "other").exists()


def test_gradient_accumulation_takes_one_step_per_group_of_batches(tiny_llm, tmp_path):
    config = TrainingConfig(epochs=2, batch_size=2, gradient_accumulation=2, learning_rate=1e-2)
    result = train_adapter(tiny_llm, EXAMPLES, tmp_path / "adapter", config=config)
    assert result.steps == 6  # 5 batches an epoch -> 3 optimizer steps, twice


@pytest.mark.slow
def test_real_smollm2_trains_a_few_steps_into_a_loadable_adapter(settings, tmp_path):
    base = default_base_model_path(settings.DATA_DIR)
    config = TrainingConfig(epochs=1, batch_size=2, learning_rate=1e-3, max_length=512)
    losses: list[float] = []
    started = time.perf_counter()

    result = train_adapter(
        base, EXAMPLES[:8], tmp_path / "adapter", config=config, progress=lambda *c: losses.append(c[2])
    )

    assert result.steps == 4 and losses[-1] < losses[0]
    LocalGenerator(base).ensure_adapter("smol", result.adapter_path)
    print(f"{time.perf_counter() - started:.1f} s, {result.tokens_per_second:.0f} tokens/s, losses {losses}")


def test_importing_training_and_evaluation_loads_no_torch():
    # An RQ worker imports job modules before forking; CUDA must not be initialised by then.
    code = "import sys, ml.training, ml.evaluation; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0
