import numpy as np
import pytest

import evalproto as ep
from ngram import KNModel

CORPUS = [
    "The cat sat on the mat.",
    "The dog sat on the log.",
    "the cat ate the fish",
    "A cat and a dog. The cat sat down!",
    "I don't know what the cat wants",
    "I don't think so",
    "I think the dog is on the mat",
    "London is big. I like London",
    "we went to London and the cat came too",
    "the mat is red and the log is brown",
    "so I think so",
] * 3 + ["singleton words vanish here"]


@pytest.fixture(scope="module")
def model():
    return KNModel(order=4, min_count=2).train_lines(CORPUS)


def test_vocab(model):
    assert model.words == sorted(model.words)
    assert "cat" in model.ids and "don't" in model.ids
    assert "singleton" not in model.ids  # count 1 < min_count


@pytest.mark.parametrize(
    "hist",
    [[], ["the"], ["sat", "on", "the"], ["i", "don't"], ["unseen", "words", "here"], ["on", "the", "zzz"], ["London"]],
)
def test_probabilities_sum_to_one(model, hist):
    p = model.probs(hist)
    assert p.shape == (model.V + 1,)
    assert np.all(p > 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_lower_orders_sum_to_one(order):
    m = KNModel(order=order, min_count=1).train_lines(CORPUS)
    for hist in ([], ["the"], ["sat", "on"], ["nope"]):
        assert m.probs(hist).sum() == pytest.approx(1.0, abs=1e-9)


def test_context_matters(model):
    assert model.prob("mat", ["sat", "on", "the"]) > model.prob("mat", [])
    assert model.prob("know", ["i", "don't"]) > model.prob("sat", ["i", "don't"])


def test_next_word(model):
    assert model.suggest("The cat sat on ", 3)[0] == "the"
    assert "mat" in model.suggest("The cat sat on the ", 3)
    assert model.suggest("I ", 3)[0] in ("don't", "think", "like")


def test_sentence_start_capitalised(model):
    s = model.suggest("", 3)
    assert s and all(w[0].isupper() for w in s)
    s = model.suggest("A cat and a dog. ", 3)
    assert all(w[0].isupper() for w in s)
    assert all(not w[0].isupper() or w in ("I", "London") for w in model.suggest("the dog is on ", 3))


def test_display_casing(model):
    assert "London" in model.suggest("we went to ", 3)
    assert model.suggest("we went to lon", 3)[0] == "London"
    assert model.display[model.ids["i"]] == "I"


def test_completion_respects_prefix(model):
    for text in ["the c", "The cat sat on the m", "I d", "I don'", "th", "Th", "x", "TH"]:
        prefix = ep.words(text)[-1] if text[-1] != "'" else ep.words(text)[-1] + "'"
        sug = model.suggest(text, 3)
        assert all(w.lower().startswith(prefix.lower()) for w in sug), (text, sug)
    assert model.suggest("I don'", 3) == ["don't"]
    assert model.suggest("The cat sat on the m", 3)[0] == "mat"
    assert model.suggest("xq", 3) == []
    assert all(w[0].isupper() for w in model.suggest("Th", 3))
    assert all(w.isupper() for w in model.suggest("TH", 3))


def test_completion_ranks_by_context(model):
    # "c": cat vs came; after "the", "cat" is much likelier
    assert model.suggest("what the c", 1) == ["cat"]
    assert model.suggest("and the cat c", 1) == ["came"]


def test_sparse_and_dense_paths_agree(model, monkeypatch):
    import ngram

    for text in ["the ", "", "I don't ", "on the ", "t"]:
        dense = model.suggest(text, 5)
        monkeypatch.setattr(ngram, "DENSE_MAX", 0)
        sparse = model.suggest(text, 5)
        monkeypatch.setattr(ngram, "DENSE_MAX", 20000)
        assert dense == sparse, text


def test_topk_matches_dense_probs(model):
    for hist, text in [(["the"], "the "), (["sat", "on", "the"], "The cat sat on the "), ([], "")]:
        p = model.probs(hist)[: model.V]
        best = [model.words[i] for i in np.argsort(-p, kind="stable")[:3]]
        got = [w.lower() for w in model.suggest(text, 3)]
        assert got == best


def test_evaluate_with_model(model):
    m = ep.evaluate(model.suggest, CORPUS[:10])
    assert m["words"] > 0 and 0.3 < m["ksr"] < 1 and m["top3"] >= m["top1"] > 0.2


def test_cli(tmp_path, capsys):
    import json
    import ngram

    tr = tmp_path / "train.txt"
    tr.write_text("\n".join(CORPUS) + "\n")
    assert ngram.main(["--train", str(tr), "--eval", str(tr), "--eval", str(tr), "--json", "--max-lines", "5", "--ignore-case"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["eval"][str(tr)]) >= {"words", "top1", "top3", "ksr", "p50_ms", "p95_ms"}
