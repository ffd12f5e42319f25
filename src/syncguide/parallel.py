"""Window parallelism: one panorama's windows shared among the processes of a ``torch.distributed`` run.

Every process holds the model and the whole (small) window stack. Each expensive phase of a step (the model
calls of the denoising pass, SyncDiffusion's gradient passes, SDG's gradient passes) is a list of *batches*,
the same batches a single process would run, in the same order. The batches are split among the processes in
contiguous, balanced shares (by count; a process may hold none on a tiny canvas), each process computes its
share, and the results are all-gathered, so that every process ends the phase with the whole result. The cheap
rest of a step (the scheduler update, the fusion of the windows into the canvas, bootstrapping) is computed by
every process on identical tensors. SyncDiffusion's anchor image is computed once, by the process that owns the
anchor window, and broadcast.

This is what makes the result *exact*: every batch sees the same inputs with the same shapes as in a single
process, and the gathered results are copies, never sums, so the fused canvas is summed in window order exactly
as one process sums it, and an N-process run gives the same bits as a 1-process run (on the same kind of
device). The price is communication of the window stack (all-gather) instead of the canvas (all-reduce): see
BENCHMARKS.md for the volumes and the GPU scaling model.

The processes are torch.distributed's default group, started by ``accelerate launch`` (or torchrun):
:func:`join` initialises it through accelerate (NCCL on CUDA, gloo on CPU) when it is not already.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from syncguide.errors import ParallelError, SettingError

Rows = slice | torch.Tensor
"""Rows of the window stack: a slice or an index tensor."""

_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass(frozen=True)
class Workers:
    """The processes sharing one run's windows: this one is ``rank`` of ``size``; collectives' tensors live on
    ``device``. ``Workers()`` is one process that runs everything itself (no collective is ever called)."""

    rank: int = 0
    size: int = 1
    device: torch.device | None = None

    @property
    def main(self) -> bool:
        """True on the process that reports and writes (rank 0)."""
        return self.rank == 0

    def share(self, n: int, rank: int | None = None) -> range:
        """The items of ``range(n)`` that ``rank`` (default: this process) computes: a contiguous share, sizes
        differing by at most one, empty where ``n`` < size."""
        r = self.rank if rank is None else rank
        return range(r * n // self.size, (r + 1) * n // self.size)

    def owner(self, item: int, n: int) -> int:
        """The rank whose share of ``range(n)`` holds ``item``."""
        return next(r for r in range(self.size) if item in self.share(n, r))

    def map_rows(self, fn: Callable[[int], torch.Tensor], items: Sequence[Rows], out: torch.Tensor) -> torch.Tensor:
        """``out`` with rows ``items[k]`` replaced by ``fn(k)`` for every k (rows not in any item keep their value).

        ``fn(k)`` ``(len(items[k]), *out.shape[1:])`` is called only for this process's share of the items; the
        results are all-gathered, so every process returns the same ``out`` (in ``out``'s dtype).
        """
        mine = self.share(len(items))
        values = [fn(k).to(out.dtype) for k in mine]
        if self.size == 1:
            for k, value in zip(mine, values, strict=True):
                out[items[k]] = value
            return out
        counts = [_count(item, out.shape[0]) for item in items]
        totals = [sum(counts[k] for k in self.share(len(items), r)) for r in range(self.size)]
        buffer = out.new_zeros((max(totals), *out.shape[1:]))
        if values:
            buffer[: totals[self.rank]] = torch.cat(values)
        gathered = [torch.empty_like(buffer) for _ in range(self.size)]
        with self._collective("gathering the windows' results"):
            dist.all_gather(gathered, buffer)
        for r, part in enumerate(gathered):
            offset = 0
            for k in self.share(len(items), r):
                out[items[k]] = part[offset : offset + counts[k]]
                offset += counts[k]
        return out

    def broadcast(self, owner: int, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``fn()`` computed on ``owner`` only and sent to every process (shape and dtype included)."""
        if self.size == 1:
            return fn()
        header = torch.zeros(10, dtype=torch.long, device=self.device)
        value = None
        if self.rank == owner:
            value = fn().contiguous()
            header[0], header[1] = _DTYPES.index(value.dtype), value.dim()
            header[2 : 2 + value.dim()] = torch.tensor(value.shape)
        with self._collective("sharing the anchor image"):
            dist.broadcast(header, owner)
            if value is None:
                shape = header[2 : 2 + int(header[1])].tolist()
                value = torch.empty(shape, dtype=_DTYPES[int(header[0])], device=self.device)
            dist.broadcast(value, owner)
        return value

    def check_same(self, parts: Mapping[str, bytes]) -> None:
        """SettingError (``parallel``) naming the first part (``prompt``, ``settings``, ...) in which some process
        differs from process 0: every process must run the same call."""
        if self.size == 1:
            return
        digest = torch.tensor(
            [list(hashlib.sha256(value).digest()[:8]) for value in parts.values()], dtype=torch.long, device=self.device
        )
        gathered = [torch.empty_like(digest) for _ in range(self.size)]
        with self._collective("comparing the processes' arguments"):
            dist.all_gather(gathered, digest)
        for r, other in enumerate(gathered[1:], start=1):
            for name, same in zip(parts, (other == gathered[0]).all(1).tolist(), strict=True):
                if not same:
                    raise SettingError(
                        "parallel",
                        f"process {r} was given another {name} than process 0: every process must run the same"
                        " prompt, size, seed, settings and model",
                    )

    def barrier(self) -> None:
        """Wait for every process (ParallelError if one has stopped)."""
        if self.size > 1:
            with self._collective("waiting for the other processes"):
                dist.barrier()

    @contextlib.contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        try:
            yield
        except RuntimeError as error:  # gloo / NCCL: a peer closed its connection, or the group's timeout passed
            detail = (str(error).strip().splitlines() or ["no detail"])[0][:200]
            raise ParallelError(
                f"window parallelism: process {self.rank} of {self.size} lost the run while {what}: another process"
                f" stopped or did not answer within the timeout ({detail})"
            ) from None


def _count(rows: Rows, n: int) -> int:
    return len(range(n)[rows]) if isinstance(rows, slice) else int(rows.numel())


def join(device: torch.device | None = None, timeout: float | None = None) -> Workers:
    """This process's place among the processes of the launched run (``accelerate launch``, torchrun).

    Initialises torch.distributed's default group through accelerate's ``PartialState`` from the launcher's
    environment when it is not yet (gloo on CPU, NCCL on CUDA; ``timeout`` seconds for every collective, default
    torch's); one process (``Workers()``) when nothing launched several. ``device``: where the collectives'
    tensors live (this process's model device; None: the launcher's, ``cuda:LOCAL_RANK`` with CUDA, else the CPU).
    """
    from accelerate import PartialState  # deferred: importing accelerate is slow

    kwargs = {} if timeout is None else {"timeout": timedelta(seconds=timeout)}
    state = PartialState(cpu=not torch.cuda.is_available() or (device is not None and device.type == "cpu"), **kwargs)
    device = state.device if device is None else device
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return Workers(device=device)
    _close_at_exit()
    return Workers(dist.get_rank(), dist.get_world_size(), device)


@functools.cache
def _close_at_exit() -> None:
    """Destroy the process group when the interpreter exits (once): left to the interpreter's teardown, gloo's
    threads can abort the process ("terminate called without an active exception") after the run succeeded."""
    atexit.register(lambda: dist.destroy_process_group() if dist.is_initialized() else None)


def tensor_bytes(*tensors: torch.Tensor | None) -> bytes:
    """The exact bytes of ``tensors`` (shape and dtype included), for :meth:`Workers.check_same`."""
    parts = []
    for t in tensors:
        if t is not None:
            head = f"{tuple(t.shape)}{t.dtype}".encode()
            parts.append(head + t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return b"|".join(parts)
