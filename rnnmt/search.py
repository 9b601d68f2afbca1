"""Search: the seed's greedy argmax (step 9), batched beam search, and lexically constrained beam search.

All work on whole batches of sentences with no Python loop over sentences, only over output steps; for GRU
decoders TorchScript compiles the greedy loop over steps as well. Constrained beam search (Post and Vilar's
dynamic beam allocation, at the end of this file) puts given token sequences, such as a glossary's terms, into
every output; without constraints, beam search runs as if it did not exist.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnmt.config import SearchConfig
from rnnmt.decoders import Decoder, DecoderState, Memory
from rnnmt.model import Seq2Seq
from rnnmt.vocabulary import BOS, EOS, PAD

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
def beam_search(model: Seq2Seq, src: Tensor, src_len: Tensor, search: SearchConfig, loop: nn.Module | None = None,
                constraints: list[list[list[int]]] | None = None, glue: Tensor | None = None
                ) -> list[list[Hypothesis]]:
    """Keep the ``search.beam_size`` best prefixes of every sentence at once; return each one's ``search.n_best``.

    All sentences' beams live in one batch of batch * beam rows. A finished beam stays in place and can only
    be extended by </s> at no cost, so it keeps competing on its score. Finals are ranked by
    ``log_prob / ((5 + length) / 6) ** length_penalty`` (Wu et al., 2016); beam size 1 is greedy search.
    With ``constraints`` (for each sentence, the token sequences its output must contain) the search is
    :func:`constrained_beam_search` (``glue`` is its).
    """
    if constraints is not None:
        return constrained_beam_search(model, src, src_len, search, constraints, loop, glue)
    k = search.beam_size
    _, memory, state = model.encode(src, src_len)
    limits = length_limits(src_len, search).to(src.device)
    greedy = greedy_decode(model, memory, state, limits, loop)
    trail, scores = run_beams(model, memory, state, limits, k,
                              lambda scores, log_probs, free, slots: best_extensions(scores, log_probs, k))
    return collect_beams(trail, scores, greedy, k, search.n_best, search.length_penalty)


Choose = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]


def run_beams(model: Seq2Seq, memory: Memory, state: DecoderState, limits: Tensor, k: int,
              choose: Choose) -> tuple[list[tuple[Tensor, Tensor, Tensor | None]], Tensor]:
    """The loop of beam search, plain or constrained: k beams per sentence, one decoder step at a time.

    ``choose(scores, log_probs, free, slots)`` picks the next beams from the beams' scores (batch x k) and
    next-word log-probabilities (batch * k x V, finished rows and rows at their limit already forced to </s>):
    their origin rows and words (batch * k) and scores (batch x k). ``free`` marks the rows so forced, ``slots``
    the words each row may still add before </s>. Returns the (origin, word, attention) of every step and the
    final scores; it stops when every beam has ended or is empty (scored -inf).
    """
    batch, device = limits.size(0), limits.device
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # (batch * k)
    memory, state, limits = memory.select(rows), state.select(rows), limits[rows]
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # only the first beam is live before the first word
    y = torch.full((batch * k, 1), BOS, dtype=torch.long, device=device)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    trail: list[tuple[Tensor, Tensor, Tensor | None]] = []  # (origin, token, alpha) per step
    for t in range(int(limits.max())):
        logits, state, alpha = model.decoder.step(y, state, memory)
        at_limit = t + 1 >= limits
        log_probs = constrain(torch.log_softmax(logits[:, -1].float(), dim=-1), finished, at_limit)  # rows x V
        origin, token, scores = choose(scores, log_probs, finished | at_limit, limits - 1 - t)
        trail.append((origin, token, alpha))
        state, y = state.select(origin), token[:, None]
        finished = finished[origin] | (token == EOS)
        if bool((finished | (scores.view(-1) == float("-inf"))).all()):  # every beam ended, or empty
            break
    return trail, scores


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


def collect_beams(trail: list, scores: Tensor, greedy: list[Hypothesis | None], k: int, n_best: int,
                  length_penalty: float) -> list[list[Hypothesis]]:
    """Follow the back-pointers from each final beam, cut at </s>, rank with the greedy result, keep n best.

    The greedy translation joins the finals, so the best result never scores below greedy search's; a sentence
    with constraints has none (None), and a beam left empty (scored -inf) is no final.
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
            if totals[i] == float("-inf"):
                continue
            length = tokens[i].index(EOS) if EOS in tokens[i] else len(tokens[i]) - 1
            weights = attention[i, : length + 1] if attention is not None else None
            finals.setdefault(tuple(tokens[i][:length]), Hypothesis(tokens[i][:length], totals[i], 0.0, weights))
        if fallback is not None:
            finals.setdefault(tuple(fallback.ids), fallback)
        ranked = [penalize(h, length_penalty) for h in finals.values()]
        results.append(sorted(ranked, key=lambda h: h.score, reverse=True)[:n_best])
    return results


def penalize(hypothesis: Hypothesis, exponent: float) -> Hypothesis:
    """Score by ``log_prob / ((5 + length) / 6) ** exponent``, length counting </s> (GNMT's length penalty)."""
    penalty = ((5.0 + len(hypothesis.ids) + 1) / 6.0) ** exponent
    return Hypothesis(hypothesis.ids, hypothesis.log_prob, hypothesis.log_prob / penalty, hypothesis.attention)


# Lexically constrained decoding: Post and Vilar, "Fast Lexically Constrained Decoding with Dynamic Beam Allocation
# for Neural Machine Translation" (NAACL 2018), as Sockeye implements it (sockeye/lexical_constraints.py), batched.


@dataclass
class Constraints:
    """The token sequences each sentence's (or beam row's) output must contain, padded to C sequences of L ids."""

    tokens: Tensor  # rows x C x L: each constraint's target ids, PAD after its end
    lengths: Tensor  # rows x C: each constraint's length, 0 for a padding constraint

    @classmethod
    def of(cls, constraints: list[list[list[int]]], device: torch.device) -> Constraints:
        """Padded tensors of each sentence's constraints; an empty one or one holding a special token is refused."""
        count = max([1] + [len(sequences) for sequences in constraints])
        longest = max([1] + [len(ids) for sequences in constraints for ids in sequences])
        tokens = torch.full((len(constraints), count, longest), PAD, dtype=torch.long)
        lengths = torch.zeros(len(constraints), count, dtype=torch.long)
        for b, sequences in enumerate(constraints):
            for c, ids in enumerate(sequences):
                if not ids or min(ids) <= EOS:
                    raise ValueError(f"sentence {b}, constraint {c}: {ids} is empty or holds a special token")
                tokens[b, c, : len(ids)] = torch.tensor(ids)
                lengths[b, c] = len(ids)
        return cls(tokens.to(device), lengths.to(device))

    def select(self, rows: Tensor) -> Constraints:
        return Constraints(self.tokens.index_select(0, rows), self.lengths.index_select(0, rows))

    @property
    def total(self) -> Tensor:
        """The constraint tokens each row must produce (rows): its banks are numbered 0 to this."""
        return self.lengths.sum(1)


@dataclass
class Progress:
    """Where hypotheses stand on their constraints: which are met, and how far each is inside one (DBA's state).

    The leading axes are rows (one per beam), or rows x candidates for the extensions of :func:`advance`.
    """

    met: Tensor  # ... x C, bool: the whole constraint has been produced
    inside: Tensor  # ...: the constraint being produced, -1 for none
    done: Tensor  # ...: the tokens of that one produced so far (0 outside one)
    ended: Tensor  # ..., bool: the last word completed a constraint

    @classmethod
    def start(cls, rows: int, count: int, device: torch.device) -> Progress:
        """Nothing met yet."""
        nothing = torch.zeros(rows, dtype=torch.bool, device=device)
        return cls(torch.zeros(rows, count, dtype=torch.bool, device=device),
                   torch.full((rows,), -1, dtype=torch.long, device=device),
                   torch.zeros(rows, dtype=torch.long, device=device), nothing)

    def pick(self, index: Tensor) -> Progress:
        """The states at ``index`` of the flattened leading axes (rows, or rows x candidates)."""
        flat = self.inside.numel()
        return Progress(self.met.reshape(flat, -1)[index], self.inside.reshape(flat)[index],
                        self.done.reshape(flat)[index], self.ended.reshape(flat)[index])

    def met_tokens(self, lengths: Tensor) -> Tensor:
        """The constraint tokens produced (...), whole constraints and the one in progress: the hypothesis's bank."""
        return (self.met * lengths).sum(-1) + self.done


def next_tokens(progress: Progress, cons: Constraints) -> tuple[Tensor, Tensor]:
    """Each row's next token of each constraint (rows x C), and whether it may take it now (rows x C): inside a
    constraint only that one's next token, else the first token of every unmet one."""
    which = torch.arange(cons.lengths.size(1), device=cons.lengths.device)
    current = which == progress.inside[:, None]  # rows x C
    position = torch.where(current, progress.done[:, None], 0)  # rows x C
    tokens = cons.tokens.gather(2, position[..., None])[..., 0]  # rows x C
    allowed = torch.where((progress.inside >= 0)[:, None], current, ~progress.met & (cons.lengths > 0))
    return tokens, allowed


def advance(progress: Progress, cons: Constraints, words: Tensor) -> Progress:
    """The state of each row after each of its candidate words (rows x n): Sockeye's ConstrainedHypothesis.advance.

    The next token of the constraint in progress takes it one further, and meets it at its end. Any other word
    leaves that constraint, whose tokens no longer count, and starts the first unmet constraint it begins (Sockeye
    starts none on the word that leaves one); a one-token constraint is met at once.
    """
    rows = torch.arange(words.size(0), device=words.device)
    which = torch.arange(cons.lengths.size(1), device=words.device)
    inside = progress.inside.clamp(min=0)  # rows: the constraint in progress (0 for none: masked below)
    expected = cons.tokens[rows, inside, progress.done]  # rows: its next token
    goes_on = (progress.inside >= 0)[:, None] & (words == expected[:, None])  # rows x n
    done = torch.where(goes_on, progress.done[:, None] + 1, 0)  # rows x n
    completes = goes_on & (done == cons.lengths[rows, inside][:, None])  # rows x n
    met = progress.met[:, None, :] | (completes[..., None] & (which == inside[:, None])[:, None, :])  # rows x n x C
    starts = (~goes_on[..., None] & ~met & (cons.lengths > 0)[:, None, :]
              & (words[..., None] == cons.tokens[:, None, :, 0]))  # rows x n x C
    started, first = starts.any(-1), starts.int().argmax(-1)  # rows x n: the first constraint it begins
    single = cons.lengths.gather(1, first) == 1  # rows x n
    met = met | ((started & single)[..., None] & (which == first[..., None]))
    carries_on = goes_on & ~completes
    inside_next = torch.where(started & ~single, first, torch.where(carries_on, progress.inside[:, None], -1))
    done = torch.where(started & ~single, 1, torch.where(carries_on, done, 0))
    return Progress(met, inside_next, done, completes | (started & single))


def steer(log_probs: Tensor, progress: Progress, cons: Constraints, slots: Tensor, free: Tensor,
          glue: Tensor | None = None) -> Tensor:
    """Apply the constraints' rules to each row's next word (rows x V); ``free`` rows (finished, or at their length
    limit, which :func:`constrain` already handled) are left alone.

    </s> waits until every constraint is met (Post and Vilar). Two rules are additions to the paper and to
    Sockeye. A row whose unmet constraint tokens need every one of the ``slots`` words it may still add before
    </s> may only take a constraint's next token, so that constraints that fit the length limit are always all
    met (Sockeye ends a hypothesis at the limit whatever it has not met). And after a constraint's last token
    no ``glue`` piece (V bools: those that continue the word before them) may come, so that a constraint is a
    whole word in the output, not the start of a longer one.
    """
    needed = cons.total - progress.met_tokens(cons.lengths)  # rows
    bound = (needed > 0) & ~free
    tight = bound & (needed + progress.done >= slots)  # leaving the constraint in progress would lose its tokens
    if glue is not None and bool((progress.ended & ~free & ~tight).any()):
        log_probs = log_probs.masked_fill((progress.ended & ~free & ~tight)[:, None] & glue, float("-inf"))
    if not bool(bound.any()):
        return log_probs
    if bool(tight.any()):
        tokens, allowed = next_tokens(progress, cons)  # rows x C
        open_words = torch.zeros_like(log_probs, dtype=torch.int32).scatter_add_(1, tokens, allowed.int()) > 0
        log_probs = log_probs.masked_fill(tight[:, None] & ~open_words, float("-inf"))  # rows x V
    no_end = torch.zeros_like(log_probs, dtype=torch.bool)  # rows x V
    no_end[:, EOS] = bound
    return log_probs.masked_fill(no_end, float("-inf"))


def dba_candidates(scores: Tensor, log_probs: Tensor, progress: Progress, cons: Constraints,
                   k: int) -> tuple[Tensor, Tensor]:
    """Each row's candidate words (rows x (k + C)) and their scores (-inf for none): its k best words, then the
    next token of each constraint it may advance, those already among its k best not offered twice.

    Post and Vilar also add each row's single best word; it is the first of its k best here, which are taken
    after :func:`steer`, so that it is the best word the row may take.
    """
    word_scores, words = log_probs.topk(k, dim=-1)  # rows x k
    tokens, allowed = next_tokens(progress, cons)  # rows x C
    repeated = (tokens[..., None] == words[:, None, :]).any(-1)  # rows x C: among the k best already
    same = (tokens[:, :, None] == tokens[:, None, :]) & allowed[:, None, :]  # rows x C x C
    repeated |= torch.tril(same, diagonal=-1).any(-1)  # offered by an earlier constraint
    token_scores = log_probs.gather(1, tokens).masked_fill(~allowed | repeated, float("-inf"))  # rows x C
    candidates = torch.cat([words, tokens], dim=1)  # rows x (k + C)
    return candidates, scores.view(-1, 1) + torch.cat([word_scores, token_scores], dim=1)


def bank_sizes(counts: Tensor, top: Tensor, k: int) -> Tensor:
    """How many of the k beams each bank gets (batch x banks), given the candidates each bank holds (``counts``).

    Bank i holds the hypotheses that have produced i constraint tokens; a sentence's banks run from 0 to ``top``,
    its constraint tokens. Each bank gets k // (top + 1) and the top bank the rest. Then, from the top down, the
    slots a bank has no candidates for pass to the bank below, and bank 0's to the top bank (Sockeye's
    get_bank_sizes, which favours the higher banks). A second pass hands on what the first left over, so that
    the banks keep fewer than k only when the sentence has fewer than k candidates in all.
    """
    batch, banks = counts.shape
    share = k // (top + 1)  # batch
    sizes = share[:, None] * (torch.arange(banks, device=counts.device)[None, :] <= top[:, None])  # batch x banks
    sizes.scatter_add_(1, top[:, None], (k - share * (top + 1))[:, None])
    for _ in range(2):
        for i in reversed(range(banks)):
            spare = (sizes[:, i] - counts[:, i]).clamp(min=0)  # batch
            sizes[:, i] -= spare
            if i > 0:
                sizes[:, i - 1] += spare
            else:
                sizes.scatter_add_(1, top[:, None], spare[:, None])
    return torch.minimum(sizes, counts)


def allocate(scores: Tensor, banks: Tensor, top: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Dynamic beam allocation: the k candidates each sentence keeps, best first, and their scores (batch x k).

    ``scores`` and ``banks`` (batch x N) are each candidate's score (-inf for none) and bank. Each bank keeps its
    best candidates, as many as :func:`bank_sizes` gives it; where fewer than k are kept, the rest are empty
    beams scored -inf.
    """
    order = scores.argsort(dim=1, descending=True, stable=True)  # batch x N, best first
    ranked, bank = scores.gather(1, order), banks.gather(1, order)  # batch x N
    real = ranked > float("-inf")
    members = torch.nn.functional.one_hot(bank, int(top.max()) + 1) * real[..., None]  # batch x N x banks
    sizes = bank_sizes(members.sum(1), top, k)  # batch x banks
    place = members.cumsum(1).gather(2, bank[..., None])[..., 0] - 1  # batch x N: its place in its bank
    keep = real & (place < sizes.gather(1, bank))  # batch x N
    first = (~keep).to(torch.uint8).argsort(dim=1, stable=True)[:, :k]  # batch x k: the kept, in score order
    return order.gather(1, first), ranked.gather(1, first).masked_fill(~keep.gather(1, first), float("-inf"))


def dba_step(scores: Tensor, log_probs: Tensor, progress: Progress, cons: Constraints, top: Tensor,
             k: int) -> tuple[Tensor, Tensor, Tensor, Progress]:
    """One step of DBA: the origin rows and words of the new beams (batch * k), their scores (batch x k) and
    their progress on the constraints; ``top`` is each sentence's constraint tokens (batch)."""
    batch = scores.size(0)
    words, totals = dba_candidates(scores, log_probs, progress, cons, k)  # rows x n
    n = words.size(1)
    after = advance(progress, cons, words)  # rows x n (x C)
    banks = after.met_tokens(cons.lengths[:, None, :])  # rows x n
    pick, best = allocate(totals.view(batch, k * n), banks.view(batch, k * n), top, k)  # batch x k
    sentence = torch.arange(batch, device=scores.device)[:, None]
    origin = (pick // n + sentence * k).view(-1)  # batch * k
    flat = (pick + sentence * k * n).view(-1)  # batch * k: the candidate among all rows x n
    return origin, words.reshape(-1)[flat], best, after.pick(flat)


@torch.no_grad()
def constrained_beam_search(model: Seq2Seq, src: Tensor, src_len: Tensor, search: SearchConfig,
                            constraints: list[list[list[int]]], loop: nn.Module | None = None,
                            glue: Tensor | None = None) -> list[list[Hypothesis]]:
    """Beam search whose every output contains each of its sentence's ``constraints`` (target id sequences):
    Post and Vilar's dynamic beam allocation (DBA), batched.

    Each hypothesis tracks which constraints it has met and how far it is inside one (:class:`Progress`). At each
    step every beam offers its k best words and the next token of each constraint it may advance
    (:func:`dba_candidates`); the k beams are shared out among banks by the constraint tokens met, and each bank
    keeps its best candidates (:func:`allocate`), so that a hypothesis that has placed a constraint survives
    beside better-scored ones that have not. A hypothesis ends only when it has met them all, and with ``glue``
    (V bools: the target pieces that continue the word before them) a constraint ends a word (:func:`steer`).
    Constraints must fit the length limit (``SearchConfig.output_limit``: their tokens and </s>), or a
    ValueError names the sentence. With beam size 1 the one beam goes to the highest bank with a candidate,
    so each constraint is placed as early as it can be. A sentence without constraints gets the greedy result
    among its finals, as in :func:`beam_search`.
    """
    batch, k, device = src.size(0), search.beam_size, src.device
    if len(constraints) != batch:
        raise ValueError(f"{len(constraints)} lists of constraints for {batch} sentences")
    _, memory, state = model.encode(src, src_len)
    limits = length_limits(src_len, search).to(device)
    wanted = Constraints.of(constraints, device)
    over = (wanted.total > limits - 1).nonzero()[:, 0].tolist()
    if over:
        b = over[0]
        raise ValueError(f"sentence {b}: its constraints need {int(wanted.total[b])} tokens, but its output may "
                         f"have {int(limits[b]) - 1} besides </s> (search.max_len_ratio, search.max_len)")
    greedy = greedy_decode(model, memory, state, limits, loop) if not all(constraints) else [None] * batch
    fallbacks = [None if sequences else g for g, sequences in zip(greedy, constraints, strict=True)]
    cons = wanted.select(torch.arange(batch, device=device).repeat_interleave(k))  # (batch * k) rows
    progress = Progress.start(batch * k, cons.lengths.size(1), device)

    def choose(scores: Tensor, log_probs: Tensor, free: Tensor, slots: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        nonlocal progress
        log_probs = steer(log_probs, progress, cons, slots, free, glue)
        origin, token, best, progress = dba_step(scores, log_probs, progress, cons, wanted.total, k)
        return origin, token, best

    trail, scores = run_beams(model, memory, state, limits, k, choose)
    return collect_beams(trail, scores, fallbacks, k, search.n_best, search.length_penalty)
