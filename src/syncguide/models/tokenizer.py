"""A CLIP BPE tokenizer built from a word list, with no download.

``CLIPTokenizer.from_pretrained(<hub id>)`` offline can silently return an empty 2-token tokenizer; building
from local vocab files and asserting the size avoids that trap.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTokenizer

SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def bpe_tables(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """CLIP-style BPE ``(vocab, merges)``: every byte (alone and word-final), plus the merges that make each word one
    token.

    Merges are found by running BPE on each word with the merges so far and appending a merge of the first two
    pieces until the word is one token. An appended merge has the lowest priority, and every intermediate state of
    an earlier word already has an applicable earlier merge, so no later merge can split an earlier word (a naive
    per-word merge chain can: ``"a n"`` from ``"an"`` would break ``"landscape"`` into 9 pieces). Any other text
    still tokenizes, byte by byte.
    """
    base = sorted(ByteLevel.alphabet())
    tokens = base + [b + "</w>" for b in base]
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted({w.lower() for w in words if len(w) > 1}):
        pieces = bpe(word, ranks)
        while len(pieces) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            tokens.append(pieces[0] + pieces[1])
            pieces = bpe(word, ranks)
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys([*tokens, *SPECIAL]))}
    return vocab, [f"{left} {right}" for left, right in ranks]


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE of one lower-case word: merge the adjacent pair of lowest rank, everywhere, until none applies."""
    pieces = [*word[:-1], word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = {pair for pair in itertools.pairwise(pieces) if pair in ranks}
        if not pairs:
            break
        best = min(pairs, key=ranks.__getitem__)
        merged, i = [], 0
        while i < len(pieces):
            if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == best:
                merged.append(pieces[i] + pieces[i + 1])
                i += 2
            else:
                merged.append(pieces[i])
                i += 1
        pieces = merged
    return pieces


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
