"""Manifests split across processes: disjoint shares, atomic no-clobber writes, resume after a kill."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from syncguide.atomic import write_atomic
from syncguide.errors import UsageError
from syncguide.scaleout import Item, pending, read_manifest, run_items, shard, write_manifest


def _items(n: int) -> list[Item]:
    return [Item(f"out/{i:02d}.png", "panorama", ("a photo", "--seed", str(i))) for i in range(n)]


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_are_disjoint_and_cover_the_manifest(count: int) -> None:
    items = _items(11)
    shares = [shard(items, index, count) for index in range(count)]
    outputs = [item.output for share in shares for item in share]
    assert sorted(outputs) == sorted(item.output for item in items)
    assert len(outputs) == len(set(outputs))


def test_manifest_round_trip_and_refuses_a_different_one(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    write_manifest(_items(3), path)
    assert read_manifest(path) == _items(3)
    write_manifest(_items(3), path)  # the same manifest again: fine (a rerun)
    with pytest.raises(UsageError, match="different manifest"):
        write_manifest(_items(4), path)
    with pytest.raises(UsageError, match="unique"):
        write_manifest([*_items(2), *_items(1)], tmp_path / "other.jsonl")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UsageError, match="MANIFEST"):
        read_manifest(tmp_path / "bad.jsonl")


def test_write_atomic_never_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "x.bin"
    assert write_atomic(path, b"first")
    assert not write_atomic(path, b"second")
    assert path.read_bytes() == b"first"
    assert write_atomic(path, b"third", overwrite=True)
    assert path.read_bytes() == b"third"
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.bin"]


class _State:
    def __init__(self, index: int, count: int) -> None:
        self.process_index, self.num_processes = index, count

    def wait_for_everyone(self) -> None:
        pass


def test_run_items_skips_finished_items(tmp_path: Path) -> None:
    items = _items(6)
    write_atomic(tmp_path / items[2].output, b"done before")
    calls: list[str] = []

    def work(item: Item, path: Path) -> bool:
        calls.append(item.output)
        return write_atomic(path, item.output.encode())

    written = run_items(items, tmp_path, work, _State(0, 2))
    assert written == calls == [items[0].output, items[4].output]  # share 0 of 2, minus the finished item 2
    assert (tmp_path / items[2].output).read_bytes() == b"done before"
    assert [i.output for i in pending(items, tmp_path)] == [items[1].output, items[3].output, items[5].output]


def _kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process under it (torchrun starts its workers in their own sessions)."""
    parent = psutil.Process(pid)
    for process in [*parent.children(recursive=True), parent]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)


def _stamps(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.glob("*.png")}


def test_batch_under_accelerate_is_split_and_resumes_after_a_kill(
    tmp_path: Path, tiny_dir: Path, accelerate_launch
) -> None:
    """Two CPU processes; the first run is killed after its first file; the rerun finishes the rest, each item
    written exactly once (files from before the kill untouched), by the process that owns it."""
    items = [
        Item(
            f"p/{i:02d}.png",
            "panorama",
            ("a photo", "--seed", str(i), "--model", str(tiny_dir), "--method", "multidiffusion", "--steps", "3",
             "--width", "128", "--device", "cpu"),
        )
        for i in range(12)
    ]  # fmt: skip
    write_manifest(items, tmp_path / "m.jsonl")
    args = ["batch", "m.jsonl", "--out", "out"]
    first = accelerate_launch(args, tmp_path)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out" / "p").glob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.02)
    _kill_tree(first.pid)
    first.communicate()
    before = _stamps(tmp_path / "out" / "p")
    assert 1 <= len(before) < len(items), "the kill must interrupt the run"

    second = accelerate_launch(args, tmp_path)
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr[-2000:]
    reports = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert sorted(r["process"] for r in reports) == [0, 1] and {r["processes"] for r in reports} == {2}
    written = [name for r in reports for name in r["written"]]
    assert len(written) == len(set(written))
    assert sorted(written + [f"p/{name}" for name in before]) == sorted(i.output for i in items)
    for r in reports:  # each process wrote only its own share
        assert set(r["written"]) <= {i.output for i in shard(items, r["process"], 2)}
    after = _stamps(tmp_path / "out" / "p")
    assert {name: after[name] for name in before} == before
    assert not [p for p in (tmp_path / "out" / "p").iterdir() if p.suffix != ".png" and "tmp" not in p.name]
