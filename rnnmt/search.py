"""Search: the seed's greedy argmax (step 9), and batched beam search.

Both work on whole batches of sentences with no Python loop over sentences, only over output steps; for GRU
decoders TorchScript compiles the greedy loop over steps as well.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnmt.config import SearchConfig
from rnnmt.decoders import Decoder, DecoderState, Memory
from rnnmt.model import Seq2Seq
from rnnmt.vocabulary import BOS, EOS

log = logging.getLogger(__name__)


@dataclass
class Hypothesis:
    """One translation as token ids, with its model score and attention."""

    ids: list[int]  # Hindi token ids, without <s> and </s>
    log_prob: float  # log P(ids + </s> | source) under the model
    score: float  # what the search ranked by: log_prob, divided by the length penalty in beam search
    attention: Tensor | None  # (len(ids) + 1) x src_len, the last row for </s>; None without attention


def length_limits(src_len: Tensor, search: SearchConfig) -> Tensor:
    """The most output tokens (</s> included) each sentence may get (see ``SearchConfig.output_limit``)."""
    return torch.tensor([search.output_limit(n) for n in src_len.tolist()], device=src_len.device)


@torch.no_grad()
def greedy_search(model: Seq2Seq, src: Tensor, src_len: Tensor, search: SearchConfig | None = None,
                  loop: nn.Module | None = None) -> list[Hypothesis]:
    """Pick the most probable word at every step until </s> or the length limit (decoder steps 6-10).

    ``search`` gives the length limits (the defaults if None); ``loop`` is the model's :class:`GreedyLoop`,
    compiled or not (see :func:`greedy_loop`), by default a plain one.
    """
    _, memory, state = model.encode(src, src_len)
    return greedy_decode(model, memory, state, length_limits(src_len, search or SearchConfig()).to(src.device), loop)


def greedy_decode(model: Seq2Seq, memory: Memory, state: DecoderState, limits: Tensor,
                  loop: nn.Module | None = None) -> list[Hypothesis]:
    """The decoder's greedy loop from the hand-over state; ``limits`` caps each sentence's length."""
    loop = GreedyLoop(model.decoder) if loop is None else loop
    return collect_greedy(*loop(state.hidden, state.feed, memory.keys, memory.states, memory.mask, limits))


class GreedyLoop(nn.Module):
    """Steps 6-10 for a whole batch on plain tensors, so that TorchScript can compile the loop with its steps."""

    def __init__(self, decoder: Decoder):
        super().__init__()
        self.decoder = decoder
        self.bos, self.eos = BOS, EOS  # attributes: TorchScript reads no global ints

    def forward(self, hidden: Tensor, feed: Tensor | None, keys: Tensor, states: Tensor, mask: Tensor,
                limits: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Words and their log-probabilities (batch x steps), and alpha per step (none without attention)."""
        batch, device = limits.size(0), limits.device
        y = torch.full((batch, 1), self.bos, dtype=torch.long, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        tokens, log_probs, alphas = [], [], []
        first_limit = int(limits.min())
        for t in range(int(limits.max())):
            logits, hidden, feed, alpha = self.decoder.advance(y, hidden, feed, keys, states, mask)
            step_log_probs = torch.log_softmax(logits[:, -1].float(), dim=-1)  # batch x V (step 8)
            if t + 1 >= first_limit:  # rows at their length limit must end here
                step_log_probs = constrain(step_log_probs, torch.zeros_like(done), t + 1 >= limits, self.eos)
            best, word = step_log_probs.max(dim=-1)  # step 9: argmax and its log-probability at once
            tokens.append(word)
            log_probs.append(best)  # what follows a row's </s> is cut off by collect_greedy
            if alpha is not None:
                alphas.append(alpha)
            y = word[:, None]
            done |= word == self.eos
            if bool(done.all()):
                break
        return torch.stack(tokens, 1), torch.stack(log_probs, 1), alphas


def greedy_loop(decoder: Decoder) -> nn.Module:
    """``decoder``'s greedy loop, compiled by TorchScript when its recurrence is a GRU (fp32 or int8).

    Compiled, the ~30 small ops of each step no longer pass through Python one at a time, which halves the time
    of a sentence at batch 1 (benchmarks/README.md). torch 2.13 calls TorchScript deprecated in favour of
    torch.compile, but torch.compile cannot trace the int8 layers (their fbgemm weights break its graph), and
    the int8 path it can trace runs the output layer slower than fbgemm. The LSTM's (h, c) state, the seed's
    RNN and residual stacks run the same loop in Python, as does any model TorchScript cannot compile (it
    reads the source files, so an install without them gets a warning).
    """
    loop = GreedyLoop(decoder)
    if not isinstance(getattr(decoder, "rnn", None), (nn.GRU, torch.ao.nn.quantized.dynamic.GRU)):
        return loop  # another cell, or an ensemble's decoders
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=DeprecationWarning)
            return torch.jit.script(loop)
    except (RuntimeError, OSError) as error:  # TorchScript reads the source, which a frozen install may lack
        reason = str(error).strip().partition("\n")[0] or type(error).__name__
        log.warning("greedy search runs in Python, uncompiled: %s", reason)
        return loop


def collect_greedy(tokens: Tensor, log_probs: Tensor, alphas: list[Tensor]) -> list[Hypothesis]:
    """Cut each row at its first </s> and package it."""
    attention = torch.cat(alphas, dim=1) if alphas else None  # batch x steps x src_len
    hypotheses = []
    for row in range(tokens.size(0)):
        ids = tokens[row].tolist()
        length = ids.index(EOS) if EOS in ids else len(ids) - 1
        total = float(log_probs[row, : length + 1].sum())
        weights = attention[row, : length + 1] if attention is not None else None
        hypotheses.append(Hypothesis(ids[:length], total, total, weights))
    return hypotheses


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, src_len: Tensor, search: SearchConfig,
                loop: nn.Module | None = None) -> list[list[Hypothesis]]:
    """Keep the ``search.beam_size`` best prefixes of every sentence at once; return each one's ``search.n_best``.

    All sentences' beams live in one batch of batch * beam rows. A finished beam stays in place and can only
    be extended by </s> at no cost, so it keeps competing on its score. Finals are ranked by
    ``log_prob / ((5 + length) / 6) ** length_penalty`` (Wu et al., 2016); beam size 1 is greedy search.
    """
    batch, k = src.size(0), search.beam_size
    _, memory, state = model.encode(src, src_len)
    limits = length_limits(src_len, search).to(src.device)
    greedy = greedy_decode(model, memory, state, limits, loop)
    rows = torch.arange(batch, device=src.device).repeat_interleave(k)  # (batch * k)
    memory, state, limits = memory.select(rows), state.select(rows), limits[rows]
    scores = torch.full((batch, k), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # only the first beam is live before the first word
    y = torch.full((batch * k, 1), BOS, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=src.device)
    trail: list[tuple[Tensor, Tensor, Tensor | None]] = []  # (origin, token, alpha) per step
    for t in range(int(limits.max())):
        logits, state, alpha = model.decoder.step(y, state, memory)
        log_probs = constrain(torch.log_softmax(logits[:, -1].float(), dim=-1), finished, t + 1 >= limits)
        origin, token, best = best_extensions(scores, log_probs, k)
        trail.append((origin, token, alpha))
        state, scores, y = state.select(origin), best, token[:, None]
        finished = finished[origin] | (token == EOS)
        if bool(finished.all()):
            break
    return collect_beams(trail, scores, greedy, k, search.n_best, search.length_penalty)


def best_extensions(scores: Tensor, log_probs: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The k best (beam, word) extensions of each sentence: origin rows and words (batch * k), scores (batch x k).

    Only a row's own k best words can be among its sentence's k best, so the search ranks k * k candidates
    per sentence instead of k * V: the same result, at half the cost of one top-k over every word.
    """
    batch = scores.size(0)
    word_scores, words = log_probs.topk(k, dim=-1)  # (batch * k) x k
    candidates = (scores.view(-1, 1) + word_scores).view(batch, k * k)
    best, pick = candidates.topk(k, dim=1)  # batch x k
    origin = (pick // k + torch.arange(batch, device=scores.device)[:, None] * k).view(-1)
    return origin, words.view(batch, k * k).gather(1, pick).view(-1), best


def constrain(log_probs: Tensor, finished: Tensor, at_limit: Tensor, eos: int = EOS) -> Tensor:
    """Finished rows may only add </s> at no cost; rows at their length limit must end now."""
    forced = finished | at_limit
    if not bool(forced.any()):
        return log_probs
    eos_scores = log_probs[:, eos].clone()
    log_probs = log_probs.masked_fill(forced[:, None], float("-inf"))
    log_probs[:, eos] = torch.where(finished, torch.zeros_like(eos_scores), eos_scores)
    return log_probs


def collect_beams(trail: list, scores: Tensor, greedy: list[Hypothesis], k: int, n_best: int,
                  length_penalty: float) -> list[list[Hypothesis]]:
    """Follow the back-pointers from each final beam, cut at </s>, rank with the greedy result, keep n best.

    The greedy translation joins the finals, so the best result never scores below greedy search's.
    """
    row = torch.arange(scores.numel(), device=scores.device)
    tokens, alphas = [], []
    for origin, token, alpha in reversed(trail):
        tokens.append(token[row])
        row = origin[row]  # alpha was computed before this step's reordering
        alphas.append(alpha[row] if alpha is not None else None)
    tokens = torch.stack(tokens[::-1], 1).tolist()
    attention = torch.cat(alphas[::-1], 1) if alphas[0] is not None else None  # (batch * k) x steps x src
    totals = scores.view(-1).tolist()
    results = []
    for b, fallback in enumerate(greedy):
        finals = {}
        for i in range(b * k, (b + 1) * k):
            length = tokens[i].index(EOS) if EOS in tokens[i] else len(tokens[i]) - 1
            weights = attention[i, : length + 1] if attention is not None else None
            finals.setdefault(tuple(tokens[i][:length]), Hypothesis(tokens[i][:length], totals[i], 0.0, weights))
        finals.setdefault(tuple(fallback.ids), fallback)
        ranked = [penalize(h, length_penalty) for h in finals.values()]
        results.append(sorted(ranked, key=lambda h: h.score, reverse=True)[:n_best])
    return results


def penalize(hypothesis: Hypothesis, exponent: float) -> Hypothesis:
    """Score by ``log_prob / ((5 + length) / 6) ** exponent``, length counting </s> (GNMT's length penalty)."""
    penalty = ((5.0 + len(hypothesis.ids) + 1) / 6.0) ** exponent
    return Hypothesis(hypothesis.ids, hypothesis.log_prob, hypothesis.log_prob / penalty, hypothesis.attention)
