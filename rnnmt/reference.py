"""A plain-NumPy reference of the seed's equations: read each one beside the note, and check the torch model by it.

    >>> from rnnmt.reference import ReferenceTranslator
    >>> ReferenceTranslator.load("models/default").translate("How are you?")

It reads the same model folder as ``Translator``, through the same reader (``model_folder.read_model_folder``),
with NumPy, PyYAML, safetensors and SentencePiece alone: importing it never imports torch. It computes in float64, one
sentence at a time, with every loop over time written out.

Supported: the seed's ``rnn`` cell and the ``gru``; any number of layers; a bidirectional encoder and its bridge;
h0 zeros or learned; attention ``none``, ``luong_dot``, ``luong_general`` and ``bahdanau``; greedy search. The
loss and its gradient by backpropagation through time (BPTT) are there for the seed's own model: the rnn cell,
one layer on each side, one direction, no attention. The ``lstm`` cell and input feeding raise UnsupportedModel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnmt.config import Config, ModelConfig, SearchConfig
from rnnmt.data import normalize_english
from rnnmt.errors import UnsupportedModel
from rnnmt.model_folder import read_model_folder
from rnnmt.vocabulary import BOS, EOS, Tokenizer, detokenize, encode_source, source_pieces

Params = dict[str, np.ndarray]  # torch's parameter names -> float64 arrays



def softmax(z: np.ndarray) -> np.ndarray:
    """``softmax(z)_i = exp(z_i) / sum_j exp(z_j)`` on the last axis (z - max z first: same value, no overflow)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``sigmoid(z) = 1 / (1 + exp(-z))``, the gates' squashing function."""
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class Layer:
    """One recurrent layer in one direction, with the seed's W, U and b; a GRU stacks its gates [r; z; n]."""

    cell: str  # "rnn" or "gru"
    W: np.ndarray  # hidden x hidden (GRU: 3*hidden x hidden), applied to h_{t-1}
    U: np.ndarray  # hidden x input (GRU: 3*hidden x input), applied to x_t
    b: np.ndarray  # hidden (GRU: 3*hidden)
    b_W: np.ndarray | None = None  # GRU only: torch's second bias, added to W h_{t-1}

    def step(self, h: np.ndarray, x: np.ndarray) -> np.ndarray:
        """h_t from h_{t-1} (hidden) and x_t (input): the seed's step 4."""
        if self.cell == "rnn":
            return np.tanh(self.W @ h + self.U @ x + self.b)  # h_t = tanh(W h_{t-1} + U x_t + b)
        return gru_step(self, h, x)

    def run(self, xs: np.ndarray, h0: np.ndarray) -> np.ndarray:
        """h_1 .. h_T (T x hidden) from h_0 and the inputs x_1 .. x_T (T x input): the seed's step 6."""
        hs, h = [], h0
        for x in xs:
            h = self.step(h, x)
            hs.append(h)
        return np.stack(hs)


def gru_step(layer: Layer, h: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The GRU as torch computes it, with U = weight_ih, W = weight_hh, b = bias_ih and b_W = bias_hh:

        r_t = sigmoid(U_r x_t + b_r + W_r h_{t-1} + b_Wr)          how much of h_{t-1} the candidate sees
        z_t = sigmoid(U_z x_t + b_z + W_z h_{t-1} + b_Wz)          how much of h_{t-1} is kept
        n_t = tanh(U_n x_t + b_n + r_t * (W_n h_{t-1} + b_Wn))     the candidate: the seed's tanh, gated
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    """
    u_r, u_z, u_n = np.split(layer.U @ x + layer.b, 3)  # each hidden
    w_r, w_z, w_n = np.split(layer.W @ h + layer.b_W, 3)
    r, z = sigmoid(u_r + w_r), sigmoid(u_z + w_z)
    n = np.tanh(u_n + r * w_n)
    return (1.0 - z) * n + z * h


Stack = list[list[Layer]]  # layers x directions


def read_stack(weights: Params, prefix: str, cell: str, layers: int, directions: int) -> Stack:
    """The layers saved under ``prefix`` (``encoder.rnn``): SeedRNN's W.i, U.i, b.i or nn.GRU's weight_ih_l0..."""
    stack = []
    for layer in range(layers):
        stack.append([])
        for direction in range(directions):
            if cell == "rnn":
                i = layer * directions + direction
                stack[-1].append(Layer("rnn", *(weights[f"{prefix}.{name}.{i}"] for name in ("W", "U", "b"))))
            else:
                end = f"l{layer}" + ("_reverse" if direction else "")
                stack[-1].append(Layer("gru", *(weights[f"{prefix}.{name}_{end}"] for name in
                                                ("weight_hh", "weight_ih", "bias_ih", "bias_hh"))))
    return stack


def run_encoder(stack: Stack, xs: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every top-layer h_t (T x dirs*hidden) and each layer's last h_T (layers x dirs*hidden).

    Layer l reads the h_t of layer l-1. A backward direction reads the sentence right to left; its h_t sit
    beside the forward ones, and its last state is the one at the first word. h0: (layers*dirs) x hidden.
    """
    finals = []
    for index, directions in enumerate(stack):
        outputs = []
        for d, layer in enumerate(directions):
            hs = layer.run(xs[::-1] if d else xs, h0[index * len(directions) + d])  # T x hidden
            finals.append(hs[-1])
            outputs.append(hs[::-1] if d else hs)
        xs = np.concatenate(outputs, axis=-1)  # T x dirs*hidden
    return xs, np.stack(finals).reshape(len(stack), -1)


def stack_step(stack: Stack, s: np.ndarray, x: np.ndarray) -> np.ndarray:
    """s_t of every layer (layers x hidden) from s_{t-1} of every layer; each layer's s_t is the next one's input."""
    new = []
    for (layer,), s_prev in zip(stack, s, strict=True):
        x = layer.step(s_prev, x)
        new.append(x)
    return np.stack(new)


@dataclass
class Encoded:
    """What the encoder hands on: the states attention reads, and the decoder's first state s_0."""

    states: np.ndarray  # src_len x memory: every top-layer h_t (step 6)
    keys: np.ndarray  # src_len x key: what attention compares s_t with
    s0: np.ndarray  # decoder_layers x hidden: the state handed to the decoder (encoder step 7)


def check_supported(config: ModelConfig) -> None:
    """Refuse, by name, the settings the NumPy reference does not implement."""
    if config.cell not in ("rnn", "gru"):
        raise UnsupportedModel(f"model.cell is {config.cell!r}; the NumPy reference supports rnn and gru")
    if config.input_feeding:
        raise UnsupportedModel("model.input_feeding is true; the NumPy reference supports no input feeding")
    if config.residual and max(config.encoder_layers, config.decoder_layers) > 1:
        raise UnsupportedModel("model.residual is true; the NumPy reference supports plain stacked layers only")


class ReferenceModel:
    """``rnnmt.model.Seq2Seq`` in NumPy, for one sentence at a time, from the same weights."""

    def __init__(self, config: ModelConfig, weights: Params):
        check_supported(config)
        self.config = config
        self.w = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
        directions = config.directions
        self.encoder = read_stack(self.w, "encoder.rnn", config.cell, config.encoder_layers, directions)
        self.decoder = read_stack(self.w, "decoder.rnn", config.cell, config.decoder_layers, 1)
        shape = (config.encoder_layers * directions, config.hidden_size)
        self.h0 = self.w["encoder.h0"][:, 0] if "encoder.h0" in self.w else np.zeros(shape)  # step 3

    def encode(self, src: list[int]) -> Encoded:
        """Steps 1-7: x_t = E[w_t], every h_t from h_0, and s_0 from the last h_T."""
        xs = self.w["encoder.embed.weight"][src]  # src_len x emb (step 1)
        states, final = run_encoder(self.encoder, xs, self.h0)
        return Encoded(states, self.keys(states), self.hand_over(final))

    def hand_over(self, final: np.ndarray) -> np.ndarray:
        """s_0 = h_T layer by layer (the top h_T for each layer when the counts differ), or ``B h_T + b_B``."""
        layers = self.config.decoder_layers
        if len(final) != layers:
            final = np.repeat(final[-1:], layers, axis=0)  # layers x memory
        if "bridge.weight" in self.w:  # only when the sizes differ, as in Seq2Seq
            final = final @ self.w["bridge.weight"].T + self.w["bridge.bias"]
        return final

    def keys(self, states: np.ndarray) -> np.ndarray:
        """k_j = h_j (luong_dot), W_a h_j (luong_general) or W_h h_j (bahdanau): src_len x key."""
        name = {"luong_general": "W_a", "bahdanau": "W_h"}.get(self.config.attention)
        return states @ self.w[f"decoder.attention.{name}.weight"].T if name else states

    def attend(self, s: np.ndarray, encoded: Encoded) -> tuple[np.ndarray, np.ndarray]:
        """``alpha_t = softmax_j(score(s, h_j))`` and ``ctx_t = sum_j alpha_tj h_j``.

        score(s, h_j) is ``s . k_j`` (Luong) or ``v . tanh(W_s s + k_j)`` (Bahdanau).
        """
        if self.config.attention == "bahdanau":
            summed = np.tanh(self.w["decoder.attention.W_s.weight"] @ s + encoded.keys)  # src_len x key
            scores = summed @ self.w["decoder.attention.v.weight"][0]
        else:
            scores = encoded.keys @ s  # src_len
        alpha = softmax(scores)
        return alpha @ encoded.states, alpha

    def step(self, y: int, s: np.ndarray, encoded: Encoded) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Decoder steps 6-8: ``s_t = tanh(W_dec s_{t-1} + V y_t + c)``, then the logits ``V_out s_t + c_out``.

        y is the word chosen last. With attention the logits read ``o_t = W_c [s_t; ctx_t] + b_c``
        instead of s_t; Bahdanau's ctx_t is computed from s_{t-1} and also feeds the recurrence.
        Returns the logits (tgt_vocab), s_t of every layer (layers x hidden) and alpha_t (src_len) or None.
        """
        x = self.w["decoder.embed.weight"][y]  # emb: y_t embedded
        ctx = alpha = None
        if self.config.attention == "bahdanau":
            ctx, alpha = self.attend(s[-1], encoded)
            x = np.concatenate([x, ctx])
        s = stack_step(self.decoder, s, x)
        if self.config.attention in ("luong_dot", "luong_general"):
            ctx, alpha = self.attend(s[-1], encoded)
        out = s[-1] if ctx is None else (
            self.w["decoder.combine.weight"] @ np.concatenate([s[-1], ctx]) + self.w["decoder.combine.bias"])
        if "decoder.project.weight" in self.w:  # tied embeddings of another size than the state: P o_t
            out = self.w["decoder.project.weight"] @ out
        return self.w["decoder.output.weight"] @ out + self.w["decoder.output.bias"], s, alpha

    def greedy(self, src: list[int], search: SearchConfig) -> tuple[list[int], list[np.ndarray | None]]:
        """Decoder steps 6-10: the word of highest probability in ``softmax(V_out s_t + c_out)``, fed back, until </s>.

        src ends with </s>; the last step allowed by ``search.output_limit`` gives </s>. Returns the ids without
        </s>, and alpha_t of every step.
        """
        encoded = self.encode(src)
        limit = search.output_limit(len(src))
        s, y, ids, alphas = encoded.s0, BOS, [], []
        for t in range(limit):
            logits, s, alpha = self.step(y, s, encoded)
            y = EOS if t + 1 >= limit else int(np.argmax(logits))  # step 9: argmax of softmax = argmax of logits
            alphas.append(alpha)
            if y == EOS:
                break
            ids.append(y)
        return ids, alphas


def check_seed_model(config: ModelConfig) -> None:
    """BPTT here covers the seed's own model; name the first setting that differs from it."""
    seed = {"cell": "rnn", "encoder_layers": 1, "decoder_layers": 1, "bidirectional": False, "attention": "none"}
    for name, value in seed.items():
        if getattr(config, name) != value:
            raise UnsupportedModel(f"model.{name} is {getattr(config, name)!r}; the NumPy BPTT needs the seed's"
                                   f" model ({', '.join(f'{k}: {v}' for k, v in seed.items())})")


def rnn_backward(layer: Layer, xs: np.ndarray, h0: np.ndarray, hs: np.ndarray,
                 dhs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BPTT through ``h_t = tanh(a_t)``, ``a_t = W h_{t-1} + U x_t + b``, from the last step back to the first.

    dhs (T x hidden) is dL/dh_t from outside the recurrence (the outputs, or s_0 for the encoder). Then

        dL/da_t = (dhs_t + W^T dL/da_{t+1}) * (1 - h_t^2)        tanh'(a) = 1 - tanh(a)^2
        dL/dW = sum_t dL/da_t h_{t-1}^T    dL/dU = sum_t dL/da_t x_t^T    dL/db = sum_t dL/da_t

    Returns dL/dW, dL/dU, dL/db, dL/dx_t (T x input) and dL/dh_0.
    """
    previous = np.vstack([h0[None], hs[:-1]])  # T x hidden: h_{t-1}
    das, carried = np.zeros_like(hs), np.zeros_like(h0)  # carried: W^T dL/da_{t+1}
    for t in reversed(range(len(hs))):
        das[t] = (dhs[t] + carried) * (1.0 - hs[t] ** 2)
        carried = layer.W.T @ das[t]
    return das.T @ previous, das.T @ xs, das.sum(0), das @ layer.U, carried


def side_gradients(side: str, layer: Layer, xs: np.ndarray, h0: np.ndarray, hs: np.ndarray, dhs: np.ndarray,
                   ids: list[int], vocab: int) -> tuple[Params, np.ndarray]:
    """The encoder's or decoder's gradients under torch's names, and dL/dh_0; dL/dE[w] sums dL/dx_t where w was read."""
    dW, dU, db, dxs, dh0 = rnn_backward(layer, xs, h0, hs, dhs)
    dE = np.zeros((vocab, xs.shape[1]))
    np.add.at(dE, ids, dxs)
    return {f"{side}.rnn.W.0": dW, f"{side}.rnn.U.0": dU, f"{side}.rnn.b.0": db, f"{side}.embed.weight": dE}, dh0


def loss_and_gradients(model: ReferenceModel, src: list[int], tgt: list[int]) -> tuple[float, Params]:
    """``L = -sum_t log y_t[w_t]`` under teacher forcing, and dL/dθ for every weight by BPTT (the seed's model).

    src ends with </s>; tgt is the Hindi ids, without <s> or </s>. The decoder reads <s> w_1 .. w_n and must
    predict w_1 .. w_n </s>, with ``y_t = softmax(z_t)`` and ``z_t = V_out s_t + c_out``, so
    ``dL/dz_t = y_t - onehot(w_t)``.
    The gradients carry torch's parameter names.
    """
    check_seed_model(model.config)
    w, encoder, decoder = model.w, model.encoder[0][0], model.decoder[0][0]
    V, targets, steps = w["decoder.output.weight"], np.array([*tgt, EOS]), np.arange(len(tgt) + 1)
    x_src, x_tgt = w["encoder.embed.weight"][src], w["decoder.embed.weight"][[BOS, *tgt]]  # len x emb
    hs = encoder.run(x_src, model.h0[0])  # src_len x hidden: h_1 .. h_T
    ss = decoder.run(x_tgt, hs[-1])  # (n+1) x hidden: s_1 .. s_{n+1}, from s_0 = h_T
    ys = softmax(ss @ V.T + w["decoder.output.bias"])  # (n+1) x tgt_vocab
    dz = ys.copy()
    dz[steps, targets] -= 1.0  # dL/dz_t
    grads = {"decoder.output.weight": dz.T @ ss, "decoder.output.bias": dz.sum(0)}
    decoder_grads, ds0 = side_gradients("decoder", decoder, x_tgt, hs[-1], ss, dz @ V, [BOS, *tgt], len(V))
    dhs = np.zeros_like(hs)
    dhs[-1] = ds0  # L reaches the encoder only through s_0 = h_T
    encoder_grads, dh0 = side_gradients("encoder", encoder, x_src, model.h0[0], hs, dhs, src,
                                        len(w["encoder.embed.weight"]))
    grads.update(decoder_grads | encoder_grads)
    if "encoder.h0" in w:
        grads["encoder.h0"] = dh0.reshape(w["encoder.h0"].shape)
    return float(-np.log(ys[steps, targets]).sum()), grads


class ReferenceTranslator:
    """A model folder translated by the NumPy reference with greedy search: NumPy and SentencePiece, no torch."""

    def __init__(self, model: ReferenceModel, config: Config, src: Tokenizer, tgt: Tokenizer):
        self.model, self.config, self.src, self.tgt = model, config, src, tgt

    @classmethod
    def load(cls, path: str | Path) -> ReferenceTranslator:
        """Read a model folder as ``Translator.load`` does, through the same reader."""
        folder = read_model_folder(path)
        return cls(ReferenceModel(folder.config.model, folder.weights), folder.config, folder.src, folder.tgt)

    def translate(self, text: str) -> str:
        """Hindi for one English text, as ``Translator.translate(text, beam_size=1)`` gives it."""
        source, s = normalize_english(text), self.config.search
        if not source:
            return ""
        ids, alphas = self.model.greedy(encode_source(self.src, source, s.max_src_len), s)
        copy = s.replace_unk and alphas[0] is not None  # copy the most attended source word for <unk>
        looked_at = [int(np.argmax(a)) for a in alphas[: len(ids)]] if copy else None
        return detokenize(ids, source_pieces(self.src, source, s.max_src_len), self.src, self.tgt, looked_at)
