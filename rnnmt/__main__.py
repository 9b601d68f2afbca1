"""The command line: ``rnnmt train | translate | evaluate | average | study | explain | serve``, thin layers.

Commands import torch (through training and Translator) only when they run, so that
``rnnmt translate --engine numpy`` works with NumPy and SentencePiece alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from rnnmt.config import bundled_names, load_config
from rnnmt.data import normalize_hindi, read_lines
from rnnmt.errors import USER_ERRORS, ConfigError, DataError
from rnnmt.metrics import corpus_scores
from rnnmt.reference import ReferenceTranslator

if TYPE_CHECKING:
    from rnnmt.translator import Translation, Translator

log = logging.getLogger("rnnmt")


def setup_logging() -> None:
    """Progress messages to stderr (training also writes them to the model folder's train.log)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, force=True)


def cmd_train(args: argparse.Namespace, overrides: list[str]) -> None:
    from rnnmt.training import train

    config = load_config(args.config, overrides)
    folder = Path(args.model_dir or f"models/{config.name}")
    metadata = train(config, folder, resume=args.resume, overwrite=args.overwrite, init_from=args.init_from)
    if not metadata:  # a rank other than the leader of a torchrun launch
        return
    best = metadata["best"]
    if "dev_chrf" in best:
        print(f"{folder}: dev BLEU {best['dev_bleu']:.2f}, chrF++ {best['dev_chrf']:.2f} "
              f"after {metadata['steps']} steps, {metadata['training_seconds'] / 60:.1f} min")
    else:
        print(f"{folder}: {metadata['steps']} steps, {metadata['training_seconds'] / 60:.1f} min (no dev set)")


def cmd_translate(args: argparse.Namespace) -> None:
    """Translate the arguments or stdin line for line; a line that is not UTF-8 gets an empty line, then an error."""
    bad: list[int] = []
    what = "argument" if args.text else "stdin line"
    sources = decoded((os.fsencode(text) for text in args.text) if args.text else stdin_lines(), bad, what)
    outputs = translate_numpy(args, sources) if args.engine == "numpy" else translate_torch(args, sources)
    shown = sys.stderr.isatty() and not sys.stdout.isatty()  # a bar between output lines would garble both
    with logging_redirect_tqdm():
        for output in tqdm(outputs, unit=" lines", file=sys.stderr, disable=not shown, dynamic_ncols=True):
            print(output, flush=not args.text)
    if bad:
        raise invalid_utf8(bad, what)


def stdin_lines() -> Iterator[bytes]:
    """Stdin's lines as bytes, without their line ends, read as they come."""
    return (line.removesuffix(b"\n").removesuffix(b"\r") for line in sys.stdin.buffer)


def decode(line: bytes, what: str) -> str:
    """``line`` decoded from UTF-8, or a DataError that names it (``what``) and its first bad byte."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{what} is not valid UTF-8 (byte {err.start + 1} is 0x{line[err.start]:02x})") from None


def decoded(lines: Iterable[bytes], bad: list[int], what: str) -> Iterator[str]:
    """Each line decoded from UTF-8; one that is not is logged, numbered in ``bad`` and read as an empty line."""
    for number, line in enumerate(lines, start=1):
        try:
            text = decode(line, f"{what} {number}")
        except DataError as err:
            log.warning("%s: its output line is left empty", err)
            bad.append(number)
            text = ""
        yield text


def invalid_utf8(bad: list[int], what: str) -> DataError:
    """The error that names the input lines that were not UTF-8 (the first ten of them)."""
    numbers = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
    if len(bad) == 1:
        return DataError(f"{what} {numbers} is not valid UTF-8; its output line is empty")
    return DataError(f"{what}s {numbers} are not valid UTF-8; their output lines are empty")


def translate_torch(args: argparse.Namespace, sources: Iterable[str]) -> Iterator[str]:
    """The translations of ``sources`` in order, or with ``--n-best`` a block of scored alternatives for each."""
    from rnnmt.glossary import Glossary
    from rnnmt.translator import Translator

    glossary = Glossary.read(args.glossary) if args.glossary else None  # a bad file fails before the model loads
    translator = Translator.load(args.model, args.device, args.precision)
    if args.batch_size:
        translator.config.search.batch_size = args.batch_size
    if args.alignments and translator.model.decoder.attention is None:
        raise ConfigError(f"--alignments reads attention, and {', '.join(args.model)} has none")
    if glossary is not None and (args.beam_size or translator.config.search.beam_size) == 1:
        log.warning("--glossary with beam size 1: each term goes in as early as it can; --beam-size 5 or more "
                    "lets the beam place it")
    if args.n_best == 1 and not args.alignments:
        checked_search(translator, args.beam_size, None)
        return translator.translate_stream(sources, args.beam_size, glossary=glossary)
    beam_size = args.beam_size or max(translator.config.search.beam_size, args.n_best)
    checked_search(translator, beam_size, args.n_best)
    show = n_best_block if args.n_best > 1 else lambda result: f"{result.text} ||| {result.alignment}"
    return (show(result) for chunk in chunks(sources, 1024)
            for result in translator.translate_full(chunk, beam_size, args.n_best, glossary))


def checked_search(translator: Translator, beam_size: int | None, n_best: int | None) -> None:
    """Refuse, as a one-line error, a beam or n-best the model cannot search with (a beam over its vocabulary)."""
    try:
        translator.search_settings(beam_size, n_best)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """``items`` in lists of ``size``, the last one shorter."""
    items = iter(items)
    while chunk := list(islice(items, size)):
        yield chunk


def n_best_block(result: Translation) -> str:
    """One line ``score<TAB>text`` per alternative, best first, and an empty line after them."""
    return "".join(f"{score:.4f}\t{text}\n" for text, score in result.n_best)


def translate_numpy(args: argparse.Namespace, sources: Iterable[str]) -> Iterator[str]:
    """Greedy translation by the NumPy reference engine; nothing on this path imports torch."""
    if (args.beam_size or 1) > 1 or args.n_best > 1 or args.alignments or args.glossary:
        raise ConfigError("--engine numpy searches greedily only: drop --beam-size, --n-best, --alignments and"
                          " --glossary")
    if len(args.model) > 1:
        raise ConfigError("--engine numpy translates with one model: give one -m")
    engine = ReferenceTranslator.load(args.model[0])
    return (engine.translate(line) for line in sources)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from rnnmt.model_folder import write_bytes
    from rnnmt.translator import Translator

    translator = Translator.load(args.model, args.device, args.precision)
    checked_search(translator, args.beam_size, None)
    sources = read_lines(args.src)
    references = [[normalize_hindi(line, indic=False) for line in read_lines(path)] for path in args.ref]
    for path, stream in zip(args.ref, references, strict=True):
        if len(stream) != len(sources):
            raise DataError(f"{args.src} has {len(sources)} lines but {path} has {len(stream)}")
    hypotheses = translator.translate(sources, args.beam_size)
    src = Path(args.src).resolve()  # two test sets are often both dev.en: their folder tells them apart
    out = Path(args.out or Path(args.model[0]) / "eval" / f"{src.parent.name}.{src.name}.hyp")
    write_bytes(out, "".join(h + "\n" for h in hypotheses).encode("utf-8"))
    scores = corpus_scores(hypotheses, references)
    if args.json:
        print(json.dumps({**scores.to_dict(), "hypotheses": str(out)}, ensure_ascii=False, indent=2))
    else:
        print(f"BLEU   {scores.bleu:6.2f}  {scores.bleu_signature}")
        print(f"chrF++ {scores.chrf:6.2f}  {scores.chrf_signature}")
        print(f"hypotheses: {out}")


def cmd_average(args: argparse.Namespace) -> None:
    from rnnmt.model_folder import average_checkpoints

    metadata = average_checkpoints(args.model, args.last, args.out)
    print(f"{args.out}: the mean of {', '.join(metadata['averaged_from']['checkpoints'])} of {args.model}")


def cmd_study(args: argparse.Namespace, overrides: list[str]) -> None:
    from rnnmt.study import Budget, bottleneck, gradients, load_rows, recipe

    if args.study == "gradients":
        models = [Path(m) for m in args.models.split(",")] if args.models else None
        budget = Budget(steps=args.budget_steps) if args.budget_steps else Budget(minutes=args.budget_minutes)
        results = gradients(load_config(args.data, overrides), Path(args.out), budget, tuple(args.cells.split(",")),
                            models, args.sentences, args.loss)
        print(Path(args.out, "gradients.md").read_text(encoding="utf-8"))
        print(f"table, plot and JSON in {args.out}; models: "
              + ", ".join(m["folder"] for m in results["models"].values()))
        return
    if args.study == "recipe":
        only = args.only.split(",") if args.only else None
        budget = Budget(steps=args.budget_steps) if args.budget_steps else Budget(minutes=args.budget_minutes)
        results = recipe(load_config(args.data, overrides), load_rows(args.rows), Path(args.out), budget, only=only)
        print(Path(args.out, "recipe.md").read_text(encoding="utf-8") if results else "no row done")
        return
    results = bottleneck(load_config(args.data, overrides), Path(args.out), args.budget_minutes, args.attention,
                         holdout=args.holdout)
    print(Path(args.out, "bottleneck.md").read_text(encoding="utf-8"))
    print(f"table, plots and heatmaps in {args.out}; models: "
          + ", ".join(m["folder"] for m in results["models"].values()))


def cmd_explain(args: argparse.Namespace) -> None:
    from rnnmt.explain import explain, render_html, render_text
    from rnnmt.translator import Translator

    text = decode(os.fsencode(args.text), "the sentence")
    if not text.strip():
        raise DataError("nothing to explain: the sentence is empty")
    record = explain(Translator.load(args.model, args.device), text, args.top_k)
    if args.html:
        Path(args.html).write_text(render_html(record), encoding="utf-8")
    print(json.dumps(record, ensure_ascii=False, indent=2) if args.json else render_text(record))


def cmd_serve(args: argparse.Namespace) -> None:
    """The API and the page, served by uvicorn until interrupted."""
    import uvicorn

    from rnnmt.serving import LOCAL_HOSTS, ServeSettings, create_app
    from rnnmt.translator import Translator

    try:  # the key comes from the environment: a command line is visible to every user in `ps`
        settings = ServeSettings(allowed_hosts=[*LOCAL_HOSTS, args.host, *args.allowed_host],
                                 cors_origins=args.cors_origin, api_key=os.environ.get("RNNMT_API_KEY") or None)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if args.host not in LOCAL_HOSTS and settings.api_key is None:
        log.warning("serving on %s without an API key: anyone who can reach it can use it (set RNNMT_API_KEY)",
                    args.host)
    app = create_app(Translator.load(args.model, args.device), settings)
    log.info("serving %s on http://%s:%d (OpenAPI schema at /openapi.json)", args.model, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


MAX_BEAM = 100  # the largest --beam-size: wider beams cost much and, on NMT, usually score worse


def positive_int(text: str, most: int | None = None) -> int:
    """argparse type: a whole number from 1 (to ``most``), or a usage error that says the allowed range."""
    allowed = f"from 1 to {most}" if most else "1 or more"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number {allowed}, got {text!r}") from None
    if value < 1 or (most is not None and value > most):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
    return value


def beam_size(text: str) -> int:
    """argparse type: a beam size from 1 to ``MAX_BEAM``."""
    return positive_int(text, MAX_BEAM)


def port(text: str) -> int:
    """argparse type: a TCP port."""
    return positive_int(text, 65535)


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {value}")
    return value


def count(text: str) -> int:
    """argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rnnmt", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model and write a model folder",
                       epilog="Any config field can be overridden: --train.lr 3e-4 --model.cell lstm")
    p.add_argument("config", help=f"a YAML config file, or a bundled one: {bundled_names()}")
    p.add_argument("--model-dir", help="where to write the model folder (default: models/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from the folder's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start again in a folder that holds a run")
    p.add_argument("--init-from", metavar="MODEL",
                   help="fine-tune: start from this model folder's weights and vocabularies (same architecture),"
                        " with a fresh optimiser and schedule")
    p.add_argument("--seed", type=int, help="the same as --train.seed")
    for name, help_text in (("translate", "translate text given as arguments, or stdin to stdout"),
                            ("evaluate", "translate a test set and score it with sacreBLEU")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("-m", "--model", required=True, action="append",
                       help="a model folder written by rnnmt train; give it again for an ensemble (-m A -m B)")
        p.add_argument("--beam-size", type=beam_size,
                       help=f"1 is greedy search, at most {MAX_BEAM} (default: the model's config)")
        p.add_argument("--device", default="auto", help="auto, cpu or cuda")
        p.add_argument("--precision", choices=("fp32", "int8"),
                       help="int8: quantised weights, faster on the CPU (default: the model's search.precision)")
        if name == "translate":
            p.add_argument("text", nargs="*", help="English sentences (default: read lines from stdin)")
            p.add_argument("--n-best", type=positive_int, default=1,
                           help="print the n best translations with scores, at most --beam-size (default beam: the"
                                " model's, raised to n)")
            p.add_argument("--batch-size", type=positive_int, help="sentences per batch")
            p.add_argument("--alignments", action="store_true",
                           help="print 'translation ||| alignment', the word alignment read from attention in"
                                " Pharaoh format (i-j: English word i, Hindi word j)")
            p.add_argument("--engine", choices=("torch", "numpy"), default="torch",
                           help="numpy: the reference engine, greedy search without torch")
            p.add_argument("--glossary", metavar="FILE",
                           help="a UTF-8 file of English<TAB>Hindi terms: where an English term occurs in a sentence"
                                " (whole words, any case), its Hindi is forced into the translation (lexically"
                                " constrained beam search); best with --beam-size 5 or more")
        else:
            p.add_argument("--src", required=True, help="English file, one sentence per line")
            p.add_argument("--ref", required=True, nargs="+", help="Hindi reference file(s)")
            p.add_argument("--out", help="where to write the hypotheses (default: MODEL/eval/FOLDER.SRC.hyp)")
            p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p = sub.add_parser("average", help="average the weights of a run's last kept checkpoints into a new model folder")
    p.add_argument("-m", "--model", required=True, help="a model folder trained with --train.keep_checkpoints N")
    p.add_argument("--last", type=positive_int, default=5, help="how many of the last kept checkpoints (default: 5)")
    p.add_argument("--out", required=True, help="the new model folder")
    p = sub.add_parser("study", help="measure the model: `bottleneck` trains it without and with attention, `recipe`"
                       " with one change at a time, `gradients` measures dL/dh_t by distance for each cell",
                       epilog="Config fields can be overridden as in train: --model.cell rnn")
    p.add_argument("study", choices=("bottleneck", "recipe", "gradients"), help="which study to run")
    p.add_argument("--data", default="shared", help="the config (data and model) both models share (default: shared)")
    p.add_argument("--budget-minutes", type=positive_float, default=10.0, help="training minutes for each model")
    p.add_argument("--attention", default="luong_general", choices=("bahdanau", "luong_dot", "luong_general"))
    p.add_argument("--holdout", type=count, default=0,
                   help="score on this many pairs held out of the training data (default: the config's dev set)")
    p.add_argument("--budget-steps", type=count, default=0,
                   help="recipe, gradients: train each row (each cell) this many steps instead of --budget-minutes")
    p.add_argument("--rows", default="levers", help="recipe: a YAML file of rows, or a bundled one (data, levers)")
    p.add_argument("--only", help="recipe: train only these rows (slugs, comma-separated); the table has all rows done")
    p.add_argument("--cells", default="rnn,gru,lstm",
                   help="gradients: the cells to train, comma-separated (default: rnn,gru,lstm)")
    p.add_argument("--models", help="gradients: measure these model folders (comma-separated) instead of training")
    p.add_argument("--sentences", type=positive_int, default=500,
                   help="gradients: training pairs measured, drawn at random (default: 500)")
    p.add_argument("--loss", choices=("sentence", "last"), default="sentence",
                   help="gradients: L is the whole target's cross-entropy, or its last token's (default: sentence)")
    p.add_argument("--out", help="folder for the models, table and plots (default: runs/STUDY)")
    p = sub.add_parser("explain", help="walk one translation through the seed's table with the real numbers")
    p.add_argument("-m", "--model", required=True, help="a model folder written by rnnmt train")
    p.add_argument("text", help="one English sentence")
    p.add_argument("--json", action="store_true", help="print the record as JSON instead of the text view")
    p.add_argument("--html", help="also write a self-contained HTML page to this file")
    p.add_argument("--top-k", type=positive_int, default=5, help="words shown per decoder step")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p = sub.add_parser("serve", help="serve the REST API and the web page (OpenAPI schema at /openapi.json)",
                       epilog="Set RNNMT_API_KEY to require header X-API-Key on every API request.")
    p.add_argument("-m", "--model", required=True, help="a model folder written by rnnmt train")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=port, default=8000, help="port to listen on")
    p.add_argument("--allowed-host", action="append", default=[], metavar="HOST",
                   help="another Host name clients may use, repeatable ('*.example.org' for subdomains, '*' for any);"
                        " localhost, 127.0.0.1, ::1 and --host are always allowed")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let pages from this origin call the API, repeatable (such as https://example.org)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return top


def main(argv: list[str] | None = None) -> int:
    args, rest = parser().parse_known_args(argv)
    if args.command not in ("train", "study") and rest:
        parser().error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "translate" and args.beam_size and args.n_best > args.beam_size:
        parser().error(f"argument --n-best: {args.n_best} cannot exceed --beam-size {args.beam_size}")
    if args.command == "translate" and args.alignments and args.n_best > 1:
        parser().error("argument --alignments: give it without --n-best (it aligns the best translation)")
    if args.command == "train" and args.seed is not None:
        rest += ["--train.seed", str(args.seed)]
    if args.command == "study":
        args.out = args.out or f"runs/{args.study}"
    setup_logging()
    try:
        if args.command == "train":
            cmd_train(args, rest)
        elif args.command == "translate":
            cmd_translate(args)
        elif args.command == "study":
            cmd_study(args, rest)
        elif args.command == "explain":
            cmd_explain(args)
        elif args.command == "serve":
            cmd_serve(args)
        elif args.command == "average":
            cmd_average(args)
        else:
            cmd_evaluate(args)
    except USER_ERRORS as err:
        print(f"rnnmt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`rnnmt translate ... | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit flush cannot fail again
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
