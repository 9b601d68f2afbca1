"""Training examples: batches within their token budget, each example once, and epochs that resume exactly."""

import random

import pytest

from rnnmt.batching import Epochs, bucket_batches, encode_pairs
from rnnmt.config import CorpusConfig
from rnnmt.data import read_corpus
from rnnmt.vocabulary import SentencePieceTokenizer


@pytest.fixture(scope="module")
def pairs():
    return read_corpus(CorpusConfig(bundled="train", limit=300))


@pytest.fixture(scope="module")
def tokenizers(pairs):
    return (SentencePieceTokenizer.train([en for en, _ in pairs], 300),
            SentencePieceTokenizer.train([hi for _, hi in pairs], 300))


def test_batches_keep_their_budget_and_hold_every_example_once():
    rng = random.Random(0)
    examples = [([1] * rng.randint(1, 30), [1] * rng.randint(1, 30)) for _ in range(500)]
    batches = bucket_batches(examples, 200, seed=3)
    assert sorted(i for batch in batches for i in batch) == list(range(500))
    for batch in batches:
        longest = max(max(len(examples[i][0]), len(examples[i][1]) + 1) for i in batch)  # target gets </s>
        assert longest * len(batch) <= 200
    assert bucket_batches(examples, 200, seed=3) == batches
    assert bucket_batches(examples, 200, seed=4) != batches


def test_an_epoch_without_sampling_is_the_plain_segmentation_of_its_mix(pairs, tokenizers):
    epochs = Epochs([pairs[:200], pairs[200:]], [1.0, 0.5], seed=1)
    epochs.segment(*tokenizers, max_len=50, sampling=None)
    examples = epochs.examples(3)
    assert len(examples) == 250 and examples == encode_pairs(epochs.pairs(3), *tokenizers, 50)
    assert epochs.pairs(3)[:200] == pairs[:200] and epochs.pairs(3)[200:] != epochs.pairs(4)[200:]


def test_sampling_segments_each_epoch_anew_and_the_same_epoch_alike(pairs, tokenizers):
    epochs = Epochs([pairs], [1.0], seed=1)
    epochs.segment(*tokenizers, max_len=50, sampling=(0.1, 64))
    first, second = epochs.examples(0), epochs.examples(1)
    assert first != second and epochs.examples(0) == first  # drawn again, after another epoch: the same
    plain = encode_pairs(pairs, *tokenizers, 50)
    changed = sum(a != b for a, b in zip(first, plain, strict=True))
    assert changed > len(pairs) // 2  # most sentences get another segmentation ...
    src, tgt = tokenizers
    whole = [(s, t, en, hi) for (s, t), (en, hi) in zip(first, pairs, strict=True) if len(s) < 50 and len(t) < 49]
    assert all(src.sp.decode(s[:-1]) == en and tgt.sp.decode(t) == hi for s, t, en, hi in whole)  # the same text
    assert encode_pairs(pairs, *tokenizers, 50) == plain  # and the plain one, for dev and translation, is unchanged
