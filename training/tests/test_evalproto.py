import evalproto as ep
import pytest


@pytest.mark.parametrize(
    "text, expected",
    [
        ("don't stop", ["don't", "stop"]),
        ("I won\u2019t", ["I", "won\u2019t"]),
        ("the 3rd place", ["the", "3rd", "place"]),
        ('"hello," she said.', ["hello", "she", "said"]),
        ("émigré", ["émigré"]),
        ("e\u0301migre\u0301 x", ["e\u0301migre\u0301", "x"]),  # NFD: marks stay inside
        ("I \u2764\ufe0f you \U0001F600!", ["I", "you"]),
        ("ok\U0001F44D\U0001F3FDgreat", ["ok", "great"]),
        ("'cause the dogs' bone", ["cause", "the", "dogs", "bone"]),
        ("rock'n'roll", ["rock'n'roll"]),
        ("it''s", ["it", "s"]),
        ("snake_case", ["snake", "case"]),
        ("a-b c.d 4.5 $10", ["a", "b", "c", "d", "4", "5", "10"]),
        ("日本語 text", ["日本語", "text"]),
        ("   ", []),
    ],
)
def test_word_split(text, expected):
    assert ep.words(text) == expected


def test_word_spans_context():
    line = "Hi, how're you?"
    spans = ep.word_spans(line)
    assert [(line[:s], w) for s, _, w in spans] == [("", "Hi"), ("Hi, ", "how're"), ("Hi, how're ", "you")]


def test_key():
    assert ep.key("Don\u2019t") == "Don't"
    assert ep.key("Don\u2019t", ignore_case=True) == "don't"


def test_percentile_nearest_rank():
    v = list(range(1, 101))
    assert ep.percentile(v, 50) == 50
    assert ep.percentile(v, 95) == 95
    assert ep.percentile([7.0], 95) == 7.0
    assert ep.percentile([], 50) == 0.0


def _oracle(lines):
    """Knows the text: replays the expected calls, always right at j=0."""
    expected = [(line[:s], w) for line in lines for s, _, w in ep.word_spans(line)]
    it = iter(expected)

    def fn(text, k):
        ctx, w = next(it)
        assert text == ctx and k == 3
        return [w, "zzz", "yyy"][:k]

    return fn


LINES = ["Hello there, how are you?", "I don't know", "", "3rd time's the charm \U0001F600"]


def test_oracle_perfect():
    m = ep.evaluate(_oracle(LINES), LINES)
    ws = [w for l in LINES for w in ep.words(l)]
    assert m["words"] == len(ws) == 12
    assert m["top1"] == 1.0 and m["top3"] == 1.0
    assert m["ksr"] == pytest.approx(1 - len(ws) / sum(len(w) + 1 for w in ws))
    assert m["calls"] == len(ws)
    assert m["p95_ms"] >= m["p50_ms"] >= 0.0


def test_never_right():
    lines = ["ab cde"]
    calls = []

    def fn(text, k):
        calls.append((text, k))
        return ["nope"]

    m = ep.evaluate(fn, lines)
    assert m == {**m, "words": 2, "top1": 0.0, "top3": 0.0, "ksr": 0.0}
    assert calls == [("", 3), ("a", 3), ("ab ", 3), ("ab c", 3), ("ab cd", 3)]


def test_known_costs_and_ranks():
    # "hello": found 2nd at j=0 (top3, not top1), cost 1
    # "world": found at j=2 ("wo" typed), cost 3
    lines = ["hello world"]

    def fn(text, k):
        if text == "":
            return ["hi", "hello", "hey"]
        if text == "hello wo":
            return ["wonder", "world", "work"]
        return ["x", "y", "z"]

    m = ep.evaluate(fn, lines)
    assert m["top1"] == 0.0 and m["top3"] == 0.5
    assert m["keystrokes"] == 1 + 3
    assert m["ksr"] == pytest.approx(1 - 4 / 12)


def test_only_first_k_suggestions_count():
    def fn(text, k):
        return ["a", "b", "c", "word"]  # the 4th is ignored

    m = ep.evaluate(fn, ["word"])
    assert m["top3"] == 0.0 and m["ksr"] == 0.0


def test_case_sensitivity():
    lines = ["Hello"]

    def fn(text, k):
        return ["hello"]

    assert ep.evaluate(fn, lines)["top1"] == 0.0
    m = ep.evaluate(fn, lines, ignore_case=True)
    assert m["top1"] == 1.0 and m["ksr"] == pytest.approx(1 - 1 / 6)


def test_curly_apostrophe_matches_straight():
    m = ep.evaluate(lambda t, k: ["don't"], ["don\u2019t"])
    assert m["top1"] == 1.0


def test_load_lines(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("a b\r\n\nc\u2028d\n".encode())
    assert ep.load_lines(str(p)) == ["a b", "", "c\u2028d"]
    assert ep.load_lines(str(p), max_lines=1) == ["a b"]
