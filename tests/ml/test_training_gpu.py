"""The GPU training path: bf16 weights, SDPA attention, CUDA checkpoints. Skipped without CUDA.

The same loop runs on the CPU in test_training.py; these check what only a GPU exercises.
"""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ml.generation import GenerationConfig, LocalGenerator  # noqa: E402
from ml.training import TrainingConfig, load_lora_model, train_adapter  # noqa: E402
from tests.ml.test_training import EXAMPLES, FAST, adapter_tensors  # noqa: E402

pytestmark = pytest.mark.gpu


def test_the_base_model_loads_in_bf16_with_sdpa_and_the_lora_weights_train_in_fp32(tiny_llm):
    import torch

    model, _ = load_lora_model(str(tiny_llm), TrainingConfig(), "cuda")
    frozen = [p for p in model.parameters() if not p.requires_grad]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.is_cuda and p.dtype == torch.float32 for p in trainable)
    assert all(p.dtype == torch.bfloat16 for p in frozen)
    assert model.base_model.model.config._attn_implementation == "sdpa"


def test_training_on_the_gpu_lowers_the_loss_and_writes_a_servable_adapter(tiny_llm, tmp_path):
    calls = []
    result = train_adapter(
        tiny_llm,
        EXAMPLES,
        tmp_path / "adapter",
        config=FAST,
        device="cuda",
        progress=lambda *c: calls.append(c),
    )
    losses = [loss for _, _, loss in calls]
    assert result.steps == len(calls) == 9 and losses[-1] < losses[0]
    tensors = adapter_tensors(result.adapter_path)
    assert tensors and all(t.device.type == "cpu" for t in tensors.values())
    generator = LocalGenerator(tiny_llm, device="cuda")
    generator.ensure_adapter("gpu", result.adapter_path)
    answer = generator.generate(
        [{"role": "user", "content": "What about the refund?"}],
        adapter="gpu",
        config=GenerationConfig(max_new_tokens=4, temperature=0),
    )
    assert answer.completion_tokens > 0


def test_a_run_interrupted_on_the_gpu_resumes_from_its_checkpoint(tiny_llm, tmp_path):
    def stop_at_step_6(step: int, total: int, loss: float) -> None:
        if step == 6:
            raise RuntimeError("worker killed")

    output = tmp_path / "adapter"
    with pytest.raises(RuntimeError, match="worker killed"):
        train_adapter(tiny_llm, EXAMPLES, output, config=FAST, device="cuda", progress=stop_at_step_6)
    result = train_adapter(tiny_llm, EXAMPLES, output, config=FAST, device="cuda")
    uninterrupted = train_adapter(tiny_llm, EXAMPLES, tmp_path / "straight", config=FAST, device="cuda")
    assert result.resumed_from_step == 4
    resumed, expected = adapter_tensors(output), adapter_tensors(uninterrupted.adapter_path)
    # bf16 matmuls on a GPU are not bit-for-bit repeatable across runs; close is what resuming owes.
    assert all(resumed[name].allclose(expected[name], atol=1e-3, rtol=1e-2) for name in expected)
