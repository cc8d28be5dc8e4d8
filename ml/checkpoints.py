"""Training checkpoints on disk: a trainer's state dict (ml.training.Trainer.state_dict) written
whole or not at all as folder/step-N, and read back. This module only moves dicts to and from
files; what the state means, and whether a checkpoint belongs to a run, is the trainer's business.

A checkpoint folder holds `lora.safetensors` (the LoRA weights), `optimizer.pt` (optimizer,
scheduler, torch and CUDA RNG states; tensors only, read with weights_only=True) and `state.json`
(fingerprint, step, losses, Python and NumPy RNG states, config). torch is imported inside
functions, like ml.training, so importing this never touches CUDA.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, TypedDict

from ml.files import write_atomically

LORA_FILE, TORCH_FILE, STATE_FILE = "lora.safetensors", "optimizer.pt", "state.json"


class RngState(TypedDict):
    """Every random generator training draws from, as their own get_state functions return them."""

    python: tuple[Any, ...]  # random.getstate()
    numpy: tuple[Any, ...] | dict[str, Any]  # numpy.random.get_state()
    torch: Any  # torch.get_rng_state(): a uint8 tensor
    cuda: list[Any]  # torch.cuda.get_rng_state_all(), [] on a CPU


class TrainerState(TypedDict):
    """A trainer's whole state, nanoGPT-style: resuming from it ends with the same weights."""

    model: dict[str, Any]  # trainable (LoRA) parameter name -> tensor
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    step: int  # optimizer steps taken
    losses: list[float]  # one per step
    rng: RngState
    config: dict[str, Any]  # the TrainingConfig, for whoever reads the checkpoint
    fingerprint: str  # the run it belongs to (ml.training.fingerprint)


def saved_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in `folder`, oldest first (each one was renamed into place whole)."""
    return sorted(folder.glob("step-*")) if folder.is_dir() else []


def save(state: TrainerState, folder: Path) -> Path:
    """Write `state` as folder/step-N (whole or not at all), drop older ones, return the new one."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    rng = state["rng"]
    numpy_rng = [x.tolist() if isinstance(x, np.ndarray) else x for x in rng["numpy"]]
    plain = {
        "fingerprint": state["fingerprint"],
        "step": state["step"],
        "losses": state["losses"],
        "python_rng": rng["python"],
        "numpy_rng": numpy_rng,
        "config": state["config"],
    }
    tensors = {
        "optimizer": state["optimizer"],
        "scheduler": state["scheduler"],
        "torch_rng": rng["torch"],
        "cuda_rng": rng["cuda"],
    }

    def write(staging: Path) -> None:
        weights = {name: tensor.detach().cpu().contiguous() for name, tensor in state["model"].items()}
        save_file(weights, staging / LORA_FILE)
        torch.save(tensors, staging / TORCH_FILE)
        (staging / STATE_FILE).write_text(json.dumps(plain))

    latest = folder / f"step-{state['step']:08d}"
    write_atomically(latest, write)
    for older in [*saved_checkpoints(folder), *folder.glob(".step-*")]:  # and crashed stagings
        if older != latest:
            shutil.rmtree(older, ignore_errors=True)
    return latest


def load_latest(folder: Path) -> TrainerState | None:
    """The newest checkpoint in `folder` as a state dict (tensors on the CPU), or None if none."""
    saved = saved_checkpoints(folder)
    return load(saved[-1]) if saved else None


def load(checkpoint: Path) -> TrainerState:
    """One checkpoint folder written by save(), as the state dict it was saved from."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    plain = json.loads((checkpoint / STATE_FILE).read_text())
    tensors = torch.load(checkpoint / TORCH_FILE, map_location="cpu", weights_only=True)
    version, internal, gauss = plain["python_rng"]
    name, keys, pos, has_gauss, cached = plain["numpy_rng"]
    rng = RngState(
        python=(version, tuple(internal), gauss),
        numpy=(name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached),
        torch=tensors["torch_rng"],
        cuda=tensors["cuda_rng"],
    )
    return TrainerState(
        model=load_file(checkpoint / LORA_FILE),
        optimizer=tensors["optimizer"],
        scheduler=tensors["scheduler"],
        step=plain["step"],
        losses=plain["losses"],
        rng=rng,
        config=plain.get("config", {}),  # checkpoints written before it was saved have none
        fingerprint=plain["fingerprint"],
    )


def discard(folder: Path) -> None:
    """Delete every checkpoint in `folder` (and the folder)."""
    shutil.rmtree(folder, ignore_errors=True)
