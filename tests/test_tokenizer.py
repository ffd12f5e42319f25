"""The local-vocabulary BPE tokenizer: every listed word is one token, other text still tokenizes."""

from syncguide.demo.world import VOCABULARY
from syncguide.models.tokenizer import bpe, bpe_tables, build_tokenizer


def test_every_vocabulary_word_is_one_token(tmp_path) -> None:
    tokenizer = build_tokenizer(VOCABULARY, tmp_path, max_length=24)
    for word in VOCABULARY:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    # a word whose letters other words' merges could grab first ("a n" from "an") stays whole
    assert tokenizer.convert_ids_to_tokens(tokenizer("a landscape at sunset").input_ids)[1:-1] == [
        "a</w>",
        "landscape</w>",
        "at</w>",
        "sunset</w>",
    ]
    assert len(tokenizer("zebra", add_special_tokens=False).input_ids) > 1  # unknown words: byte pieces


def test_bpe_matches_the_merge_table() -> None:
    vocab, merges = bpe_tables(["an", "landscape"])
    ranks = {tuple(m.split()): k for k, m in enumerate(merges)}
    assert bpe("landscape", ranks) == ["landscape</w>"] and "landscape</w>" in vocab
    assert bpe("an", ranks) == ["an</w>"]
