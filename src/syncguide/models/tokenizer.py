"""A CLIP BPE tokenizer built from a word list, with no download.

``CLIPTokenizer.from_pretrained(<hub id>)`` offline can silently return an empty 2-token tokenizer; building
from local vocab files and asserting the size avoids that trap.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTokenizer

SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def bpe_tables(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """CLIP-style BPE ``(vocab, merges)``: every byte (alone and word-final), plus one merge chain per word.

    Each word of ``words`` (lower-case, no spaces) becomes a single token; any other text still tokenizes,
    byte by byte.
    """
    base = sorted(ByteLevel.alphabet())
    tokens = base + [b + "</w>" for b in base]
    merges: list[str] = []
    for word in sorted({w.lower() for w in words if len(w) > 1}):
        left = word[0]
        for i, char in enumerate(word[1:], start=1):
            right = char + ("</w>" if i == len(word) - 1 else "")
            merges.append(f"{left} {right}")
            left += right
            tokens.append(left)
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys([*tokens, *SPECIAL]))}
    return vocab, list(dict.fromkeys(merges))


def build_tokenizer(words: list[str], directory: str | Path, max_length: int = 77) -> CLIPTokenizer:
    """Write ``vocab.json`` and ``merges.txt`` for ``words`` into ``directory``, load a CLIPTokenizer, save it.

    Raises RuntimeError if the loaded tokenizer's size differs from the written vocabulary.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = bpe_tables(words)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(directory, model_max_length=max_length)
    check_tokenizer(tokenizer, len(vocab))
    tokenizer.save_pretrained(directory)  # records model_max_length for later from_pretrained calls
    return tokenizer


def check_tokenizer(tokenizer: CLIPTokenizer, expected_size: int) -> None:
    """Raise RuntimeError unless ``tokenizer`` has ``expected_size`` tokens (catches the empty-tokenizer trap)."""
    if len(tokenizer) != expected_size:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens; expected {expected_size}")
