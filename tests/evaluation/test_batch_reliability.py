"""``batch`` and ``reproduce`` on bad input: one line naming MANIFEST:LINE or the option, exit status 2, nothing
written, everything checked before the first item runs; interrupts leave no partial file and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from syncguide.cli import batch
from syncguide.cli.main import main
from syncguide.scaleout import read_manifest

TINY = "{tiny}"
"""Replaced by the tiny model's directory in the manifests below."""


def _args(*extra: str, steps: str = "1") -> list[str]:
    """A fast, valid panorama item (the tiny model, MultiDiffusion), then ``extra``."""
    base = ["a photo", "--model", TINY, "--steps", steps, "--width", "128", "--method", "multidiffusion"]
    return [*base, "--device", "cpu", *extra]


def _item(output: object = "x.png", *extra: str, **fields: object) -> dict:
    return {"output": output, "command": "panorama", "args": _args(*extra), **fields}


def _write(path: Path, lines: list, tiny: Path) -> Path:
    """A manifest of ``lines`` (dicts and lists become JSON, str and bytes are written as they are)."""
    chunks = []
    for line in lines:
        raw = line if isinstance(line, bytes | str) else json.dumps(line, ensure_ascii=False)
        chunks.append(raw if isinstance(raw, bytes) else raw.replace(TINY, str(tiny)).encode())
    path.write_bytes(b"\n".join(chunks) + b"\n")
    return path


def _snapshot(directory: Path) -> dict[str, tuple[int, int]] | None:
    if not directory.exists():
        return None
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.rglob("*")}


def _refused(argv: list[str], capsys, command: str = "batch") -> str:
    """Run ``argv``: exit status 2 and exactly one line on stderr, ``syncguide CMD: error: ...``; that line."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"syncguide {command}: error: "), lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0].removeprefix(f"syncguide {command}: error: ")


BAD_LINES = {
    "output a number": ([_item(3)], "MANIFEST:1: output must be a string; got 3"),
    "output null": ([_item(None)], "MANIFEST:1: output must be a string; got null"),
    "output missing": ([{"command": "panorama", "args": ["a"]}], "MANIFEST:1: output is missing"),
    "a number in args": ([{"output": "x.png", "command": "panorama", "args": ["a", 5]}], "MANIFEST:1: args[1] must"),
    "args a string": ([{"output": "x.png", "command": "panorama", "args": "a"}], "MANIFEST:1: args must be a list"),
    "meta not an object": ([_item(meta=[1])], "MANIFEST:1: meta must be a JSON object"),
    "a misspelt key": ([{"ouput": "x.png", "command": "panorama"}], "MANIFEST:1: unknown key 'ouput'"),
    "an array line": ([_item("a.png"), [1, 2]], "MANIFEST:2: must be a JSON object {output, command, args}; got an"),
    "a string line": (['"x.png"'], "MANIFEST:1: must be a JSON object {output, command, args}; got a string"),
    "not JSON": ([_item("a.png"), "", "{oops"], "MANIFEST:3: not JSON"),
    "invalid UTF-8": ([_item("a.png"), b'{"output": "\xff.png"}'], "MANIFEST:2: not valid UTF-8"),
    "an unknown command": ([{"output": "x.png", "command": "generate"}], "MANIFEST:1: command must be one of"),
    "an absolute output": ([_item("/tmp/x.png")], "MANIFEST:1: output must be a relative .png path"),
    "an output escaping --out": ([_item("a/../../x.png")], "MANIFEST:1: output must be a relative .png path"),
    "not a PNG": ([_item("x.jpg")], "MANIFEST:1: output must be a relative .png path"),
    "a NUL in the output": ([_item("x\x00.png")], "MANIFEST:1: output must be a relative .png path"),
    "a name too long": ([_item("a" * 300 + ".png")], "MANIFEST:1: output has a name longer than"),
    "a duplicate output": ([_item("a.png"), _item("b.png"), _item("./a.png")], "MANIFEST:3: output './a.png' repeats"),
    "an output that is another's directory": (
        [_item("a.png/b.png"), _item("a.png")],
        "MANIFEST:2: output 'a.png' is a directory of line 1",
    ),
    "bad argparse value": ([_item("a.png"), _item("b.png", "--cfg", "x")], "MANIFEST:2: --cfg: invalid float value"),
    "an unknown option": ([_item("a.png", "--bogus")], "MANIFEST:1: unrecognized arguments: --bogus"),
    "no prompt": ([{"output": "x.png", "command": "panorama", "args": []}], "MANIFEST:1: "),
    "--help": ([_item("a.png", "--help")], "MANIFEST:1: -h/--help: not an item argument"),
    "--out": ([_item("a.png", "--out", "y.png")], "MANIFEST:1: --out: not an item argument"),
    "a bad choice": ([_item("a.png", "--scheduler", "euler")], "MANIFEST:1: --scheduler: invalid choice"),
    "a non-finite cfg": ([_item("a.png", "--cfg", "nan")], "MANIFEST:1: --cfg: must be finite"),
    "a non-finite guidance weight": ([_item("a.png", "--text-weight", "inf")], "MANIFEST:1: --text-weight: must be"),
    "a negative seed": ([_item("a.png", "--seed", "-1")], "MANIFEST:1: --seed: must be an integer in"),
    "a width off the VAE grid": ([_item("a.png", "--width", "130")], "MANIFEST:1: --width: must be a positive"),
    "a width under one window": ([_item("a.png", "--width", "32")], "MANIFEST:1: --width: must be at least one"),
    "a huge height": ([_item("a.png", "--height", "99999")], "MANIFEST:1: --height: must be <= 32768"),
    "a stride over the window": ([_item("a.png", "--stride", "99")], "MANIFEST:1: --stride: must be <= the window"),
    "more steps than DDIM runs": ([_item("a.png", "--steps", "5000")], "MANIFEST:1: --steps: "),
    "too few steps for PNDM": ([_item("a.png", "--scheduler", "pndm")], "MANIFEST:1: --steps: "),
    "an absent device": ([_item("a.png", "--device", "cuda:99")], "MANIFEST:1: --device: cuda:99 is not available"),
    "an unknown device": ([_item("a.png", "--device", "gpu0")], "MANIFEST:1: --device: must be cpu, cuda"),
    "a missing model": ([_item("a.png", "--model", "/nonexistent/sd")], "MANIFEST:1: --model: /nonexistent/sd"),
    "a missing content image": ([_item("a.png", "--content", "no.png")], "MANIFEST:1: --content: no.png does not"),
    "guidance without a CLIP": ([_item("a.png", "--text", "a lake")], "MANIFEST:1: --clip: "),
    "a missing sync loss weights file": (
        [_item("a.png", "--method", "syncdiffusion", "--stride", "4", "--lpips-weights", "no.pth")],
        "MANIFEST:1: --lpips-weights: no such file: no.pth",
    ),
    "a good item, then a bad one": ([_item("a.png"), _item("b.png", "--steps", "0")], "MANIFEST:2: --steps: must"),
}


@pytest.mark.parametrize("lines, expected", list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_a_bad_manifest_line_is_one_line_and_nothing_is_written(
    tiny_dir: Path, tmp_path: Path, capsys, lines: list, expected: str
) -> None:
    manifest = _write(tmp_path / "m.jsonl", lines, tiny_dir)
    out = tmp_path / "out"
    message = _refused(["batch", str(manifest), "--out", str(out)], capsys)
    assert message.startswith(expected), message
    assert not out.exists()


def test_the_lpips_vgg_loss_without_its_weights_is_refused_before_the_first_item(
    tiny_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached VGG16; offline, it cannot be fetched
    lines = [_item("a.png"), _item("b.png", "--method", "syncdiffusion", "--stride", "4", "--perceptual", "lpips-vgg")]
    manifest = _write(tmp_path / "m.jsonl", lines, tiny_dir)
    message = _refused(["batch", str(manifest), "--out", str(tmp_path / "out")], capsys)
    if (tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth").exists():
        pytest.skip("online: the VGG16 weights were downloaded")  # pragma: no cover
    assert message.startswith("MANIFEST:2: --perceptual: lpips-vgg needs"), message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "blank lines", "unreadable", "name too long"])
def test_an_unreadable_or_empty_manifest_is_one_line(tmp_path: Path, capsys, monkeypatch, case: str) -> None:
    manifest = tmp_path / ("m" * 300 + ".jsonl" if case == "name too long" else "m.jsonl")
    if case == "directory":
        manifest.mkdir()
    elif case == "empty":
        manifest.write_bytes(b"")
    elif case == "blank lines":
        manifest.write_text("\n  \n\n")
    elif case == "unreadable":  # tests may run as root, which chmod does not stop: the read itself is refused
        manifest.write_text('{"output": "x.png", "command": "panorama", "args": ["a"]}\n')
        real = Path.read_bytes

        def denied(self: Path) -> bytes:
            if self == manifest:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", denied)
    expected = {
        "missing": f"MANIFEST: {manifest} does not exist",
        "directory": f"MANIFEST: {manifest} is a directory",
        "empty": f"MANIFEST: {manifest} has no items",
        "blank lines": f"MANIFEST: {manifest} has no items",
        "unreadable": f"MANIFEST: cannot read {manifest}: Permission denied",
        "name too long": f"MANIFEST: cannot read {manifest}: File name too long",
    }[case]
    message = _refused(["batch", str(manifest), "--out", str(tmp_path / "out")], capsys)
    assert message.startswith(expected), message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["output is a directory", "output under a file", "--out is a file"])
def test_outputs_the_directory_cannot_take_are_refused_and_nothing_changes(
    tiny_dir: Path, tmp_path: Path, capsys, case: str
) -> None:
    out = tmp_path / "out"
    if case == "--out is a file":
        out.write_bytes(b"not a directory")
    else:
        (out / "a").mkdir(parents=True)
        (out / "a" / "x.png").mkdir() if case == "output is a directory" else (out / "f").write_bytes(b"file")
    before = _snapshot(out) if out.is_dir() else out.read_bytes()
    output = "a/x.png" if case == "output is a directory" else "f/x.png"
    manifest = _write(tmp_path / "m.jsonl", [_item("ok.png"), _item(output)], tiny_dir)
    message = _refused(["batch", str(manifest), "--out", str(out)], capsys)
    expected = {
        "output is a directory": "MANIFEST:2: output 'a/x.png' is a directory in",
        "output under a file": "MANIFEST:2: output 'f/x.png' lies under",
        "--out is a file": f"--out: {out} is not a directory",
    }[case]
    assert message.startswith(expected), message
    assert (_snapshot(out) if out.is_dir() else out.read_bytes()) == before
    assert not (out / "ok.png").exists()


def test_item_arguments_are_parsed_without_printing_or_exiting(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    manifest = _write(tmp_path / "m.jsonl", [_item("a.png", "--cfg", "x")], tiny_dir)
    with pytest.raises(batch.ItemError) as raised:
        batch.check_items(read_manifest(manifest))
    assert str(raised.value) == "MANIFEST:1: --cfg: invalid float value: 'x'"
    assert raised.value.reason == "--cfg: invalid float value: 'x'"
    assert capsys.readouterr().err == ""  # argparse printed nothing (no usage line)


def test_a_valid_manifest_still_runs_and_a_rerun_writes_nothing(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    """Blank lines, meta, a prompt holding U+2028 (a line break to str.splitlines, not to JSON lines), a
    byte-order mark and CRLF line ends."""
    second = {"output": "p/b.png", "command": "panorama", "args": ["a lake\u2028at dusk", *_args("--seed", "3")[1:]]}
    manifest = _write(tmp_path / "m.jsonl", [_item("p/a.png", meta={"k": 1}), "", second], tiny_dir)
    manifest.write_bytes(b"\xef\xbb\xbf" + manifest.read_bytes().replace(b"\n", b"\r\n"))  # BOM, CRLF
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"process": 0, "processes": 1, "written": ["p/a.png", "p/b.png"]}
    assert sorted(p.name for p in (out / "p").iterdir()) == ["a.png", "b.png"]
    stamps = _snapshot(out)
    assert main(["batch", str(manifest), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == []
    assert _snapshot(out) == stamps


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_a_signal_mid_batch_is_one_line_leaves_no_partial_file_and_the_rerun_finishes_the_rest(
    tiny_dir: Path, tmp_path: Path, capsys
) -> None:
    """Three items; the signal comes while the second (the slow one) is sampling, after the first is written.

    SIGTERM only: in batch both signals take one path (the KeyboardInterrupt that main() raises for SIGTERM too;
    syncguide.atomic.signals_deferred treats them alike). SIGINT's 130 and the handlers main() restores are tested by
    test_reliability's panorama signal test and test_an_interrupt_during_a_write_waits_until_the_file_is_complete.
    """
    sig, status, word = signal.SIGTERM, 143, "terminated"
    lines = [_item("p/0.png"), _item("p/1.png"), _item("p/2.png")]
    lines[1]["args"] = _args("--seed", "1", steps="25")
    manifest = _write(tmp_path / "m.jsonl", lines, tiny_dir)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "syncguide.cli.main", "batch", str(manifest), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    seen = bytearray()
    reader = threading.Thread(target=lambda: seen.extend(proc.stderr.read()), daemon=True)
    reader.start()
    first = out / "p" / "0.png"
    deadline = time.monotonic() + 180
    while not first.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert first.exists(), bytes(seen)[-800:]
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == status, bytes(seen)[-800:]
    reader.join(timeout=10)
    assert bytes(seen).decode().splitlines() == [f"syncguide batch: {word}"], bytes(seen)[-800:]
    assert proc.stdout.read() == b""  # no report: the run did not finish
    assert _files(out) == ["p/0.png"]  # no temporary or partial file beside it
    kept = (first.stat().st_mtime_ns, first.read_bytes())

    assert main(["batch", str(manifest), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == ["p/1.png", "p/2.png"]
    assert _files(out) == ["p/0.png", "p/1.png", "p/2.png"]
    assert (first.stat().st_mtime_ns, first.read_bytes()) == kept


def test_an_interrupt_during_a_write_waits_until_the_file_is_complete(tmp_path: Path, monkeypatch) -> None:
    """Every atomic write (batch's PNGs and all others) holds Ctrl-C until the file has its name."""
    from syncguide import atomic

    real_fsync = os.fsync

    def fsync_then_ctrl_c(fd: int) -> None:
        real_fsync(fd)
        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C came while the file was being named

    monkeypatch.setattr(atomic.os, "fsync", fsync_then_ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(tmp_path / "x.png", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"] and (tmp_path / "x.png").read_bytes() == b"data"
    assert signal.getsignal(signal.SIGINT) is before


def test_an_interrupt_during_the_writability_probe_leaves_no_probe_file(tmp_path: Path, monkeypatch) -> None:
    """The probe that checks an output directory is writable is removed even when Ctrl-C comes meanwhile (seen in
    CI: a SIGTERM between its creation and removal left ``.syncguide-probe-*`` beside a batch's files)."""
    from syncguide.cli import io

    real_close = os.close

    def close_then_ctrl_c(fd: int) -> None:
        real_close(fd)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(io.os, "close", close_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        io.check_writable(tmp_path, "--out")
    assert list(tmp_path.iterdir()) == []


REPRODUCE_BAD = {
    "weights nan": (["--weights", "nan"], "--weights: must be finite"),
    "weights inf": (["--weights", "0", "inf"], "--weights: must be finite"),
    "weights repeated": (["--weights", "0", "0"], "--weights: must be distinct"),
    "steps 0": (["--steps", "0"], "--steps: must be >= 1; got 0"),
    "steps negative": (["--steps", "-3"], "--steps: must be >= 1"),
    "steps over DDIM's": (["--steps", "5000"], "--steps: "),
    "perceptual unknown": (["--perceptual", "bogus"], "argument --perceptual: invalid choice: 'bogus'"),
    "seeds 1": (["--seeds", "1"], "--seeds: must be in 2 .."),
    "seeds huge": (["--seeds", "1000000000"], "--seeds: must be in 2 .."),
    "references 0": (["--references", "0"], "--references: must be in 1 .."),
    "width off the grid": (["--width", "130"], "--width: must be a multiple of 8 and at least one window (64 px)"),
    "width under a window": (["--width", "32"], "--width: must be a multiple of 8"),
    "width huge": (["--width", "99999999"], "--width: must be in 1 .."),
    "device absent": (["--device", "cuda:99"], "--device: cuda:99 is not available"),
    "network weights missing": (
        ["--networks", "real", "--vgg19-weights", "no.pth"],
        "--vgg19-weights: no such file: no.pth",
    ),
    "network weights not torch's": (
        ["--networks", "real", "--inception-weights", "{prompts}"],
        "--inception-weights: {prompts} is not a torch weights file",
    ),
    "network weights the run would not use": (
        ["--lpips-weights", "{prompts}"],
        "--lpips-weights: is for the real metric networks (--networks real); this run's are 'demo'",
    ),
    "out a file": (["--out", "{prompts}"], "--out: {prompts} is not a directory"),
    "out a name too long": (["--out", "x" * 300], "--out: cannot use"),
}


def _reproduce_argv(tiny_dir: Path, prompts: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("reproduce", "--model", str(tiny_dir), "--prompts", str(prompts), "--networks", "demo"),
        *("--perceptual", "lpips-random", "--seeds", "2", "--weights", "0", "5", "--references", "2"),
        *("--steps", "2", "--width", "128", "--device", "cpu", "--out", str(out), *extra),
    ]


@pytest.mark.parametrize("extra, expected", list(REPRODUCE_BAD.values()), ids=list(REPRODUCE_BAD))
def test_reproduce_refuses_bad_options_before_writing_anything(
    tiny_dir: Path, tmp_path: Path, capsys, extra: list[str], expected: str
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo\n")
    out = tmp_path / "run"
    extra = [value.replace("{prompts}", str(prompts)) for value in extra]
    expected = expected.replace("{prompts}", str(prompts))
    before = _snapshot(tmp_path)
    argv = _reproduce_argv(tiny_dir, prompts, out, *extra)
    try:
        message = _refused(argv, capsys, "reproduce")
    except SystemExit as exit_:  # argparse's own one-line error (a choice): it exits
        assert exit_.code == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1, err
        message = err[0].removeprefix("syncguide reproduce: error: ")
    assert message.startswith(expected), message
    assert _snapshot(tmp_path) == before


def test_a_refused_reproduce_leaves_no_manifest_so_the_corrected_rerun_starts(
    tiny_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """An item-level refusal (here the lpips-vgg sync loss offline without its weights) used to leave
    manifest.jsonl behind, and the corrected command was then refused for "a different manifest"."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo\n")
    out = tmp_path / "run"
    out.mkdir()
    message = _refused(_reproduce_argv(tiny_dir, prompts, out, "--perceptual", "lpips-vgg"), capsys, "reproduce")
    if (tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth").exists():
        pytest.skip("online: the VGG16 weights were downloaded")  # pragma: no cover
    assert message.startswith("--perceptual: lpips-vgg needs"), message
    assert list(out.iterdir()) == []

    def stop(items, root, state):  # the corrected run got past every check: stop where generation starts
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "generate_items", stop)
    assert main(_reproduce_argv(tiny_dir, prompts, out)) == 130
    assert capsys.readouterr().err.splitlines() == ["syncguide reproduce: interrupted"]
    assert len(read_manifest(out / "manifest.jsonl")) == 2 * 2 + 2
