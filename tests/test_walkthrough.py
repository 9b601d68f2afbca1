"""docs/walkthrough.md cannot drift: its weights are read from the page, and every worked line must be on it.

The lines are produced here from the NumPy reference engine run on those weights. To rewrite the page after a
change, run ``python tests/test_walkthrough.py`` and paste the lines it prints.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import yaml

from rnnmt.config import Config, config_from_dict
from rnnmt.model import Seq2Seq
from rnnmt.reference import Encoded, ReferenceModel, ReferenceTranslator, softmax
from rnnmt.translator import Translator
from rnnmt.vocabulary import BOS, EOS, SPECIALS, WordTokenizer

DOC = Path(__file__).resolve().parents[1] / "docs" / "walkthrough.md"
SENTENCE = "come here"


def read_spec(text: str) -> dict:
    """The weights: the first ```yaml block of the page."""
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))


def vocabulary(words: dict) -> list[str]:
    return list(SPECIALS) + [word for word in words if word not in SPECIALS]


def embedding(words: dict) -> np.ndarray:
    """One row per vocabulary entry; the words the page does not list (<pad>, <unk>, ...) get zeros."""
    return np.array([words.get(word, [0.0, 0.0]) for word in vocabulary(words)], dtype=float)


def build(spec: dict) -> tuple[Config, dict[str, np.ndarray], WordTokenizer, WordTokenizer]:
    """The seed's model with a 2-unit state: the page's names mapped to the model's parameter names."""
    config = config_from_dict({"vocab": {"kind": "word"}, "model": {
        "cell": "rnn", "emb_size": 2, "hidden_size": 2, "attention": "none", "dropout": 0.0}})
    tgt_vocab = vocabulary(spec["target words"])
    assert list(spec["V_out"]) == tgt_vocab == list(spec["c_out"]), "V_out and c_out need a row per target word"
    weights = {"encoder.embed.weight": embedding(spec["source words"]), "encoder.rnn.W.0": spec["W"],
               "encoder.rnn.U.0": spec["U"], "encoder.rnn.b.0": spec["b"],
               "decoder.embed.weight": embedding(spec["target words"]), "decoder.rnn.W.0": spec["W_dec"],
               "decoder.rnn.U.0": spec["V"], "decoder.rnn.b.0": spec["c"],
               "decoder.output.weight": list(spec["V_out"].values()),
               "decoder.output.bias": list(spec["c_out"].values())}
    weights = {name: np.array(value, dtype=float) for name, value in weights.items()}
    return config, weights, WordTokenizer(vocabulary(spec["source words"])), WordTokenizer(tgt_vocab)


def num(x: float) -> str:
    """4 decimals at most, no trailing zeros: 0.5, -0.3799, 1."""
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def vec(v) -> str:
    return "[" + ", ".join(num(x) for x in v) + "]"


def term(x: float) -> str:
    return f"({num(x)})" if num(x).startswith("-") else num(x)


def product(name: str, matrix: np.ndarray, vector_name: str, vector: np.ndarray) -> str:
    """``W h_0 = [[...]] · [...] = [a·b + c·d, ...] = [...]``, the matrix product written out."""
    sums = ", ".join(" + ".join(f"{term(m)}·{term(x)}" for m, x in zip(row, vector, strict=True)) for row in matrix)
    return f"{name} {vector_name} = [{', '.join(vec(row) for row in matrix)}] · {vec(vector)} = [{sums}] = " \
           f"{vec(matrix @ vector)}"


def recurrence(out: str, W: str, prev: str, U: str, x: str, b: str, parts: list[np.ndarray], value: np.ndarray) -> str:
    """``h_t = tanh(W h_{t-1} + U x_t + b) = tanh([...]) = [...]``, checked against the engine's own value."""
    total = sum(parts)
    assert np.allclose(np.tanh(total), value, atol=1e-12)
    added = ", ".join(" + ".join(term(p[i]) for p in parts) for i in range(len(total)))
    return f"{out} = tanh({W} {prev} + {U} {x} + {b}) = tanh([{added}]) = tanh({vec(total)}) = {vec(value)}"


def encoder_lines(model: ReferenceModel, src: WordTokenizer, ids: list[int], encoded: Encoded) -> list[str]:
    w, lines, h = model.w, [], np.zeros(2)
    W, U, b = w["encoder.rnn.W.0"], w["encoder.rnn.U.0"], w["encoder.rnn.b.0"]
    for t, index in enumerate(ids, start=1):
        x = w["encoder.embed.weight"][index]
        lines += [f"x_{t} = E[{src.piece(index)}] = {vec(x)}", product("W", W, f"h_{t - 1}", h),
                  product("U", U, f"x_{t}", x),
                  recurrence(f"h_{t}", "W", f"h_{t - 1}", "U", f"x_{t}", "b", [W @ h, U @ x, b], encoded.states[t - 1])]
        h = encoded.states[t - 1]
    return lines + [f"s_0 = h_{len(ids)} = {vec(encoded.s0[0])}"]


def decoder_lines(model: ReferenceModel, tgt: WordTokenizer, encoded: Encoded) -> tuple[list[str], list[int]]:
    w, lines, chosen, s, word = model.w, [], [], encoded.s0, BOS
    W, V, c = w["decoder.rnn.W.0"], w["decoder.rnn.U.0"], w["decoder.rnn.b.0"]
    while not chosen or chosen[-1] != EOS:
        t, y, prev = len(chosen) + 1, w["decoder.embed.weight"][word], s[0]
        logits, s, _ = model.step(word, s, encoded)
        lines += [f"y_{t} = E_dec[{tgt.piece(word)}] = {vec(y)}", product("W_dec", W, f"s_{t - 1}", prev),
                  product("V", V, f"y_{t}", y),
                  recurrence(f"s_{t}", "W_dec", f"s_{t - 1}", "V", f"y_{t}", "c", [W @ prev, V @ y, c], s[0])]
        lines += [f"z_{t}[{tgt.piece(i)}] = {term(row[0])}·{term(s[0][0])} + {term(row[1])}·{term(s[0][1])}"
                  f" + {term(bias)} = {num(z)}" for i, (row, bias, z) in
                  enumerate(zip(w["decoder.output.weight"], w["decoder.output.bias"], logits, strict=True))]
        p, word = softmax(logits), int(np.argmax(logits))
        assert np.allclose(p, np.exp(logits) / np.exp(logits).sum(), atol=1e-12)
        lines += [f"exp(z_{t}) = {vec(np.exp(logits))}, sum {num(np.exp(logits).sum())}",
                  f"p_{t} = softmax(z_{t}) = exp(z_{t}) / {num(np.exp(logits).sum())} = {vec(p)}",
                  f"the most probable word: {tgt.piece(word)} (p = {num(p[word])})"]
        chosen.append(word)
    return lines, chosen[:-1]


def walkthrough_lines(text: str) -> list[str]:
    """Every worked line of the page, in order, from the reference engine run on the page's weights."""
    config, weights, src, tgt = build(read_spec(text))
    model = ReferenceModel(config.model, weights)
    ids = src.encode(SENTENCE) + [EOS]
    encoded = model.encode(ids)
    lines, chosen = decoder_lines(model, tgt, encoded)
    assert chosen == model.greedy(ids, config.search)[0]
    return encoder_lines(model, src, ids, encoded) + lines + [f"{SENTENCE} → {tgt.decode(chosen)}"]


def test_every_worked_line_is_on_the_page_in_order():
    text = DOC.read_text(encoding="utf-8")
    position = 0
    for line in walkthrough_lines(text):
        found = text.find(line, position)
        assert found >= 0, f"docs/walkthrough.md lacks, after character {position}, the line:\n{line}"
        position = found + len(line)


def test_the_engines_translate_the_page_alike():
    """The reference engine and the torch model, given the page's weights, give the page's translation."""
    text = DOC.read_text(encoding="utf-8")
    config, weights, src, tgt = build(read_spec(text))
    expected = walkthrough_lines(text)[-1].split(" → ")[1]
    assert ReferenceTranslator(ReferenceModel(config.model, weights), config, src, tgt).translate(SENTENCE) == expected
    model = Seq2Seq(config.model, src.size, tgt.size)
    model.load_state_dict({name: torch.tensor(value, dtype=torch.float32) for name, value in weights.items()})
    assert Translator(model, config, src, tgt).translate(SENTENCE, beam_size=1) == expected


if __name__ == "__main__":
    print("\n".join(walkthrough_lines(DOC.read_text(encoding="utf-8"))))
