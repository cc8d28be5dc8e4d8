"""Training checkpoints: LoRA weights, optimizer, scheduler, RNG states and step, written whole
or not at all, so a retried run resumes and ends with the weights of an uninterrupted one.

torch is imported inside functions, like ml.training, so importing this never touches CUDA.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def fingerprint(settings: Any, features: Sequence[tuple[list[int], list[int]]]) -> str:
    """What a checkpoint must match to be resumed: the run's settings (base model, training
    settings but the checkpoint cadence) and its data (input ids and labels)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for ids, labels in features:
        digest.update(json.dumps([ids, labels]).encode())
    return digest.hexdigest()


def write_atomically(folder: Path, write: Callable[[Path], None]) -> None:
    """Call write(staging) on a hidden sibling of `folder`, then rename it to `folder`."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        write(staging)
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def saved_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in `folder`, oldest first (each one was renamed into place whole)."""
    return sorted(folder.glob("step-*")) if folder.is_dir() else []


def save(trainer: Any, folder: Path, fingerprint: str) -> None:
    """Write the trainer's state as folder/step-N (whole or not at all) and drop older ones."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    names = trainer.trainable_parameters()
    state = {
        "fingerprint": fingerprint,
        "step": trainer.step,
        "losses": trainer.losses,
        "python_rng": random.getstate(),
        "numpy_rng": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
    }
    torch_state = {
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if trainer.device.startswith("cuda") else [],
    }

    def write(staging: Path) -> None:
        save_file({n: p.detach().cpu().contiguous() for n, p in names.items()}, staging / "lora.safetensors")
        torch.save(torch_state, staging / "optimizer.pt")
        (staging / "state.json").write_text(json.dumps(state))

    latest = folder / f"step-{trainer.step:08d}"
    write_atomically(latest, write)
    for older in [*saved_checkpoints(folder), *folder.glob(".step-*")]:  # and crashed stagings
        if older != latest:
            shutil.rmtree(older, ignore_errors=True)


def load(trainer: Any, folder: Path, fingerprint: str) -> bool:
    """Restore the latest checkpoint in `folder`; False (nothing changed) if none is for this run."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    saved = saved_checkpoints(folder)
    if not saved:
        return False
    state = json.loads((saved[-1] / "state.json").read_text())
    if state["fingerprint"] != fingerprint:
        logger.warning("Discarding checkpoints in %s: they were made for other data or settings", folder)
        shutil.rmtree(folder, ignore_errors=True)
        return False
    folder = saved[-1]
    weights = load_file(folder / "lora.safetensors")
    with torch.no_grad():
        for name, param in trainer.trainable_parameters().items():
            param.copy_(weights[name])
    torch_state = torch.load(folder / "optimizer.pt", map_location=trainer.device, weights_only=True)
    trainer.optimizer.load_state_dict(torch_state["optimizer"])
    trainer.scheduler.load_state_dict(torch_state["scheduler"])
    torch.set_rng_state(torch_state["torch_rng"].cpu())
    if torch_state["cuda_rng"]:
        torch.cuda.set_rng_state_all([s.cpu() for s in torch_state["cuda_rng"]])
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    trainer.step, trainer.losses = state["step"], state["losses"]
    return True
