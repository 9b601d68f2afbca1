"""Reading corpora and cleaning pairs: clear errors that name the file and line, and nothing lost."""

import unicodedata

import pytest

from rnnmt.config import CorpusConfig, DataConfig
from rnnmt.data import (
    DataError,
    clean_pairs,
    epoch_mix,
    load_corpora,
    load_pairs,
    normalize_hindi,
    read_aligned,
    read_corpus,
    read_tsv,
)


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_aligned_files_with_different_line_counts_name_both(tmp_path):
    en = write(tmp_path / "train.en", "a\nb\nc\n")
    hi = write(tmp_path / "train.hi", "क\nख\n")
    with pytest.raises(DataError, match=r"train.en has 3 lines but .*train.hi has 2"):
        read_aligned(en, hi)


def test_invalid_utf8_names_file_and_line(tmp_path):
    en = write(tmp_path / "x.en", b"fine\nalso fine\nbroken \xff here\n")
    hi = write(tmp_path / "x.hi", "क\nख\nग\n")
    with pytest.raises(DataError, match=r"x.en:3: invalid UTF-8"):
        read_aligned(en, hi)


def test_tsv_reads_two_columns_and_ignores_the_rest(tmp_path):
    path = write(tmp_path / "hin.txt", "Hi.\tनमस्ते।\tCC-BY 2.0 (France) Attribution\nGo.\tजाओ।\n")
    assert read_tsv(path) == [("Hi.", "नमस्ते।"), ("Go.", "जाओ।")]
    bad = write(tmp_path / "bad.txt", "Hi.\tनमस्ते।\nno tab here\n")
    with pytest.raises(DataError, match=r"bad.txt:2: expected English<TAB>Hindi"):
        read_tsv(bad)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nope.en: no such file"):
        read_corpus(CorpusConfig(src=str(tmp_path / "nope.en"), tgt=str(tmp_path / "nope.hi")))


def test_cleaning_counts_every_drop():
    pairs = [("Hello.", "नमस्ते।"), ("", "खाली"), ("Hello.", "नमस्ते।"), ("one two three four five six seven", "एक"),
             ("  Spaces   here ", "  यहाँ   जगह "), ("x " * 70, "क " * 70)]
    kept, report = clean_pairs(pairs, DataConfig(max_ratio=3.0, max_words=60))
    assert kept == [("Hello.", "नमस्ते।"), ("Spaces here", "यहाँ जगह")]
    assert (report.read, report.empty, report.duplicate, report.bad_ratio, report.too_long) == (6, 1, 1, 1, 1)
    assert "kept 2" in report.summary() and "duplicate 1" in report.summary()


def test_empty_lines_are_skipped_and_counted(tmp_path):
    en = write(tmp_path / "a.en", "One.\n\nThree.\n")
    hi = write(tmp_path / "a.hi", "एक।\nदो।\n\n")
    pairs = load_pairs([CorpusConfig(src=str(en), tgt=str(hi))], DataConfig())
    assert pairs == [("One.", "एक।")]


def test_nothing_left_is_an_error(tmp_path):
    en = write(tmp_path / "a.en", "\n")
    hi = write(tmp_path / "a.hi", "\n")
    with pytest.raises(DataError, match="no usable pairs left"):
        load_pairs([CorpusConfig(src=str(en), tgt=str(hi))], DataConfig())


def test_hindi_normalisation_keeps_every_combining_mark():
    decomposed = "क्या आप ठीक हैं? मैं ज़रूर आऊँगी।"
    nfd = unicodedata.normalize("NFD", decomposed)
    out = normalize_hindi(nfd)
    assert unicodedata.is_normalized("NFC", out)
    assert out == unicodedata.normalize("NFC", decomposed)
    for mark in ("\u094d", "\u093c", "\u0901", "\u0948", "\u0942"):  # virama, nukta, chandrabindu, matras
        assert mark in out


def test_precomposed_nukta_letters_become_canonical():
    assert normalize_hindi("\u095b") == "\u091c\u093c"  # ज़ as one code point -> ज + nukta


def test_hugging_face_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"translation": [{"en": "Hello.", "hi": "नमस्ते।"}, {"en": "Thanks.", "hi": "धन्यवाद।"}]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "ds"))
    pairs = read_corpus(CorpusConfig(hf=str(tmp_path / "ds"), hf_split="train"))
    assert pairs == [("Hello.", "नमस्ते।"), ("Thanks.", "धन्यवाद।")]


def test_bundled_corpus_is_clean_nfc_hindi():
    for split in ("train", "dev", "test"):
        pairs = read_corpus(CorpusConfig(bundled=split))
        assert len(pairs) >= 150
        for en, hi in pairs:
            assert en and hi and unicodedata.is_normalized("NFC", hi)
            assert any("\u0900" <= ch <= "\u097f" for ch in hi)
    sizes = sum(len(read_corpus(CorpusConfig(bundled=s))) for s in ("train", "dev", "test"))
    assert sizes >= 1500


def test_each_corpus_gives_an_epoch_weight_times_its_pairs():
    sizes, weights = [100, 50, 10, 30], [1.0, 0.3, 2.5, 0.0]
    mix = epoch_mix(sizes, weights, seed=1)
    counts = [sum(1 for c, _ in mix if c == corpus) for corpus in range(4)]
    assert counts == [100, 15, 25, 0]
    repeats = [sum(1 for c, i in mix if (c, i) == (2, pair)) for pair in range(10)]
    assert sorted(set(repeats)) == [2, 3] and repeats.count(3) == 5  # 2.5: twice each, and half of them once more
    assert sorted(i for c, i in mix if c == 0) == list(range(100))
    assert epoch_mix(sizes, weights, seed=1) == mix  # the same seed, the same epoch
    assert {i for c, i in epoch_mix(sizes, weights, seed=2) if c == 1} != {i for c, i in mix if c == 1}


def test_a_pair_kept_in_one_corpus_is_a_duplicate_in_the_next(tmp_path):
    first = write(tmp_path / "a.tsv", "One.\tएक।\nTwo.\tदो।\n")
    second = write(tmp_path / "b.tsv", "Two.\tदो।\nThree.\tतीन।\n")
    corpora = load_corpora([CorpusConfig(tsv=str(first)), CorpusConfig(tsv=str(second))], DataConfig())
    assert corpora == [[("One.", "एक।"), ("Two.", "दो।")], [("Three.", "तीन।")]]
