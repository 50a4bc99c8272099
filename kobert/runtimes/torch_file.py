"""Pickled PyTorch state dicts (`.bin` and legacy files): torch's `weights_only` unpickler, the one safe
reader of that format. `kobert.checkpoint` reaches it by name (`registry.TORCH_FILE_READER`), so the hub
imports no framework.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kobert.canonical import CheckpointError


def read_torch_file(path: Path) -> dict[str, np.ndarray]:
    """A state dict from a torch file, loaded with `weights_only=True` (no code is unpickled)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch state dict (truncated, corrupt or unsafe pickle?): {first_line}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict)")
    return {name: t.detach().float().numpy() if t.is_floating_point() else t.numpy() for name, t in state.items()}
