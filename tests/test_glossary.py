"""Glossaries: reading and checking terms, and finding them in a sentence (whole words, any case, longest first)."""

import unicodedata

import pytest

from rnnmt.errors import DataError
from rnnmt.glossary import Glossary, Term


def test_a_tsv_file_reads_into_terms(tmp_path):
    path = tmp_path / "terms.tsv"
    path.write_bytes("\ufeffvirus\tवायरस\r\n\n  \nCorona   virus\tकोरोना  वायरस\nVIRUS\tवायरस\n".encode())
    glossary = Glossary.read(path)
    assert glossary.terms == (Term("virus", "वायरस"), Term("Corona virus", "कोरोना वायरस"))  # the repeat once
    assert glossary == Glossary.of({"virus": "वायरस", "Corona virus": "कोरोना वायरस"})
    assert hash(glossary) == hash(Glossary.of([("virus", "वायरस"), ("Corona virus", "कोरोना वायरस")]))


@pytest.mark.parametrize("content, message", [
    (b"virus\n", "terms.tsv:1: expected English<TAB>Hindi, found no tab"),
    ("virus\tवायरस\nflu\tफ़्लू\textra\n".encode(), "terms.tsv:2: expected English<TAB>Hindi, found 2 tabs"),
    ("virus\tवायरस\n\t\u092b\n".encode(), "terms.tsv:2: the English side is empty"),
    (b"virus\t  \n", "terms.tsv:1: the Hindi side is empty"),
    (b"ok\tx\nvir\xffus\tx\n", "terms.tsv:2: invalid UTF-8 at byte 3: b'vir\\xffus\\tx'"),
    ("virus\tवायरस\nVirus\tविषाणु\n".encode(),
     "terms.tsv:2: 'Virus' is already in the glossary (TERMS:1) with another Hindi, 'वायरस'"),
])
def test_every_bad_line_is_one_error_naming_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "terms.tsv"
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        Glossary.read(path)
    assert str(error.value) == f"{tmp_path}/{message}".replace("TERMS", str(path))
    assert "\n" not in str(error.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=f"^{tmp_path}/none.tsv: no such file$"):
        Glossary.read(tmp_path / "none.tsv")


@pytest.mark.parametrize("terms, error, message", [
    ("virus", TypeError, "glossary must be a list of .English, Hindi. pairs or a dict, got str"),
    (7, TypeError, "glossary must be a list of .English, Hindi. pairs or a dict, got int"),
    ([("virus",)], TypeError, r"glossary\[0\]: expected an \(English, Hindi\) pair, got tuple"),
    ([("virus", None)], TypeError, r"glossary\[0\]: the Hindi side must be a str, got NoneType"),
    ([("ok", "x"), ("", "x")], DataError, r"glossary\[1\]: the English side is empty"),
    ([("virus", "\ud800")], DataError, r"glossary\[0\]: the Hindi side is not valid Unicode"),
])
def test_bad_pairs_are_refused_naming_the_entry(terms, error, message):
    with pytest.raises(error, match=message):
        Glossary.of(terms)


def test_a_glossary_made_directly_takes_terms_only():
    assert Glossary((Term("virus", "वायरस"),)) == Glossary.of({"virus": "वायरस"})
    with pytest.raises(TypeError, match=r"Glossary\(\) takes a tuple of Terms; make one with Glossary.of\(pairs\)"):
        Glossary((("virus", "वायरस"),))


def test_terms_match_whole_words_in_any_case_after_normalisation():
    glossary = Glossary.of({"virus": "वायरस", "COVID-19": "कोविड-19", "café": "कैफ़े"})
    assert glossary.find("A Virus, the VIRUS; virus.") == [Term("virus", "वायरस")]  # each term once
    assert glossary.find("viruses and antivirus software") == []  # not inside a longer word
    assert glossary.find("covid-19 cases") == [Term("COVID-19", "कोविड-19")]
    assert glossary.find("covid-190 cases") == []
    decomposed = unicodedata.normalize("NFD", "the  Café")  # e + combining accent, two spaces
    assert glossary.find(decomposed) == [Term("café", "कैफ़े")]


def test_the_longest_match_wins_and_matches_never_overlap():
    glossary = Glossary.of({"virus": "वायरस", "corona virus": "कोरोना वायरस", "virus disease": "विषाणु रोग",
                            "corona virus disease 2019": "कोविड-19", "disease": "रोग"})
    assert glossary.find("corona virus disease 2019 is a virus disease") == [
        Term("corona virus disease 2019", "कोविड-19"), Term("virus disease", "विषाणु रोग")]
    assert glossary.find("a corona virus disease") == [Term("virus disease", "विषाणु रोग")]  # 13 letters to 12
    assert glossary.find("the corona virus spreads") == [Term("corona virus", "कोरोना वायरस")]
    assert glossary.find("disease from a virus") == [Term("disease", "रोग"), Term("virus", "वायरस")]  # source order
