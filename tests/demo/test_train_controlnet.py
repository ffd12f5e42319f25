"""The demo ControlNet recipe (issue 17's demo example): the edge maps it reads, its F1 score, deterministic and
resumable training that learns, and (when bundled) a ControlNet whose images follow the control edges."""

from __future__ import annotations

import pytest
import torch
from diffusers import ControlNetModel
from hypothesis import given, settings
from hypothesis import strategies as st

from syncguide.demo.bundled import BUNDLED, bundled
from syncguide.demo.train import RECIPES, recipe
from syncguide.demo.train.controlnet import edge_f1, edge_map, evaluate, train


@given(st.floats(0, 1), st.floats(0, 1), st.integers(2, 14))
@settings(max_examples=30, deadline=None)
def test_edges_lie_exactly_where_the_luminance_steps(a: float, b: float, column: int) -> None:
    image = torch.full((1, 3, 16, 16), a)
    image[..., column:] = b
    edges = edge_map(image)
    assert edges.shape == image.shape and set(edges.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(edges[:, 0], edges[:, 1]) and torch.equal(edges[:, 0], edges[:, 2])
    columns = edges[0, 0].amax(0).nonzero().flatten().tolist()
    # the Sobel kernel / 8 gives half the step on each of the two columns beside it
    assert columns == ([column - 1, column] if abs(a - b) / 2 > 0.04 else [])


def test_f1_is_1_for_the_same_edges_within_a_pixel_and_0_far_away() -> None:
    wanted = torch.zeros(1, 3, 16, 16)
    wanted[..., 8] = 1
    assert edge_f1(wanted, wanted) == 1.0
    assert edge_f1(wanted.roll(1, -1), wanted) == 1.0  # one pixel of slack
    assert edge_f1(wanted.roll(4, -1), wanted) == 0.0


def test_recipe_is_registered() -> None:
    assert "controlnet" in RECIPES and recipe("controlnet") is train


def _weights(path) -> dict[str, torch.Tensor]:
    return ControlNetModel.from_pretrained(path).state_dict()


def test_training_is_deterministic_resumable_and_learns(tmp_path) -> None:
    small = dict(n_data=16, batch_size=4)
    whole = _weights(train(tmp_path / "whole", steps=4, **small))
    train(tmp_path / "split", steps=2, **small)
    split = _weights(train(tmp_path / "split", steps=4, **small))
    assert all(torch.equal(whole[k], split[k]) for k in whole)
    # the zero convolutions start at 0 and move: the ControlNet's residuals stop being 0
    zero = [k for k in whole if k.startswith(("controlnet_down_blocks", "controlnet_mid_block"))]
    assert zero and all(whole[k].abs().max() > 0 for k in zero)


BUNDLED_NET = BUNDLED / "controlnet"


@pytest.mark.skipif(not (BUNDLED_NET / "config.json").is_file(), reason="the demo ControlNet is not bundled")
def test_the_bundled_controlnet_makes_images_follow_the_control_edges() -> None:
    assert bundled("controlnet") == BUNDLED_NET
    scores = evaluate(BUNDLED_NET, n=6, steps=10, seed=31)
    assert scores["with"] > scores["without"] + 0.2 and scores["with"] > scores["shuffled"] + 0.2, scores


def test_demo_edges_writes_the_edge_map_and_refuses_bad_input(tmp_path, capsys) -> None:
    import numpy as np
    from PIL import Image

    from syncguide.cli.main import main
    from syncguide.demo.world import generate

    world = tmp_path / "world.png"
    Image.fromarray(generate(3, 256)[0]).save(world)
    out = tmp_path / "edges.png"
    assert main(["demo", "edges", str(world), "--out", str(out)]) == 0
    pixels = torch.from_numpy(np.asarray(Image.open(world), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    written = torch.from_numpy(np.asarray(Image.open(out).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    assert torch.equal(written[None], edge_map(pixels))
    capsys.readouterr()
    for argv, option in (([str(tmp_path / "none.png"), "--out", str(tmp_path / "e2.png")], "image"),
                         ([str(world), "--out", str(out)], "--out")):  # fmt: skip
        assert main(["demo", "edges", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{option}:" in err[0], err
    assert not (tmp_path / "e2.png").exists()
