"""The word-end table: per token, how often the next token does not continue its word."""
from pathlib import Path

from tokenizers import Tokenizer

import word_ends

ROOT = Path(__file__).resolve().parent.parent.parent


def test_shares_of_words_that_end_or_continue_and_rare_tokens():
    tok = Tokenizer.from_file(str(ROOT / "models/fixture/tokenizer.json"))
    # In the fixture's vocabulary: " the" + " c" "at" + " s" "at" + " on" + " the" + " m" "at" + ".",
    # " will" occurs fewer times than an estimate needs, " you" not at all.
    assert tok.encode("the cat sat on the mat.").tokens == ["Ġthe", "Ġc", "at", "Ġs", "at", "Ġon", "Ġthe", "Ġm", "at", "."]
    lines = ["the cat sat on the mat."] * 30 + ["I will"] * (word_ends.MIN_COUNT - 1)
    table = word_ends.word_end_table(tok, lines)
    assert len(table) == tok.get_vocab_size()
    share = {t: table[tok.token_to_id(t)] for t in ["Ġthe", "Ġon", "at", "Ġc", "Ġs", "Ġwill", "Ġyou"]}
    assert share == {"Ġthe": 254, "Ġon": 254, "at": 254, "Ġc": 0, "Ġs": 0,
                     "Ġwill": word_ends.UNKNOWN, "Ġyou": word_ends.UNKNOWN}
    half = word_ends.word_end_table(tok, ["the cat"] * 20 + ["the c"] * 20)
    assert half[tok.token_to_id("Ġc")] == 127  # followed by "at" half the time, by the line's end the rest
