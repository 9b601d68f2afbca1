"""Validation: each dev set's loss and greedy translations, scored, while a model trains."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from rnnmt.batching import Example, bucket_batches, collate, encode_pairs
from rnnmt.config import Config, TrainConfig
from rnnmt.data import Pair, load_pairs
from rnnmt.metrics import corpus_scores
from rnnmt.model import sequence_loss
from rnnmt.translator import Translator
from rnnmt.vocabulary import Tokenizer


@dataclass
class DevSet:
    """One dev set: its pairs, and their ids for the teacher-forced dev loss."""

    name: str
    pairs: list[Pair]
    examples: list[Example]


def load_dev_sets(config: Config, src: Tokenizer, tgt: Tokenizer) -> list[DevSet]:
    """Every dev set of the config, cleaned but not filtered by length, and encoded once."""
    dev_sets = []
    for corpus in config.data.dev:
        pairs = load_pairs([corpus], config.data, filter_lengths=False)
        dev_sets.append(DevSet(corpus.label(), pairs, encode_pairs(pairs, src, tgt, config.search.max_src_len)))
    return dev_sets


@torch.no_grad()
def validate(translator: Translator, dev_sets: list[DevSet], train: TrainConfig) -> dict[str, Any]:
    """Each dev set's loss, BLEU and chrF++; overall, the loss per token of all and the mean of the scores.

    The model is scored in eval mode and left in the mode it was found in.
    """
    model = translator.model
    mode = model.training
    model.eval()
    try:
        per_set = {dev.name: score_dev(translator, dev, train) for dev in dev_sets}
    finally:
        model.train(mode)
    tokens = sum(scores["tokens"] for scores in per_set.values())
    loss = sum(scores["loss"] * scores["tokens"] for scores in per_set.values()) / tokens
    return {"dev_loss": loss, "dev_ppl": math.exp(min(loss, 50)),
            "dev_bleu": sum(s["bleu"] for s in per_set.values()) / len(per_set),
            "dev_chrf": sum(s["chrf"] for s in per_set.values()) / len(per_set), "dev": per_set}


def score_dev(translator: Translator, dev: DevSet, train: TrainConfig) -> dict[str, float]:
    """A dev set's teacher-forced loss per token, and the greedy translations of its first sentences, scored.

    The loss goes in batches of the training budget: fixed batches of 64 long news sentences held
    64 x 150 x V fp32 logits, and made validation, not training, the run's peak memory.
    """
    model, examples = translator.model, dev.examples
    total, tokens = 0.0, 0
    for indices in bucket_batches(examples, train.batch_tokens, seed=0):
        batch = collate([examples[i] for i in indices]).to(translator.device)
        total += float(sequence_loss(model(batch.src, batch.src_len, batch.tgt_in), batch.tgt_out))
        tokens += batch.tokens
    sample = dev.pairs[: train.valid_sentences]
    scores = corpus_scores(translator.translate([en for en, _ in sample], beam_size=1), [hi for _, hi in sample])
    return {"loss": total / tokens, "tokens": tokens, "bleu": scores.bleu, "chrf": scores.chrf}
