"""One process of a launched run: the syncguide command lines of a JSON file, one after another, in this process.

``python runs.py CASES.json STATUS`` (launched N times as torchrun / ``accelerate launch`` would) runs every case,
``case`` or ``{rank: case}`` (each rank its own arguments), through ``syncguide.cli.main.main`` and writes
``STATUS.RANK``: each case's exit status, and how many model calls and PNG writes this process made.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from syncguide.cli import panorama
from syncguide.cli.main import main
from syncguide.sampling.denoiser import WindowDenoiser

COUNTS = {"predict": 0, "save": 0}


def counted(name: str, fn):
    def wrapper(*args, **kwargs):
        COUNTS[name] += 1
        return fn(*args, **kwargs)

    return wrapper


if __name__ == "__main__":
    torch.set_num_threads(1)
    WindowDenoiser.predict = counted("predict", WindowDenoiser.predict)
    panorama.save_png = counted("save", panorama.save_png)
    rank = os.environ.get("RANK", "0")
    results = []
    for case in json.loads(Path(sys.argv[1]).read_text()):
        COUNTS.update(predict=0, save=0)
        status = main(case[rank] if isinstance(case, dict) else case)
        print("case done", file=sys.stderr, flush=True)
        results.append({"status": status, **COUNTS})
    Path(f"{sys.argv[2]}.{rank}").write_text(json.dumps(results))
