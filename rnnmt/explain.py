"""Explanation: one translation walked through the seed's ten-step table, with the numbers the model really used.

``explain`` runs the real modules one step at a time (``Seq2Seq.encode``, then ``Decoder.step`` with the seed's
argmax, exactly as ``rnnmt.search.greedy_search`` does) and records what each step read and produced as one
plain, JSON-able record. ``render_text`` draws the record for a terminal, ``render_html`` as a self-contained page.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnmt.cells import State
from rnnmt.data import check_count, check_text, normalize_english
from rnnmt.decoders import DecoderState, Memory
from rnnmt.search import Hypothesis
from rnnmt.vocabulary import BOS, EOS, encode_source, source_pieces

if TYPE_CHECKING:  # explain reads a Translator, which calls it: only the type is needed here
    from rnnmt.translator import Translator

Record = dict[str, Any]

RECURRENCES = {
    "rnn": "h_t = tanh(W h_{t-1} + U x_t + b)",
    "gru": "h_t = (1 - z_t) * n_t + z_t * h_{t-1}, n_t = tanh(U_n x_t + b_n + r_t * (W_n h_{t-1} + b_Wn))",
    "lstm": "h_t = o_t * tanh(c_t), c_t = f_t * c_{t-1} + i_t * tanh(U_g x_t + W_g h_{t-1} + b_g)",
}


def summary(vector: Tensor, first: int) -> Record:
    """Size, norm ||v|| and the first values of a vector."""
    v = vector.detach().float().cpu().reshape(-1)
    return {"size": v.numel(), "norm": float(v.norm()), "first": v[:first].tolist()}


def top_layer(state: State) -> Tensor:
    """The top layer's vector (hidden) of a layers x 1 x hidden state (the LSTM's h of its (h, c))."""
    return (state[0] if isinstance(state, tuple) else state)[-1, 0]


@torch.no_grad()
def explain(translator: Translator, text: str, top_k: int = 5, first: int = 6) -> Record:
    """The seed's table walked through for ``text`` with greedy search: one JSON-able record."""
    check_count(top_k, "top_k")
    source = normalize_english(check_text(text, "text"))
    if not source:
        raise ValueError("nothing to explain: the text is empty")
    model, search = translator.model, translator.config.search
    ids = encode_source(translator.src, source, search.max_src_len)
    pieces = source_pieces(translator.src, source, search.max_src_len)
    src = torch.tensor([ids], device=translator.device)  # 1 x src_len
    src_len = torch.tensor([len(ids)], device=translator.device)
    encoded, memory, state = model.encode(src, src_len)
    limit = search.output_limit(len(ids))
    steps = decode_steps(translator, memory, state, limit, top_k, first)
    chosen = [step["chosen"]["id"] for step in steps]
    attention = torch.tensor([step["attention"] for step in steps]) if model.decoder.attention else None
    log_prob = sum(step["chosen"]["log_prob"] for step in steps)
    translation = translator.detokenize(Hypothesis(chosen[:-1], log_prob, log_prob, attention), pieces)
    return {"source": source, "model": model_record(translator),
            "encoder": encoder_record(translator, src, pieces, encoded.states[0], state, first),
            "decoder": steps, "translation": translation, "log_prob": log_prob,
            "tgt_pieces": [translator.tgt.piece(i) for i in chosen]}


def model_record(translator: Translator) -> Record:
    """Step 2 of both columns: the layers and state size, and the rest of the model's shape."""
    m = translator.model.config
    return {"cell": m.cell, "recurrence": RECURRENCES[m.cell], "emb_size": m.emb_size, "hidden_size": m.hidden_size,
            "encoder_layers": m.encoder_layers, "decoder_layers": m.decoder_layers,
            "directions": m.directions, "attention": m.attention, "input_feeding": m.input_feeding,
            "h0": m.h0, "src_vocab": translator.src.size, "tgt_vocab": translator.tgt.size}


def encoder_record(translator: Translator, src: Tensor, pieces: list[str], states: Tensor,
                   handed: DecoderState, first: int) -> Record:
    """Encoder steps 1, 3, 6 and 7: the embedded tokens, h0, every top-layer h_t, and s_0 for the decoder."""
    encoder = translator.model.encoder
    x = encoder.embed(src)[0]  # src_len x emb (step 1)
    h0 = encoder.initial_state(1)
    if h0 is None:
        h0 = x.new_zeros(encoder.layers * encoder.directions, 1, encoder.hidden_size)
    tokens = [{"t": t + 1, "piece": piece, "id": int(i), "x": summary(x[t], first)}
              for t, (piece, i) in enumerate(zip(pieces, src[0].tolist(), strict=True))]
    return {"tokens": tokens, "h0": summary(top_layer(h0), first),
            "states": [{"t": t + 1, "read": piece, "h": summary(states[t], first)} for t, piece in enumerate(pieces)],
            "handed_over": summary(top_layer(handed.hidden), first),
            "bridge": translator.model.bridge is not None}


def decode_steps(translator: Translator, memory: Memory, state: DecoderState, limit: int, top_k: int,
                 first: int) -> list[Record]:
    """Decoder steps 6-10: s_t, the logits and their softmax, and the argmax word, until </s> or ``limit``."""
    decoder, tgt = translator.model.decoder, translator.tgt
    y = torch.full((1, 1), BOS, dtype=torch.long, device=translator.device)
    steps = []
    for t in range(limit):
        logits, state, alpha = decoder.step(y, state, memory)
        logits = logits[0, -1].float()  # tgt_vocab: V_out s_t + c_out (decoder step 7)
        log_probs = torch.log_softmax(logits, dim=-1)  # step 8, as greedy_search takes it
        best = int(log_probs.argmax())  # step 9
        chosen = EOS if t + 1 >= limit else best  # the length limit ends the sentence, as in greedy_search
        top = log_probs.topk(min(top_k, log_probs.numel())).indices.tolist()
        steps.append({
            "t": t + 1, "input": {"id": int(y), "piece": tgt.piece(int(y))},
            "s": summary(top_layer(state.hidden), first),
            "top": [word(tgt, i, logits, log_probs) for i in top], "chosen": word(tgt, chosen, logits, log_probs),
            "forced_end": chosen != best, "attention": alpha[0, 0].float().tolist() if alpha is not None else None,
        })
        if chosen == EOS:
            break
        y = torch.full_like(y, chosen)
    return steps


def word(tgt: Any, index: int, logits: Tensor, log_probs: Tensor) -> Record:
    """One Hindi word with its logit, softmax probability and log-probability."""
    return {"id": index, "piece": tgt.piece(index), "logit": float(logits[index]),
            "prob": float(log_probs[index].exp()), "log_prob": float(log_probs[index])}


def numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:+.4f}" for v in values) + ", ...]"


def render_text(record: Record) -> str:
    """The record as a readable terminal view, in the order of the seed's table."""
    m, enc = record["model"], record["encoder"]
    lines = [f"English: {record['source']}", "",
             "ENCODER",
             f"1. Embed inputs: {len(enc['tokens'])} tokens, each x_t a vector of {m['emb_size']} numbers"]
    lines += [f"   {tok['t']:>3}  {tok['piece']:<14} id {tok['id']:<6} x_t = {numbers(tok['x']['first'])}"
              for tok in enc["tokens"]]
    lines += [f"2. Layers and states: {m['encoder_layers']} encoder and {m['decoder_layers']} decoder layer(s) of"
              f" {m['hidden_size']} units ({m['cell']} cell, {m['directions']} direction(s), attention"
              f" {m['attention']})",
              f"3. h0 ({m['h0']}): |h0| = {enc['h0']['norm']:.4f}  {numbers(enc['h0']['first'])}",
              f"4-6. {m['recurrence']}, once per token:"]
    lines += [f"   h_{st['t']:<3} read {st['read']:<14} |h| = {st['h']['norm']:7.4f}  {numbers(st['h']['first'])}"
              for st in enc["states"]]
    s0 = enc["handed_over"]
    lines += [f"7. Handed to the decoder: s_0 = {'bridge(h_T)' if enc['bridge'] else 'h_T'},"
              f" |s_0| = {s0['norm']:.4f}  {numbers(s0['first'])}", "", "DECODER"]
    for step in record["decoder"]:
        lines += decoder_lines(step, [tok["piece"] for tok in enc["tokens"]])
    lines += ["", f"Hindi: {record['translation']}  (log P = {record['log_prob']:.4f})"]
    return "\n".join(lines)


def decoder_lines(step: Record, src_pieces: list[str]) -> list[str]:
    """Steps 6-9 of one decoder step, as text."""
    t, chosen = step["t"], step["chosen"]
    lines = [f"step {t}: reads {step['input']['piece']}",
             f"   6. s_{t}: |s| = {step['s']['norm']:.4f}  {numbers(step['s']['first'])}",
             "   7-8. top logits V_out s_t + c_out and softmax:"]
    lines += [f"        {w['piece']:<14} logit {w['logit']:+8.4f}  p {w['prob']:.4f}" for w in step["top"]]
    ending = " (the length limit ends the sentence here)" if step["forced_end"] else ""
    lines.append(f"   9. chosen: {chosen['piece']}  p {chosen['prob']:.4f}{ending}")
    if step["attention"] is not None:
        ranked = sorted(zip(src_pieces, step["attention"], strict=True), key=lambda pair: -pair[1])[:3]
        lines.append("   attention: " + ", ".join(f"{piece} {weight:.2f}" for piece, weight in ranked))
    return lines


PAGE_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}
code,.num{font-family:ui-monospace,monospace;font-size:.9em}h2{margin-top:1.5em}.chosen{font-weight:bold}"""


def numbers_html(vector: Record) -> str:
    """The first values of a summarised vector, in monospace."""
    return f"<span class=num>{numbers(vector['first'])}</span>"


def table(head: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are already escaped HTML."""
    cells = "".join(f"<tr>{''.join(f'<td>{c}</td>' for c in row)}</tr>" for row in rows)
    return f"<table><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in head)}</tr>{cells}</table>"


def render_html(record: Record) -> str:
    """The record as a self-contained HTML page; the record itself is embedded as JSON for other tools."""
    e, m, enc = html.escape, record["model"], record["encoder"]
    tokens = table(["t", "piece", "id", "x_t (first values)"],
                   [[str(tok["t"]), e(tok["piece"]), str(tok["id"]), numbers_html(tok["x"])] for tok in enc["tokens"]])
    states = table(["t", "read", "|h_t|", "h_t (first values)"],
                   [[str(st["t"]), e(st["read"]), f"{st['h']['norm']:.4f}", numbers_html(st["h"])]
                    for st in enc["states"]])
    src_pieces = [tok["piece"] for tok in enc["tokens"]]
    body = [f"<h1>{e(record['source'])}</h1><p>&rarr; <b>{e(record['translation'])}</b>"
            f" (log P = {record['log_prob']:.4f})</p>",
            f"<h2>Encoder</h2><p>1. Embed inputs: each x_t has {m['emb_size']} numbers.</p>{tokens}",
            f"<p>2. {m['encoder_layers']} encoder and {m['decoder_layers']} decoder layer(s) of {m['hidden_size']}"
            f" units; {e(m['cell'])} cell, {m['directions']} direction(s), attention {e(m['attention'])}.</p>",
            f"<p>3. h0 ({e(m['h0'])}): |h0| = {enc['h0']['norm']:.4f}</p>",
            f"<p>4-6. <code>{e(m['recurrence'])}</code></p>{states}",
            f"<p>7. Handed to the decoder: |s_0| = {enc['handed_over']['norm']:.4f}"
            f" {numbers_html(enc['handed_over'])}</p>",
            "<h2>Decoder</h2>", *(decoder_html(step, src_pieces) for step in record["decoder"])]
    data = json.dumps(record, ensure_ascii=False).replace("<", "\\u003c")  # no </script> or <!-- in a script
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>rnnmt explain</title>"
            f"<style>{PAGE_STYLE}</style></head><body>{''.join(body)}"
            f"<script type=application/json id=record>{data}</script></body></html>\n")


def decoder_html(step: Record, src_pieces: list[str]) -> str:
    """Steps 6-9 of one decoder step, with the attention weights shaded, as HTML."""
    e, t = html.escape, step["t"]
    rows = [[f"<span class={'chosen' if w['id'] == step['chosen']['id'] else 'other'}>{e(w['piece'])}</span>",
             f"{w['logit']:+.4f}", f"{w['prob']:.4f}"] for w in step["top"]]
    ending = " (the length limit ends the sentence)" if step["forced_end"] else ""
    parts = [f"<h3>Step {t}: reads {e(step['input']['piece'])} &rarr; {e(step['chosen']['piece'])}{ending}</h3>",
             f"<p>s_{t}: |s| = {step['s']['norm']:.4f} {numbers_html(step['s'])}</p>",
             table(["word", "logit", "softmax"], rows)]
    if step["attention"] is not None:
        cells = "".join(f"<td style='background:rgba(30,110,220,{w:.3f})'>{e(p)}<br>{w:.2f}</td>"
                        for p, w in zip(src_pieces, step["attention"], strict=True))
        parts.append(f"<p>Attention, where it looked:</p><table><tr>{cells}</tr></table>")
    return "".join(parts)
