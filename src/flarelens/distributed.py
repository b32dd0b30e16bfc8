"""Processes under ``torchrun``: process-group set-up, devices, reductions and rank-0 checks.

One place for what every multi-process step needs (train today; predict and explain may
adopt it): :func:`process_group` joins (or stays out of) a process group from torchrun's
environment, :func:`resolve_device` turns ``--device`` into a ``torch.device`` (checking the
string and the hardware, one clear line when wrong), :func:`all_reduce` sums a tensor over
the processes, :func:`agree` makes every process take the same decision, and
:func:`gather_object` collects one Python object per process on rank 0.

A single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) needs no process group: every
function then works on the one process and returns at once.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from flarelens.errors import FlareLensError

#: ``--device`` values: auto, cpu, cuda, cuda:N, mps.
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Processes:
    """Where this process stands: its rank, the number of processes, its rank on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that writes files and logs."""
        return self.rank == 0


def check_device(pref: str) -> str:
    """``pref`` if it is a ``--device`` string flarelens understands; else one clear error.

    Only the spelling is checked (no hardware): auto, cpu, cuda, cuda:N, mps.
    """
    if not isinstance(pref, str) or not DEVICE_PATTERN.match(pref):
        raise FlareLensError(f"--device {pref}: not a device; use auto, cpu, cuda, cuda:N (N = GPU number) or mps")
    return pref


def setup(device_pref: str = "auto") -> Processes:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), or stay alone.

    NCCL when the processes use CUDA GPUs, gloo otherwise. A group that already exists
    (the caller set it up) is used as is and left to the caller.
    """
    check_device(device_pref)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Processes()
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if dist.is_initialized():
        return Processes(dist.get_rank(), dist.get_world_size(), local_rank, False)
    use_cuda = device_pref.startswith("cuda") or (device_pref == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), local_rank, True)


def teardown(procs: Processes) -> None:
    """Leave the process group if :func:`setup` created it."""
    if procs.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device_pref: str = "auto") -> Iterator[Processes]:
    """:func:`setup` for the duration of a ``with`` block, then :func:`teardown`."""
    procs = setup(device_pref)
    try:
        yield procs
    finally:
        teardown(procs)


def resolve_device(pref: str = "auto", procs: Processes | None = None) -> torch.device:
    """The ``torch.device`` of ``--device pref`` for this process.

    ``auto``: a CUDA GPU when one is visible, else the CPU. Under torchrun each process
    takes the GPU of its local rank. One clear error for a misspelt device, a GPU that is
    not there, or a GPU number past the last one.
    """
    procs = procs or Processes()
    check_device(pref)
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(pref)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FlareLensError(f"--device {pref}: no CUDA GPU is visible (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FlareLensError(f"--device {pref}: only {torch.cuda.device_count()} GPU(s) visible (cuda:0 ...)")
        if procs.world > 1 or device.index is None:
            device = torch.device("cuda", procs.local_rank if procs.world > 1 else torch.cuda.current_device())
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise FlareLensError(f"--device {pref}: Apple's MPS is not available here (use --device cpu)")
    return device


def all_reduce(values: torch.Tensor, procs: Processes) -> torch.Tensor:
    """Sum ``values`` over the processes, in place; returned for chaining."""
    if procs.world > 1:
        dist.all_reduce(values)
    return values


def agree(ok: bool, procs: Processes) -> bool:
    """True on every process when ``ok`` holds on every process (so all raise, or none)."""
    if procs.world <= 1:
        return bool(ok)
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def gather_object(obj, procs: Processes) -> list | None:
    """Every process's ``obj`` on rank 0, by rank (``None`` elsewhere and when alone)."""
    if procs.world <= 1:
        return None
    gathered = [None] * procs.world if procs.main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def barrier(procs: Processes) -> None:
    """Wait for every process (nothing to wait for when alone)."""
    if procs.world > 1:
        dist.barrier()
