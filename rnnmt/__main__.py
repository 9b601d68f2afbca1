"""The command line: ``rnnmt train | translate | evaluate``, thin layers over training and Translator."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rnnmt.config import ConfigError, load_config
from rnnmt.data import DataError, normalize_hindi, read_lines
from rnnmt.metrics import corpus_scores
from rnnmt.model_folder import ModelFolderError, write_bytes
from rnnmt.training import TrainingError, train
from rnnmt.translator import Translator

log = logging.getLogger("rnnmt")


def setup_logging(log_file: Path | None = None) -> None:
    """Progress messages to stderr, and to ``log_file`` as well when given."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        handlers=handlers, force=True)


def cmd_train(args: argparse.Namespace, overrides: list[str]) -> None:
    config = load_config(args.config, overrides)
    folder = Path(args.model_dir or f"models/{config.name}")
    setup_logging(folder / "train.log")
    metadata = train(config, folder, resume=args.resume, overwrite=args.overwrite)
    best = metadata["best"]
    if "dev_chrf" in best:
        print(f"{folder}: dev BLEU {best['dev_bleu']:.2f}, chrF++ {best['dev_chrf']:.2f} "
              f"after {metadata['steps']} steps, {metadata['training_seconds'] / 60:.1f} min")
    else:
        print(f"{folder}: {metadata['steps']} steps, {metadata['training_seconds'] / 60:.1f} min (no dev set)")


def cmd_translate(args: argparse.Namespace) -> None:
    translator = Translator.load(args.model, args.device)
    if args.batch_size:
        translator.config.search.batch_size = args.batch_size
    if args.n_best > 1:
        for result in translator.translate_full(args.text or read_stdin(), max(args.beam_size or 1, args.n_best),
                                                args.n_best):
            for text, score in result.n_best:
                print(f"{score:.4f}\t{text}")
            print()
        return
    lines = args.text or (line.rstrip("\n") for line in sys.stdin)
    for translation in translator.translate_stream(lines, args.beam_size):
        print(translation, flush=not args.text)


def read_stdin() -> list[str]:
    return [line.rstrip("\n") for line in sys.stdin]


def cmd_evaluate(args: argparse.Namespace) -> None:
    translator = Translator.load(args.model, args.device)
    sources = read_lines(args.src)
    references = [[normalize_hindi(line, indic=False) for line in read_lines(path)] for path in args.ref]
    for path, stream in zip(args.ref, references, strict=True):
        if len(stream) != len(sources):
            raise DataError(f"{args.src} has {len(sources)} lines but {path} has {len(stream)}")
    hypotheses = translator.translate(sources, args.beam_size)
    out = Path(args.out or Path(args.model) / "eval" / f"{Path(args.src).name}.hyp")
    write_bytes(out, "".join(h + "\n" for h in hypotheses).encode("utf-8"))
    scores = corpus_scores(hypotheses, references)
    if args.json:
        print(json.dumps({**scores.to_dict(), "hypotheses": str(out)}, ensure_ascii=False, indent=2))
    else:
        print(f"BLEU   {scores.bleu:6.2f}  {scores.bleu_signature}")
        print(f"chrF++ {scores.chrf:6.2f}  {scores.chrf_signature}")
        print(f"hypotheses: {out}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rnnmt", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model and write a model folder",
                       epilog="Any config field can be overridden: --train.lr 3e-4 --model.cell lstm")
    p.add_argument("config", help="a YAML config file, or a bundled one: default, seed, shared")
    p.add_argument("--model-dir", help="where to write the model folder (default: models/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from the folder's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start again in a folder that holds a run")
    p.add_argument("--seed", type=int, help="the same as --train.seed")
    for name, help_text in (("translate", "translate text given as arguments, or stdin to stdout"),
                            ("evaluate", "translate a test set and score it with sacreBLEU")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("-m", "--model", required=True, help="a model folder written by rnnmt train")
        p.add_argument("--beam-size", type=int, help="1 is greedy search (default: the model's config)")
        p.add_argument("--device", default="auto", help="auto, cpu or cuda")
        if name == "translate":
            p.add_argument("text", nargs="*", help="English sentences (default: read lines from stdin)")
            p.add_argument("--n-best", type=int, default=1, help="print the n best translations with scores")
            p.add_argument("--batch-size", type=int, help="sentences per batch")
        else:
            p.add_argument("--src", required=True, help="English file, one sentence per line")
            p.add_argument("--ref", required=True, nargs="+", help="Hindi reference file(s)")
            p.add_argument("--out", help="where to write the hypotheses (default: MODEL/eval/SRC.hyp)")
            p.add_argument("--json", action="store_true", help="print the scores as JSON")
    return top


def main(argv: list[str] | None = None) -> int:
    args, rest = parser().parse_known_args(argv)
    if args.command != "train" and rest:
        parser().error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "train" and args.seed is not None:
        rest += ["--train.seed", str(args.seed)]
    setup_logging()
    try:
        if args.command == "train":
            cmd_train(args, rest)
        elif args.command == "translate":
            cmd_translate(args)
        else:
            cmd_evaluate(args)
    except (ConfigError, DataError, ModelFolderError, TrainingError) as err:
        print(f"rnnmt {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
