"""``syncguide eval`` on bad inputs: one line, exit 2, nothing written; layout PNGs; the judge's Wilson interval."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image, PngImagePlugin

from syncguide.cli.io import save_png
from syncguide.cli.layout import parameters as layout_parameters
from syncguide.demo.bundled import bundled
from syncguide.evaluation.compute import wilson_ci
from syncguide.evaluation.report import markdown
from test_cli import run_cli

PANORAMA = "w0-p0-s0.png"  # one of the conftest's panoramas (64 x 256)
OUT_FILES = {"notes.txt": b"kept"}  # what the --out directory holds before every failing run


def _argv(panoramas: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", str(panoramas), "--out", str(out), "--device", "cpu", "--bootstrap", "5", *extra]


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path under ``root`` with its mtime, size and (for files) bytes (links as themselves)."""
    return {
        str(p.relative_to(root)): (
            p.lstat().st_mtime_ns,
            p.lstat().st_size,
            p.read_bytes() if p.is_file() and not p.is_symlink() else b"",
        )
        for p in sorted(root.rglob("*"))
    }


def _png_with_text(path: Path, text: str, size: tuple[int, int] = (256, 64)) -> None:
    """A PNG whose stored settings are ``text`` (in both the ``parameters`` and the ``syncguide`` chunk)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    info.add_text("syncguide", text)
    Image.new("RGB", size).save(path, pnginfo=info)


def _demo_parameters(**changes: object) -> str:
    base = {"prompt": "a photo of mountains", "method": "multidiffusion", "model": str(bundled("sd"))}
    return json.dumps({**base, **changes})


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# Each case: (tmp, panoramas, references, out) -> (panorama dir, extra arguments, text the error must hold)
Case = Callable[[Path, Path, Path, Path], tuple[Path, list[str], str]]


def truncated_panorama(t: Path, p: Path, r: Path, out: Path):
    _truncate(p / PANORAMA)
    return p, [], f"PANORAMA_DIR: {p / PANORAMA} is not a readable image (truncated)"


def corrupt_panorama(t: Path, p: Path, r: Path, out: Path):
    _flip_middle_byte(p / PANORAMA)
    return p, [], f"PANORAMA_DIR: {p / PANORAMA} is not a readable image ("


def garbage_panorama(t: Path, p: Path, r: Path, out: Path):
    (p / "zz.png").write_bytes(b"not a png at all" * 8)
    return p, [], f"PANORAMA_DIR: {p / 'zz.png'} is not a readable image (not an image file"


def dangling_link_panorama(t: Path, p: Path, r: Path, out: Path):
    (p / "zz.png").symlink_to(t / "nowhere.png")
    return p, [], f"PANORAMA_DIR: cannot read {p / 'zz.png'}: No such file or directory"


def unreadable_panorama(t: Path, p: Path, r: Path, out: Path):
    (p / PANORAMA).chmod(0)
    return p, [], f"PANORAMA_DIR: cannot read {p / PANORAMA}: Permission denied"


def truncated_reference(t: Path, p: Path, r: Path, out: Path):
    _truncate(r / "ref-3.png")
    return p, ["--reference", str(r)], f"--reference: {r / 'ref-3.png'} is not a readable image (truncated)"


def garbage_reference(t: Path, p: Path, r: Path, out: Path):
    (r / "ref-9.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return p, ["--reference", str(r)], f"--reference: {r / 'ref-9.png'} is not a readable image"


def reference_is_a_file(t: Path, p: Path, r: Path, out: Path):
    return p, ["--reference", str(r / "ref-0.png")], f"--reference: {r / 'ref-0.png'} is not a directory"


def reference_without_pngs(t: Path, p: Path, r: Path, out: Path):
    (t / "jpegs").mkdir()
    Image.new("RGB", (64, 64)).save(t / "jpegs" / "a.jpg")
    return p, ["--reference", str(t / "jpegs")], f"--reference: no .png files in {t / 'jpegs'}"


def _prompts(t: Path, data: bytes) -> Path:
    path = t / "prompts.txt"
    path.write_bytes(data)
    return path


def binary_prompts(t: Path, p: Path, r: Path, out: Path):
    path = _prompts(t, bytes(range(256)))
    return p, ["--prompts", str(path)], f"--prompts: {path} is not UTF-8 text (byte 0x80 at offset 128)"


def latin1_prompts(t: Path, p: Path, r: Path, out: Path):
    path = _prompts(t, "a photo of mountains\nun café\n".encode("latin-1"))
    return p, ["--prompts", str(path)], f"--prompts: {path} is not UTF-8 text"


def nul_prompts(t: Path, p: Path, r: Path, out: Path):
    path = _prompts(t, b"a photo of mountains\x00\n")
    return p, ["--prompts", str(path)], f"--prompts: {path} is binary (a NUL byte at offset 20)"


def blank_prompts(t: Path, p: Path, r: Path, out: Path):
    path = _prompts(t, b"  \n\n\t\n")
    return p, ["--prompts", str(path)], f"--prompts: {path} has no prompts"


def prompts_is_a_directory(t: Path, p: Path, r: Path, out: Path):
    return p, ["--prompts", str(t)], f"--prompts: cannot read {t}: Is a directory"


def missing_prompts(t: Path, p: Path, r: Path, out: Path):
    return p, ["--prompts", str(t / "none.txt")], f"--prompts: cannot read {t / 'none.txt'}: No such file"


def _bad_panorama(name: str, text: str, message: str) -> Case:
    """A panorama ``zz.png`` (of the right size) whose stored settings are ``text``."""

    def case(t: Path, p: Path, r: Path, out: Path):
        _png_with_text(p / "zz.png", text)
        return p, [], f"PANORAMA_DIR: {p / 'zz.png'}{message}"

    case.__name__ = f"parameters_{name}"
    return case


def plain_png(t: Path, p: Path, r: Path, out: Path):
    Image.new("RGB", (256, 64)).save(p / "zz.png")
    return p, [], f"PANORAMA_DIR: {p / 'zz.png'} has no 'parameters'"


def layout_with_bad_background(t: Path, p: Path, r: Path, out: Path):
    params = layout_parameters({"prompt": 7, "method": "multidiffusion"}, [("--box", "a barn", "0,0,0.5,1")])
    _png_with_text(p / "zz.png", json.dumps(params))
    return p, [], f"PANORAMA_DIR: {p / 'zz.png'}: its 'background' prompt must be a string; got 7"


def missing_panorama_dir(t: Path, p: Path, r: Path, out: Path):
    return t / "nothing", [], f"PANORAMA_DIR: {t / 'nothing'} does not exist"


def panorama_dir_is_a_file(t: Path, p: Path, r: Path, out: Path):
    return p / PANORAMA, [], f"PANORAMA_DIR: {p / PANORAMA} is not a directory"


def panorama_dir_without_pngs(t: Path, p: Path, r: Path, out: Path):
    (t / "other").mkdir()
    (t / "other" / "sub.png").mkdir()  # a directory with a .png name is no image
    Image.new("RGB", (256, 64)).save(t / "other" / "a.jpg")
    (t / "other" / ".hidden.png").write_bytes((p / PANORAMA).read_bytes())
    return t / "other", [], f"PANORAMA_DIR: no .png files in {t / 'other'}"


def _claim(name: str, data: bytes, problem: str) -> Case:
    """An ``evaluation.json`` in --out holding ``data``: refused, never replaced without --overwrite."""

    def case(t: Path, p: Path, r: Path, out: Path):
        (out / "evaluation.json").write_bytes(data)
        return p, [], f"--out: {out / 'evaluation.json'} is not an evaluation record ({problem})"

    case.__name__ = f"evaluation_json_{name}"
    return case


def claim_is_a_directory(t: Path, p: Path, r: Path, out: Path):
    (out / "evaluation.json").mkdir()
    return p, ["--overwrite"], f"--out: {out / 'evaluation.json'} is not a regular file"


def out_is_a_file(t: Path, p: Path, r: Path, out: Path):
    return p, ["--out", str(out / "notes.txt")], f"--out: {out / 'notes.txt'} exists and is not a directory"


def out_is_the_panorama_dir(t: Path, p: Path, r: Path, out: Path):
    return p, ["--out", str(p)], f"--out: {p} is an input directory"


CASES: list[Case] = [
    truncated_panorama,
    corrupt_panorama,
    garbage_panorama,
    dangling_link_panorama,
    pytest.param(unreadable_panorama, marks=pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")),  # type: ignore[list-item]
    truncated_reference,
    garbage_reference,
    reference_is_a_file,
    reference_without_pngs,
    binary_prompts,
    latin1_prompts,
    nul_prompts,
    blank_prompts,
    prompts_is_a_directory,
    missing_prompts,
    _bad_panorama("json_list", "[1, 2, 3]", ": its stored parameters "),  # a JSON list: not an object
    _bad_panorama("json_string", '"a prompt"', ": its stored parameters "),  # a JSON string
    _bad_panorama("not_json", "{not json", ": its stored parameters cannot be read ("),
    _bad_panorama("prompt_number", _demo_parameters(prompt=5), ": its 'prompt' must be a string; got 5"),
    _bad_panorama("prompt_null", _demo_parameters(prompt=None), ": its 'prompt' must be a string; got None"),
    _bad_panorama(
        "no_prompt", json.dumps({"method": "multidiffusion", "seed": 1}), ": its parameters have no 'prompt'"
    ),
    _bad_panorama("model_number", _demo_parameters(model=3), ": its 'model' must be a string; got 3"),
    _bad_panorama("method_list", _demo_parameters(method=["x"]), ": its 'method' must be a string"),
    _bad_panorama(
        "weight_text",
        _demo_parameters(method="syncdiffusion", sync_weight="high"),
        ": its 'sync_weight' must be a finite number",
    ),
    _bad_panorama(
        "weight_nan",
        _demo_parameters(method="syncdiffusion", sync_weight=float("nan")),
        ": its 'sync_weight' must be a finite number; got nan",
    ),
    plain_png,
    layout_with_bad_background,
    missing_panorama_dir,
    panorama_dir_is_a_file,
    panorama_dir_without_pngs,
    _claim("not_json", b"{ half a record", "not JSON"),
    _claim("list", b'["panoramas"]', "a JSON list, not an object"),
    _claim("incomplete", b'{"panoramas": "p"}', "no 'references'"),
    _claim("latin1", '{"panoramas": "caf\xe9"}'.encode("latin-1"), "not UTF-8 text"),
    claim_is_a_directory,
    out_is_a_file,
    out_is_the_panorama_dir,
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    case: Case, panorama_dir: Path, reference_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "eval"
    out.mkdir()
    for name, data in OUT_FILES.items():
        (out / name).write_bytes(data)
    panoramas, extra, message = case(tmp_path, panorama_dir, reference_dir, out)
    before = _snapshot(tmp_path)
    assert run_cli(_argv(panoramas, out, *extra)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("syncguide eval: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert _snapshot(tmp_path) == before  # no cache, no report, no evaluation.json; the inputs untouched


@pytest.mark.parametrize("case", [truncated_panorama, truncated_reference, binary_prompts], ids=lambda c: c.__name__)
def test_bad_input_does_not_create_the_default_out_directory(
    case: Case, panorama_dir: Path, reference_dir: Path, tmp_path: Path, capsys
) -> None:
    panoramas, extra, message = case(tmp_path, panorama_dir, reference_dir, tmp_path / "unused")
    argv = ["eval", str(panoramas), "--device", "cpu", *extra]
    assert run_cli(argv) == 2
    assert message in capsys.readouterr().err
    assert not panoramas.with_name(panoramas.name + "-eval").exists()


def test_a_valid_run_succeeds_with_a_labelled_progress_bar_and_wilson_judge(
    panorama_dir: Path, reference_dir: Path, tmp_path: Path, capsys
) -> None:
    (panorama_dir / "sub.png").mkdir()  # a directory named like a PNG is not a panorama
    out = tmp_path / "eval"
    assert run_cli(_argv(panorama_dir, out, "--reference", str(reference_dir))) == 0
    captured = capsys.readouterr()
    assert "eval: metrics and features" in captured.err  # the progress bar's label
    results = json.loads((out / "results.json").read_text())
    for entry in results["methods"].values():
        assert entry["n"] == 6
        judge = entry["metrics"]["judge"]
        low, high = judge["ci"]
        assert 0 <= low <= judge["value"] <= high <= 1 and judge["n"] == 6 and judge["interval"] == "wilson"
    table = (out / "results.md").read_text()
    assert "Judge 95% Wilson score interval" in table and "n = the number of panoramas" in table
    assert json.loads(captured.out.strip().splitlines()[-1])["out"] == str(out)


def _few(panorama_dir: Path, directory: Path) -> Path:
    """Four of the conftest's panoramas (both methods, one seed) in ``directory``: quick runs."""
    directory.mkdir()
    for path in sorted(panorama_dir.glob("*-s0.png")):
        (directory / path.name).write_bytes(path.read_bytes())
    return directory


def test_overwrite_replaces_a_bad_evaluation_json_and_a_corrupt_cache_record_is_recomputed(
    panorama_dir: Path, tmp_path: Path
) -> None:
    panoramas = _few(panorama_dir, tmp_path / "few")
    out = tmp_path / "eval"
    out.mkdir()
    (out / "evaluation.json").write_text("not json")
    assert run_cli(_argv(panoramas, out, "--metrics", "intra-lpips", "--overwrite")) == 0
    assert set(json.loads((out / "evaluation.json").read_text())) == {"panoramas", "references", "prompts", "settings"}
    first = json.loads((out / "results.json").read_text())["methods"]
    assert {m: e["n"] for m, e in first.items()} == {"MultiDiffusion": 2, "SyncDiffusion w=5": 2}
    record = out / "cache" / "panoramas" / "w0-p0-s0.safetensors"
    record.write_bytes(record.read_bytes()[:20])
    assert run_cli(_argv(panoramas, out, "--metrics", "intra-lpips")) == 0
    assert json.loads((out / "results.json").read_text())["methods"] == first
    assert record.stat().st_size > 20


def _layouts(directory: Path) -> Path:
    """Two layout images (64 x 256) as ``syncguide layout`` stores them, MultiDiffusion and SyncDiffusion w=5."""
    from syncguide.demo.world import generate

    directory.mkdir()
    for i, weight in enumerate((0.0, 5.0)):
        method = "multidiffusion" if weight == 0 else "syncdiffusion"
        base = {"prompt": "a photo of mountains", "method": method, "sync_weight": weight, "seed": i}
        params = layout_parameters({**base, "model": str(bundled("sd"))}, [("--box", "a red barn", "0,0,0.25,1")])
        image, _ = generate(i, 256)
        save_png(Image.fromarray(image), directory / f"layout-{i}.png", params, False)
    return directory


def test_layout_pngs_are_evaluated_with_their_background_prompt(panorama_dir: Path, tmp_path: Path, capsys) -> None:
    layouts = _layouts(tmp_path / "layouts")
    out = tmp_path / "eval"
    assert run_cli(_argv(layouts, out, "--metrics", "clip-score", "intra-lpips")) == 0
    methods = json.loads((out / "results.json").read_text())["methods"]
    assert set(methods) == {"MultiDiffusion (layout)", "SyncDiffusion w=5 (layout)"}
    for entry in methods.values():
        assert entry["prompts"] == ["a photo of mountains"] and "clip-score" in entry["metrics"]
    # mixed with panoramas: the layouts are their own methods; --prompts selects them by the background prompt
    for path in layouts.iterdir():
        path.rename(panorama_dir / path.name)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of mountains\n")
    mixed = tmp_path / "mixed"
    assert run_cli(_argv(panorama_dir, mixed, "--metrics", "clip-score", "--prompts", str(prompts))) == 0
    counts = {m: e["n"] for m, e in json.loads((mixed / "results.json").read_text())["methods"].items()}
    assert counts == {
        "MultiDiffusion": 3,
        "SyncDiffusion w=5": 3,
        "MultiDiffusion (layout)": 1,
        "SyncDiffusion w=5 (layout)": 1,
    }


def _wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval, written out from the textbook formula."""
    p = successes / n
    denominator = 1 + z * z / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / denominator, (centre + spread) / denominator


@pytest.mark.parametrize("n", [1, 2, 6, 50])
@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_wilson_interval_of_all_ones_or_zeros_stays_in_0_1(n: int, fill: float) -> None:
    result = wilson_ci(torch.full((n,), fill))
    low, high = result["ci"]
    assert 0.0 <= low <= result["value"] == fill <= high <= 1.0 and result["n"] == n
    assert high - low > 0  # a normal interval would have zero width here
    assert (low, high) == pytest.approx(_wilson(int(fill) * n, n), abs=1e-12)


def test_wilson_interval_matches_the_formula_and_contains_the_mean() -> None:
    values = torch.tensor([1.0] * 7 + [0.0] * 3)
    result = wilson_ci(values)
    assert result["value"] == pytest.approx(0.7)
    assert result["ci"] == pytest.approx(_wilson(7, 10), abs=1e-12)
    assert result["ci"] == pytest.approx([0.3967781, 0.8922087], abs=1e-6)  # 7 of 10, z = 1.96: the known values
    fractions = wilson_ci(torch.tensor([0.9, 1.0, 0.8, 1.0]))  # per-panorama shares of agreeing crop pairs
    low, high = fractions["ci"]
    assert fractions["value"] == pytest.approx(0.925) and low < fractions["value"] < high <= 1.0


@pytest.mark.parametrize("values", [[1.5], [-0.1, 0.5], []])
def test_wilson_interval_refuses_values_outside_0_1(values: list[float]) -> None:
    with pytest.raises(ValueError, match="wilson_ci needs"):
        wilson_ci(torch.tensor(values))


def test_report_shows_the_judge_interval_as_low_high() -> None:
    results = {
        "methods": {"MultiDiffusion": {"n": 6, "sync_weight": 0.0, "metrics": {"judge": wilson_ci(torch.ones(6))}}},
        "crop": 64,
        "n_references": 0,
        "networks": {},
    }
    text = markdown(results)
    assert "| MultiDiffusion | 6 | 1 [0.61, 1] |" in text
    assert "unless noted: Judge 95% Wilson score interval" in text and "± 0." not in text
