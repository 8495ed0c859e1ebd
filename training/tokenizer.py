"""Train the byte-level BPE tokenizer of a nextword bundle.

Byte-level BPE (GPT-2 style pre-tokenizer, prefix space added) so that no input is ever
unknown, and every word-initial piece starts with "Ġ" (the byte-level image of a space): the
core finds word boundaries from that mark alone. One special token, <|bos|>, marks the start
of a text (and is what the model sees before the first word of a field).
"""
import argparse
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

BOS = "<|bos|>"


def build(files, vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=3,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(f) for f in files], trainer)
    return tok


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", required=True, nargs="+", help="text files, one line per example")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--out", required=True, help="tokenizer.json to write")
    args = ap.parse_args()
    tok = build(args.train, args.vocab_size)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tok.save(args.out)
    print(json.dumps({"vocab_size": tok.get_vocab_size(), "out": args.out}))


if __name__ == "__main__":
    main()
