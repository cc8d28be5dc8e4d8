"""Tiny random models for tests: a ChatML tokenizer trained offline, a 2-layer Llama, LoRA adapters.

Everything is built from code in well under a second, so tests exercise the real transformers and
peft code paths (chat template, generate, load_adapter) with no download and no real weights.
Plain functions, no fixtures: test modules wrap them in their own (session-scoped) fixtures.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_WORDS = (
    "the a an of to in and or is are was be it that this for on with as by at from you we they "
    "answer question document documents source sources team channel slack discord bot adapter "
    "model base training pair approve reject vote thumbs up down release deploy server database "
    "vector search chunk title heading holiday policy office hours support ticket invoice refund "
    "password reset account login email calendar meeting manager engineer laptop printer wifi "
    "system user assistant please thanks yes no not cannot cover knowledge base cite number one "
    "two three four five monday tuesday wednesday thursday friday weekend morning evening day week"
).split()
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_corpus() -> list[str]:
    """A few hundred deterministic words in short sentences, enough to train a small BPE."""
    words = _WORDS
    return [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(12)) + "." for i in range(60)]


def build_tiny_tokenizer():
    """A byte-level BPE (any text round-trips) with ChatML special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tiny_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_model(folder: Path, *, seed: int = 0) -> Path:
    """A random 2-layer Llama with the tiny tokenizer, saved as safetensors in `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_adapter(base_folder: Path, folder: Path, *, seed: int = 1, rank: int = 4) -> Path:
    """A random LoRA adapter for the tiny model, saved as adapter_model.safetensors in `folder`.

    Both LoRA matrices are random (init_lora_weights=False), so the adapter changes the outputs.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_folder, local_files_only=True)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LORA_TARGETS, init_lora_weights=False)
    torch.manual_seed(seed)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(folder)
    return folder


def pickle_adapter_copy(adapter_folder: Path, folder: Path) -> Path:
    """The same adapter with its weights as pickle `adapter_model.bin` only (to be refused)."""
    import shutil

    import torch
    from safetensors.torch import load_file

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(adapter_folder / "adapter_config.json", folder / "adapter_config.json")
    torch.save(load_file(adapter_folder / "adapter_model.safetensors"), folder / "adapter_model.bin")
    return folder
