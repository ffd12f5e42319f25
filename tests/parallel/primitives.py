"""One process of a launched run: :class:`syncguide.parallel.Workers`' collectives checked against one process's
answers. Writes ``OUT.RANK`` (JSON): the checks and which items this process computed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from syncguide.errors import SettingError
from syncguide.parallel import Workers, join

if __name__ == "__main__":
    torch.set_num_threads(1)
    workers = join(torch.device("cpu"), timeout=60)
    alone = Workers()
    computed: dict[str, list[int]] = {}
    stack = torch.arange(40 * 3, dtype=torch.float32).reshape(40, 3)
    checks = {}
    for n_items, per in ((13, 3), (2, 20), (1, 40), (0, 1)):  # more items than processes, fewer, one, none
        items = [slice(k * per, (k + 1) * per) for k in range(n_items)]

        mine = computed.setdefault(str(n_items), [])

        def fn(k: int, items: list = items, mine: list = mine) -> torch.Tensor:
            mine.append(k)
            return stack[items[k]] * 2 + k

        got = workers.map_rows(fn, items, stack.clone())
        want = alone.map_rows(lambda k, items=items: stack[items[k]] * 2 + k, items, stack.clone())
        checks[f"map_rows {n_items}x{per}"] = torch.equal(got, want)
    rows = [torch.tensor([5, 1, 7]), torch.tensor([0]), torch.tensor([39, 38])]  # index rows, uneven, unordered
    got = workers.map_rows(lambda k: -stack[rows[k]], rows, stack.clone())
    checks["map_rows index rows"] = torch.equal(got, alone.map_rows(lambda k: -stack[rows[k]], rows, stack.clone()))
    image = workers.broadcast(workers.size - 1, lambda: torch.full((2, 3, 4, 5), 7.0, dtype=torch.float16))
    checks["broadcast"] = image.dtype == torch.float16 and image.shape == (2, 3, 4, 5) and bool((image == 7).all())
    workers.check_same({"prompt": b"same", "seed": b"same"})
    try:
        workers.check_same({"prompt": b"same", "seed": str(workers.rank == 1).encode()})
        checks["mismatch"] = False
    except SettingError as error:
        checks["mismatch"] = error.setting == "parallel" and "process 1 was given another seed" in error.rule
    out = {"rank": workers.rank, "size": workers.size, "checks": checks, "computed": computed}
    Path(f"{sys.argv[1]}.{os.environ['RANK']}").write_text(json.dumps(out))
