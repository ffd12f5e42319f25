"""Copy a trained demo model into the package and write its model card (data, command, time, measured quality).

    python scripts/bundle_demo.py NAME --run runs/NAME --train-seconds S --steps N

NAME is judge, clip, sd or ddpm. The model is evaluated on fresh generator seeds here (sd and ddpm by the judge,
which must be bundled first); the card is written as README.md beside the weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from syncguide.demo.bundled import BUNDLED, MODELS, bundled
from syncguide.demo.train import RECIPES


def measure(name: str, model: Path, run: Path) -> dict:
    """The model's quality numbers (see each recipe's ``evaluate``)."""
    if name == "judge":
        from syncguide.demo.train.judge import evaluate

        return evaluate(model)
    if name == "clip":
        from syncguide.demo.train.clip import evaluate

        return evaluate(model)
    if name == "sd":
        from syncguide.demo.train.sd import evaluate
        from syncguide.demo.train.vae import evaluate as evaluate_vae

        return {"vae": evaluate_vae(model / "vae"), "text_prompts": evaluate(model, bundled("judge"))}
    from syncguide.demo.train.ddpm import evaluate

    return evaluate(model, judge_dir=bundled("judge"))


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def card(name: str, steps: int, seconds: float, metrics: dict, extra_command: str, size: float, note: str) -> str:
    """The model card's markdown."""
    command = f"syncguide demo train {name} --steps {steps}{extra_command}"
    return "\n".join(
        [
            f"# syncguide demo model: {name}",
            "",
            f"{RECIPES[name][0].upper()}{RECIPES[name][1:]}; used for: {MODELS[name]}.",
            "",
            "- **Data**: 64 x 64 crops of the procedural demo world (`syncguide.demo.world.crop_dataset`, seed 0, "
            "20 000 crops) with their captions and labels; evaluated on fresh generator seeds.",
            f"- **Command**: `{command}` (deterministic, resumable), then `python scripts/bundle_demo.py {name} ...`.",
            f"- **Training time**: {seconds / 60:.1f} min on 2 CPU cores (shared with other work).",
            f"- **Size**: {size:.1f} MB (safetensors).",
            "",
            "## Measured quality",
            "",
            *([note, ""] if note else []),
            "```json",
            json.dumps(metrics, indent=2),
            "```",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=tuple(MODELS))
    parser.add_argument("--run", type=Path, help="run directory (default runs/NAME)")
    parser.add_argument("--train-seconds", type=float, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--command-extra", default="", help="extra options of the training command, for the card")
    parser.add_argument("--note", default="", help="a sentence for the card (e.g. a target not yet met)")
    parser.add_argument("--metrics", type=Path, help="JSON of numbers already measured by the same evaluate functions")
    args = parser.parse_args()
    source = (args.run or Path("runs") / args.name) / "model"
    target = BUNDLED / args.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    metrics = json.loads(args.metrics.read_text()) if args.metrics else measure(args.name, target, source.parent)
    text = card(args.name, args.steps, args.train_seconds, metrics, args.command_extra, size_mb(target), args.note)
    (target / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
