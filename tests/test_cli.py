"""The command line, run as a user runs it: train, translate, evaluate, errors, and resume after a kill."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

import rnnmt.__main__ as rnnmt_main
from conftest import tiny_config
from rnnmt.__main__ import main
from rnnmt.training import lock_folder
from rnnmt.translator import Translator

RNNMT = [sys.executable, "-m", "rnnmt"]


def run(*args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(RNNMT + list(args), input=stdin, capture_output=True, text=True, timeout=300)


def test_translate_arguments_and_stdin(tiny_model):
    by_args = run("translate", "-m", str(tiny_model), "Flowers bloom in spring.", "")
    assert by_args.returncode == 0, by_args.stderr
    assert by_args.stdout.splitlines() == ["वसंत में फूल खिलते हैं।", ""]
    by_stdin = run("translate", "-m", str(tiny_model), "--beam-size", "3", stdin="Flowers bloom in spring.\nHi.\n")
    assert by_stdin.stdout.splitlines()[0] == "वसंत में फूल खिलते हैं।" and len(by_stdin.stdout.splitlines()) == 2


def test_translate_n_best_prints_scores(tiny_model, capsys):
    assert main(["translate", "-m", str(tiny_model), "--n-best", "3", "Flowers bloom in spring."]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    scores = [float(line.split("\t")[0]) for line in lines]
    assert len(lines) == 3 and scores == sorted(scores, reverse=True)


def test_evaluate_prints_signatures_and_writes_hypotheses(tiny_model, tmp_path, capsys):
    src, ref = tmp_path / "test.en", tmp_path / "test.hi"
    src.write_text("Flowers bloom in spring.\nCan you call a taxi for me?\n", encoding="utf-8")
    ref.write_text("वसंत में फूल खिलते हैं।\nक्या आप मेरे लिए टैक्सी बुला सकते हैं?\n", encoding="utf-8")
    assert main(["evaluate", "-m", str(tiny_model), "--src", str(src), "--ref", str(ref), "--json",
                 "--out", str(tmp_path / "hyp.hi")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["bleu"] == pytest.approx(100.0) and scores["chrf"] == pytest.approx(100.0)
    assert "nrefs:1" in scores["bleu_signature"] and "nc:6|nw:2" in scores["chrf_signature"]
    assert (tmp_path / "hyp.hi").read_text(encoding="utf-8").splitlines()[0] == "वसंत में फूल खिलते हैं।"


def test_evaluate_keeps_apart_test_sets_of_the_same_name(tiny_model, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    for corpus, text in (("iitb", "Flowers bloom in spring."), ("flores", "Can you call a taxi for me?")):
        (tmp_path / corpus).mkdir()
        (tmp_path / corpus / "dev.en").write_text(text + "\n", encoding="utf-8")
        (tmp_path / corpus / "dev.hi").write_text("फूल\n", encoding="utf-8")
        assert main(["evaluate", "-m", str(model), "--src", str(tmp_path / corpus / "dev.en"),
                     "--ref", str(tmp_path / corpus / "dev.hi")]) == 0
    written = {p.name: p.read_text(encoding="utf-8") for p in (model / "eval").iterdir()}
    assert sorted(written) == ["flores.dev.en.hyp", "iitb.dev.en.hyp"]
    assert written["iitb.dev.en.hyp"] != written["flores.dev.en.hyp"]


def test_evaluate_refuses_misaligned_references(tiny_model, tmp_path, capsys):
    (tmp_path / "a.en").write_text("One.\nTwo.\n", encoding="utf-8")
    (tmp_path / "a.hi").write_text("एक।\n", encoding="utf-8")
    code = main(["evaluate", "-m", str(tiny_model), "--src", str(tmp_path / "a.en"), "--ref", str(tmp_path / "a.hi")])
    assert code == 2 and "a.en has 2 lines but" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "default", "--model.cell", "lstmm"], "model.cell is 'lstmm'; allowed values: rnn, gru, lstm"),
    (["train", "default", "--model.celll", "gru"], "unknown key 'model.celll'"),
    (["train", "nothing.yaml"], "neither a file nor a bundled config"),
    (["translate", "-m", "no/such/folder", "Hi"], "no/such/folder: no such model folder"),
])
def test_user_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_train_writes_a_folder_that_translates(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"max_steps": 10, "valid_every": 5})), encoding="utf-8")
    assert main(["train", str(config), "--model-dir", str(tmp_path / "m"), "--seed", "3", "--train.lr", "3e-3"]) == 0
    assert "dev BLEU" in capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / "m" / "config.yaml").read_text(encoding="utf-8"))
    assert saved["train"]["seed"] == 3 and saved["train"]["lr"] == 3e-3
    assert main(["translate", "-m", str(tmp_path / "m"), "Hello."]) == 0


@pytest.mark.slow
def test_training_resumes_after_kill_9(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"max_steps": 100000, "max_epochs": 1000, "valid_every": 25})),
                      encoding="utf-8")
    folder = tmp_path / "m"
    process = subprocess.Popen(RNNMT + ["train", str(config), "--model-dir", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = folder / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (checkpoint.exists() and step_of(checkpoint) >= 50):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = step_of(checkpoint)
    assert killed_at >= 50
    assert Translator.load(folder).translate("Hello."), "a killed run's folder translates with its best weights"
    resumed = run("train", str(config), "--model-dir", str(folder), "--resume",
                  "--train.max_steps", str(killed_at + 25))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {folder} at step {killed_at}" in resumed.stderr
    assert step_of(checkpoint) == killed_at + 25
    assert not list(folder.rglob("*.tmp")), "a resumed run clears what the kill left half-written"


def step_of(checkpoint) -> int:
    for _ in range(20):
        try:
            return torch.load(checkpoint, weights_only=True)["progress"]["step"]
        except (EOFError, RuntimeError, FileNotFoundError):
            time.sleep(0.1)  # replaced while we read it
    raise AssertionError(f"{checkpoint} cannot be read")


def test_average_writes_a_model_folder_of_the_mean(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"max_steps": 20, "valid_every": 10, "keep_checkpoints": 3})),
                      encoding="utf-8")
    assert main(["train", str(config), "--model-dir", str(tmp_path / "run")]) == 0
    assert main(["average", "-m", str(tmp_path / "run"), "--last", "2", "--out", str(tmp_path / "avg")]) == 0
    assert "the mean of step-10.safetensors, step-20.safetensors" in capsys.readouterr().out
    assert main(["translate", "-m", str(tmp_path / "avg"), "Hello."]) == 0
    assert main(["average", "-m", str(tmp_path / "run"), "--last", "3", "--out", str(tmp_path / "x")]) == 2
    assert "fewer than the 3 asked for" in capsys.readouterr().err


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"max_steps": 5, "valid_every": 5})), encoding="utf-8")
    held = lock_folder(tmp_path / "m")  # as a running `rnnmt train` holds it
    try:
        second = run("train", str(config), "--model-dir", str(tmp_path / "m"))
    finally:
        held.close()
    assert second.returncode == 2
    assert f"{tmp_path / 'm'} is in use: process {os.getpid()} on" in second.stderr
    assert [p.name for p in (tmp_path / "m").iterdir()] == [".lock"]  # the refused run wrote nothing
    assert run("train", str(config), "--model-dir", str(tmp_path / "m")).returncode == 0  # free again


def test_serve_settings_errors_are_one_line(tiny_model, capsys):
    assert main(["serve", "-m", str(tiny_model), "--cors-origin", "https://example.org/"]) == 2
    assert "rnnmt serve: error: ServeSettings.cors_origins: 'https://example.org/' is not" in capsys.readouterr().err


def feed_stdin(monkeypatch, data: bytes) -> None:
    """Stdin as a pipe gives it: bytes, which Python's own text layer would read with surrogateescape."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape"))


@pytest.mark.parametrize("options", [[], ["--engine", "numpy"], ["--n-best", "2"]])
def test_bad_bytes_on_stdin_lose_no_good_line(tiny_model, monkeypatch, capsys, options):
    feed_stdin(monkeypatch, b"How are you?\nhello \xff\nFlowers bloom in spring.\n\xfe\n")
    assert main(["translate", "-m", str(tiny_model), *options]) == 2
    out, err = capsys.readouterr()
    if "--n-best" in options:
        lines = out.splitlines()  # two alternatives and an empty line per input line; none for a bad one
        assert [bool(line) for line in lines] == [True, True, False, False, True, True, False, False]
        assert lines[4].endswith("\tवसंत में फूल खिलते हैं।")
    else:
        good = Translator.load(tiny_model, "cpu").translate(["How are you?", "Flowers bloom in spring."])
        assert out.splitlines() == [good[0], "", good[1], ""]
    assert "rnnmt translate: error: stdin lines 2, 4 are not valid UTF-8; their output lines are empty" in err
    assert "stdin line 2 is not valid UTF-8 (byte 7 is 0xff)" in err and "Traceback" not in err


def test_bad_bytes_in_an_argument_are_named(tiny_model, capsys):
    assert main(["translate", "-m", str(tiny_model), os.fsdecode(b"caf\xe9"), "Flowers bloom in spring."]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == ["", "वसंत में फूल खिलते हैं।"]
    assert "argument 1 is not valid UTF-8 (byte 4 is 0xe9)" in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_counts_lines_on_a_terminal_stderr_only(tiny_model, monkeypatch, capsys):
    feed_stdin(monkeypatch, b"Hi.\nFlowers bloom in spring.\nHow are you?\n")
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert main(["translate", "-m", str(tiny_model)]) == 0
    assert "3 lines" in sys.stderr.getvalue()
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 3 and "lines" not in out and "\r" not in out


@pytest.mark.parametrize("argv, message", [
    (["translate", "--beam-size", "-1", "Hi."], "argument --beam-size: must be from 1 to 100, got -1"),
    (["translate", "--beam-size", "100000", "Hi."], "argument --beam-size: must be from 1 to 100, got 100000"),
    (["translate", "--beam-size", "2.5", "Hi."], "--beam-size: must be a whole number from 1 to 100, got '2.5'"),
    (["translate", "--batch-size", "-5", "Hi."], "argument --batch-size: must be 1 or more, got -5"),
    (["translate", "--n-best", "0", "Hi."], "argument --n-best: must be 1 or more, got 0"),
    (["translate", "--n-best", "3", "--beam-size", "2", "Hi."], "argument --n-best: 3 cannot exceed --beam-size 2"),
    (["evaluate", "--beam-size", "0", "--src", "a.en", "--ref", "a.hi"], "--beam-size: must be from 1 to 100, got 0"),
    (["explain", "--top-k", "0", "Hi."], "argument --top-k: must be 1 or more, got 0"),
])
def test_numeric_options_are_checked_at_the_door(tiny_model, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([argv[0], "-m", str(tiny_model), *argv[1:]])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.splitlines()[-1].endswith(message) and "Traceback" not in err


def test_a_beam_wider_than_the_vocabulary_is_one_line(tiny_model, monkeypatch, capsys):
    words = Translator.load(tiny_model, "cpu").tgt.size
    monkeypatch.setattr(rnnmt_main, "MAX_BEAM", 1000)  # the tiny model's Hindi vocabulary is under the CLI's limit
    assert main(["translate", "-m", str(tiny_model), "--beam-size", str(words + 1), "Hello."]) == 2
    assert f"beam_size must be from 1 to {words} (the size of the target vocabulary)" in capsys.readouterr().err


def test_n_best_without_a_beam_size_searches_a_beam_of_n(tiny_model, capsys):
    assert main(["translate", "-m", str(tiny_model), "--n-best", "4", "Flowers bloom in spring."]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line]) == 4


@pytest.mark.parametrize("override, message", [
    (["--train.lr", "nan"], "override --train.lr: train.lr must be a finite number, got nan"),
    (["--train.threads", "-1"], "override --train.threads: train.threads must not be negative, got -1"),
])
def test_bad_overrides_are_one_line_naming_the_override(override, message, capsys):
    assert main(["train", "default", *override]) == 2
    err = capsys.readouterr().err
    assert err == f"rnnmt train: error: {message}\n"


def test_train_init_from_fine_tunes_a_model(tiny_model, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"max_steps": 5, "valid_every": 5})), encoding="utf-8")
    assert main(["train", str(config), "--model-dir", str(tmp_path / "tuned"), "--init-from", str(tiny_model)]) == 0
    metadata = json.loads((tmp_path / "tuned" / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["parent"]["model"] == str(tiny_model.resolve())
    assert main(["train", str(config), "--model-dir", str(tmp_path / "x"), "--init-from", str(tmp_path)]) == 2
    assert "missing config.yaml" in capsys.readouterr().err


def test_translate_prints_alignments_and_takes_an_ensemble(tiny_model, capsys):
    assert main(["translate", "-m", str(tiny_model), "--alignments", "Flowers bloom in spring."]) == 0
    text, alignment = capsys.readouterr().out.strip().split(" ||| ")
    assert text == "वसंत में फूल खिलते हैं।" and len(alignment.split()) == len(text.split())
    assert main(["translate", "-m", str(tiny_model), "-m", str(tiny_model), "Flowers bloom in spring."]) == 0
    assert capsys.readouterr().out.strip() == text  # the same model twice translates as once
    assert run("translate", "-m", str(tiny_model), "--alignments", "--n-best", "2", "Hi").returncode == 2


def test_translate_with_a_glossary_forces_its_terms(tiny_model, tmp_path, capsys):
    terms = tmp_path / "terms.tsv"
    terms.write_text("spring\tबसंत\nzebra\tज़ेबरा\n", encoding="utf-8")
    argv = ["translate", "-m", str(tiny_model), "--glossary", str(terms), "Flowers bloom in spring.", "Hi."]
    assert main([*argv, "--beam-size", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].count("बसंत") == 1 and out[1] == Translator.load(tiny_model, "cpu").translate("Hi.", 4)
    assert main([*argv, "--n-best", "2"]) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert all("बसंत" in line for line in blocks[0].splitlines())  # every alternative holds the term
    assert main([*argv, "--beam-size", "1"]) == 0
    out, err = capsys.readouterr()
    assert "बसंत" in out.splitlines()[0] and "--glossary with beam size 1: each term goes in as early" in err


@pytest.mark.parametrize("content, message", [
    (None, "terms.tsv: no such file"),
    (b"spring\n", "terms.tsv:1: expected English<TAB>Hindi, found no tab"),
    (b"spring\t \n", "terms.tsv:1: the Hindi side is empty"),
    ("\t\u092b\n".encode(), "terms.tsv:1: the English side is empty"),
    (b"ok\tx\n\xff\tx\n", "terms.tsv:2: invalid UTF-8 at byte 0: b'\\xff\\tx'"),
])
def test_a_bad_glossary_is_one_line_naming_the_file_and_line(tiny_model, tmp_path, capsys, content, message):
    path = tmp_path / "terms.tsv"
    if content is not None:
        path.write_bytes(content)
    assert main(["translate", "-m", str(tiny_model), "--glossary", str(path), "Hi."]) == 2
    assert capsys.readouterr().err == f"rnnmt translate: error: {tmp_path}/{message}\n"


def test_the_numpy_engine_refuses_a_glossary(tiny_model, tmp_path, capsys):
    assert main(["translate", "-m", str(tiny_model), "--engine", "numpy", "--glossary", str(tmp_path / "t"), "Hi"]) == 2
    assert "--engine numpy searches greedily only: drop --beam-size, --n-best, --alignments and --glossary" in (
        capsys.readouterr().err)
