"""The configuration tree: plain dataclasses loaded from YAML, validated on load.

Every default lives here and nowhere else. ``load_config`` reads a YAML file (or the name of a bundled
config such as ``default`` or ``seed``), applies ``--section.key value`` overrides, and refuses unknown
keys, wrong types and unknown choices with a message that names the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rnnmt.errors import ConfigError

BUNDLED_CONFIGS = Path(__file__).parent / "configs"



@dataclass
class CorpusConfig:
    """One parallel corpus: aligned files, a TSV file, a saved Hugging Face dataset, or the bundled one."""

    src: str | None = None  # English side of two aligned files
    tgt: str | None = None  # Hindi side of two aligned files
    tsv: str | None = None  # English<TAB>Hindi[<TAB>anything], such as Tatoeba's hin.txt
    hf: str | None = None  # a Hugging Face dataset saved with save_to_disk (needs the `hf` extra)
    hf_split: str = "train"
    hf_field: str = "translation"  # rows look like {"translation": {"en": ..., "hi": ...}}
    bundled: str | None = None  # `train`, `dev` or `test`: the corpus shipped inside rnnmt
    limit: int | None = None  # keep only the first N pairs
    weight: float = 1.0  # training: each epoch samples weight x its pairs (0 leaves it out); see data.epoch_mix
    name: str | None = None  # a short name for logs and tables (default: its folder, file or bundled name)

    def describe(self) -> str:
        """A short human-readable name for logs and metadata."""
        if self.bundled:
            return f"bundled:{self.bundled}"
        if self.tsv:
            return self.tsv
        if self.hf:
            return f"hf:{self.hf}[{self.hf_split}]"
        return f"{self.src} | {self.tgt}"

    def label(self) -> str:
        """The short name: ``name``, or the folder of aligned files, the TSV file's stem, ``bundled-dev``..."""
        if self.name:
            return self.name
        if self.bundled:
            return f"bundled-{self.bundled}"
        if self.hf:
            return f"{Path(self.hf).name}-{self.hf_split}"
        return Path(self.tsv).stem if self.tsv else Path(self.src).parent.name or Path(self.src).stem


@dataclass
class DataConfig:
    """Where the pairs come from and how they are cleaned."""

    train: list[CorpusConfig] = field(default_factory=lambda: [CorpusConfig(bundled="train")])
    dev: list[CorpusConfig] = field(default_factory=lambda: [CorpusConfig(bundled="dev")])  # each scored; best by mean
    normalize_hindi: bool = True  # indic-nlp-library's Hindi normaliser, after NFC
    min_words: int = 1
    max_words: int = 60  # longer training pairs are dropped (per side, whitespace words)
    max_ratio: float = 3.0  # drop pairs whose word-length ratio exceeds this
    dedup: bool = True


@dataclass
class VocabConfig:
    """Subword (SentencePiece) or word vocabularies."""

    kind: Literal["sentencepiece", "word"] = "sentencepiece"
    joint: bool = False  # one SentencePiece model for both languages
    src_size: int = 8000
    tgt_size: int = 8000
    model_type: Literal["unigram", "bpe"] = "unigram"
    min_freq: int = 1  # word mode: drop rarer words to <unk>
    sampling: bool = False  # subword regularisation: a new segmentation of the training pairs every epoch
    sampling_alpha: float = 0.1  # unigram: the smoothing of the sampled segmentations; bpe: the BPE-dropout rate
    sampling_nbest: int = 64  # unigram: sample among this many best segmentations (-1: all of them)


@dataclass
class ModelConfig:
    """The encoder-decoder of the seed note, with the field's usual options."""

    cell: Literal["rnn", "gru", "lstm"] = "gru"
    emb_size: int = 256
    hidden_size: int = 512
    encoder_layers: int = 1
    decoder_layers: int = 1
    bidirectional: bool = False
    attention: Literal["none", "bahdanau", "luong_dot", "luong_general"] = "none"
    input_feeding: bool = False
    residual: bool = False  # stacked layers add their input to their output (from the second layer on)
    tie_embeddings: bool = False  # the decoder's embedding is the output layer's V_out (projected when sizes differ)
    dropout: float = 0.1  # the default of the three dropouts below
    emb_dropout: float | None = None  # on the embedded words of both sides (None: dropout)
    rnn_dropout: float | None = None  # on the encoder's states and between stacked layers (None: dropout)
    out_dropout: float | None = None  # on the attentional output, before the logits (None: dropout)
    word_dropout: float = 0.0  # training: the share of English tokens whose embedding is zeroed
    h0: Literal["zeros", "learned"] = "zeros"
    init: Literal["xavier", "uniform", "pytorch"] = "xavier"
    init_scale: float = 0.1  # the bound of `uniform` init

    @property
    def directions(self) -> int:
        """How many ways the encoder reads the English: 2 when bidirectional."""
        return 2 if self.bidirectional else 1

    def dropouts(self) -> tuple[float, float, float]:
        """(emb_dropout, rnn_dropout, out_dropout), each defaulting to ``dropout``."""
        return tuple(self.dropout if p is None else p for p in (self.emb_dropout, self.rnn_dropout, self.out_dropout))


@dataclass
class TrainConfig:
    """The optimisation loop."""

    lr: float = 1e-3
    batch_tokens: int = 2000  # target tokens per batch, padding included
    max_steps: int = 0  # 0: no step limit
    max_epochs: int = 30
    max_minutes: float = 0.0  # 0: no time limit
    clip_norm: float = 1.0
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: Literal["plateau", "cooldown"] = "plateau"  # cooldown: held, then down to min_lr at the budget's end
    lr_cooldown: float = 0.2  # the last share of the budget over which the cooldown schedule falls to min_lr
    lr_factor: float = 0.5  # reduce on plateau of the dev loss
    lr_patience: int = 2
    min_lr: float = 1e-5
    valid_every: int = 200  # steps
    valid_sentences: int = 500  # dev sentences decoded for BLEU/chrF++ at each validation
    patience: int = 8  # validations without a better dev chrF++ before stopping early
    log_every: int = 20
    seed: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA and on CPUs with bf16 units
    threads: int = 0  # torch threads on the CPU; 0 keeps torch's default
    ema_decay: float = 0.0  # validate and keep an exponential moving average of the weights (0: off)
    keep_checkpoints: int = 0  # keep the weights of this many last validations in checkpoints/ (rnnmt average)
    tensorboard: bool = False  # write TensorBoard event files to MODEL/tensorboard (needs rnnmt[tensorboard])


@dataclass
class SearchConfig:
    """How translations are searched for."""

    beam_size: int = 1  # 1: greedy, the seed's argmax (step 9)
    n_best: int = 1
    length_penalty: float = 1.0  # alpha of GNMT's ((5 + |y|) / 6) ** alpha; 0 turns it off
    max_len_ratio: float = 3.0  # at most this many target tokens per source token (plus 5) ...
    max_len: int = 200  # ... and never more than this
    max_src_len: int = 400  # longer inputs are cut to this many tokens
    batch_size: int = 64  # sentences per batch when translating
    replace_unk: bool = True  # copy the most attended source word where the output is <unk>
    precision: Literal["fp32", "int8"] = "fp32"  # int8: dynamically quantised weights, for CPU inference

    def output_limit(self, src_len: int) -> int:
        """The most output tokens (</s> included) a source of ``src_len`` tokens may get: the ratio each, plus 5."""
        return min(math.ceil(src_len * self.max_len_ratio) + 5, self.max_len)


@dataclass
class Config:
    """The whole tree, one section per concept."""

    name: str = "rnnmt"
    data: DataConfig = field(default_factory=DataConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def to_dict(self) -> dict[str, Any]:
        """The tree as plain data, ready for YAML."""
        return dataclasses.asdict(self)


def load_config(source: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (a path or a bundled name) and apply ``--section.key value`` overrides."""
    path = resolve_config_path(source)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    pairs = parse_overrides(overrides or [])
    for key, value in pairs:
        set_dotted(raw, key, value)
    try:
        return config_from_dict(raw, where=str(path))
    except ConfigError as err:
        raise blame_overrides(err, str(path), [key for key, _ in pairs]) from None


def blame_overrides(err: ConfigError, where: str, keys: list[str]) -> ConfigError:
    """``err`` blamed on the overrides whose fields it names, instead of the file ``where``, if it names any."""
    message = str(err).removeprefix(f"{where}: ")
    named = [key for key in dict.fromkeys(keys) if re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", message)]
    if not named:
        return err
    return ConfigError(f"{'override' if len(named) == 1 else 'overrides'} {', '.join('--' + k for k in named)}: "
                       f"{message}")


def resolve_config_path(source: str | Path) -> Path:
    """A file path as given, or the bundled config of that name (``default``, ``seed``, ...)."""
    path = Path(source)
    if path.is_file():
        return path
    bundled = BUNDLED_CONFIGS / f"{source}.yaml"
    if bundled.is_file():
        return bundled
    raise ConfigError(f"config {source!s} is neither a file nor a bundled config ({bundled_names()})")


def bundled_names() -> str:
    """The bundled configs, comma-separated: what ``rnnmt train NAME`` accepts besides a file."""
    return ", ".join(sorted(p.stem for p in BUNDLED_CONFIGS.glob("*.yaml")))


def config_from_dict(raw: dict[str, Any], where: str = "config") -> Config:
    """Build and validate a Config from plain data."""
    config = build(Config, raw, where)
    validate(config, where)
    return config


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """Turn ``["--train.lr", "3e-4", "--model.cell=lstm"]`` into ``[("train.lr", 3e-4), ...]``."""
    pairs, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg:
            raise ConfigError(f"override {arg!r} must look like --section.key value")
        if "=" in arg:
            key, text = arg[2:].split("=", 1)
            i += 1
        elif i + 1 < len(args):
            key, text = arg[2:], args[i + 1]
            i += 2
        else:
            raise ConfigError(f"override {arg} has no value")
        try:
            pairs.append((key, yaml.safe_load(text)))
        except yaml.YAMLError as err:
            raise ConfigError(f"override --{key}: {text!r} is not valid YAML: {' '.join(str(err).split())}") from None
    return pairs


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw["a"]["b"] = value`` for the key ``a.b``."""
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override --{key}: {part} is not a section")
    node[last] = value


def build(cls: type, raw: Any, where: str, path: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a mapping, checking every key and type; ``path`` names the section."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {path or 'the config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key {path + unknown[0]!r}; allowed: {', '.join(names)}")
    return cls(**{key: coerce(hints[key], value, where, f"{path}{key}") for key, value in raw.items()})


def coerce(hint: Any, value: Any, where: str, path: str) -> Any:
    """Check ``value`` against the type hint ``hint`` and convert what is safe to convert."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(inner, value, where, path)
    if origin is Literal:
        if value is False and "off" in args:
            value = "off"  # YAML 1.1 reads a bare `off` as false
        if value not in args:
            raise ConfigError(f"{where}: {path} is {value!r}; allowed values: {', '.join(map(str, args))}")
        return value
    if origin is list:
        items = [] if value is None else value if isinstance(value, list) else [value]
        return [coerce(args[0], item, where, f"{path}[{i}]") for i, item in enumerate(items)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {path} must be a mapping, got {value!r}")
        return {coerce(args[0], k, where, path): coerce(args[1], v, where, f"{path}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where, f"{path}.")
    if hint is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML reads 3e-4 (no dot) as a string
        except ValueError:
            pass
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {path} must be {hint.__name__}, got {value!r}")
    return value


def validate(config: Config, where: str) -> None:
    """Range checks that types alone cannot express: every number finite, each in its range."""
    check_finite(config, where)
    m, t, s, v = config.model, config.train, config.search, config.vocab
    positive = {"model.emb_size": m.emb_size, "model.hidden_size": m.hidden_size,
                "model.encoder_layers": m.encoder_layers, "model.decoder_layers": m.decoder_layers,
                "train.lr": t.lr, "train.batch_tokens": t.batch_tokens, "train.valid_every": t.valid_every,
                "train.log_every": t.log_every, "train.max_epochs": t.max_epochs,
                "search.beam_size": s.beam_size, "search.n_best": s.n_best, "search.max_len": s.max_len,
                "search.max_src_len": s.max_src_len, "search.batch_size": s.batch_size,
                "search.max_len_ratio": s.max_len_ratio, "vocab.src_size": v.src_size, "vocab.tgt_size": v.tgt_size,
                "vocab.sampling_alpha": v.sampling_alpha}
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{where}: {name} must be positive, got {value}")
    not_negative = {"train.max_steps": t.max_steps, "train.max_minutes": t.max_minutes, "train.clip_norm": t.clip_norm,
                    "train.weight_decay": t.weight_decay, "train.min_lr": t.min_lr, "train.threads": t.threads,
                    "train.patience": t.patience, "train.lr_patience": t.lr_patience,
                    "train.valid_sentences": t.valid_sentences, "train.keep_checkpoints": t.keep_checkpoints,
                    "search.length_penalty": s.length_penalty, "vocab.min_freq": v.min_freq}
    for name, value in not_negative.items():
        if value < 0:
            raise ConfigError(f"{where}: {name} must not be negative, got {value}")
    below_one = {"model.dropout": m.dropout, "model.emb_dropout": m.emb_dropout, "model.rnn_dropout": m.rnn_dropout,
                 "model.out_dropout": m.out_dropout, "model.word_dropout": m.word_dropout,
                 "train.label_smoothing": t.label_smoothing, "train.ema_decay": t.ema_decay,
                 "train.lr_factor": t.lr_factor}
    for name, value in below_one.items():
        if value is not None and not 0.0 <= value < 1.0:
            raise ConfigError(f"{where}: {name} must be in [0, 1), got {value}")
    if s.n_best > s.beam_size:
        raise ConfigError(f"{where}: search.n_best ({s.n_best}) cannot exceed search.beam_size ({s.beam_size})")
    if t.lr_schedule == "cooldown" and not (t.max_steps or t.max_minutes):
        raise ConfigError(f"{where}: train.lr_schedule cooldown ends with train.max_steps or train.max_minutes;"
                          " set one of them")
    if not 0.0 < t.lr_cooldown <= 1.0:
        raise ConfigError(f"{where}: train.lr_cooldown must be in (0, 1], got {t.lr_cooldown}")
    if m.input_feeding and m.attention == "none":
        raise ConfigError(f"{where}: model.input_feeding needs an attention other than none")
    if v.sampling and v.kind != "sentencepiece":
        raise ConfigError(f"{where}: vocab.sampling needs vocab.kind sentencepiece (words have one segmentation)")
    for i, corpus in enumerate(config.data.train):
        check_corpus(corpus, f"{where}: data.train[{i}]")
    for i, corpus in enumerate(config.data.dev):
        check_corpus(corpus, f"{where}: data.dev[{i}]")
    if not any(corpus.weight > 0 for corpus in config.data.train):
        raise ConfigError(f"{where}: data.train needs at least one corpus with a weight above 0")
    labels = [corpus.label() for corpus in config.data.dev]
    if len(set(labels)) < len(labels):
        twice = max(labels, key=labels.count)
        raise ConfigError(f"{where}: two dev sets are both called {twice!r}; set the name of one")


def check_finite(node: Any, where: str, path: str = "") -> None:
    """Refuse NaN and infinity anywhere in the tree, naming the field."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            name = f"{path}{f.name}" + (f"[{i}]" if isinstance(value, list) else "")
            if dataclasses.is_dataclass(item):
                check_finite(item, where, name + ".")
            elif isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{where}: {name} must be a finite number, got {item}")


def check_corpus(corpus: CorpusConfig, where: str) -> None:
    """Exactly one kind of source per corpus, and aligned files come in pairs."""
    kinds = [k for k in ("tsv", "hf", "bundled") if getattr(corpus, k)]
    if corpus.src or corpus.tgt:
        if not (corpus.src and corpus.tgt):
            raise ConfigError(f"{where}: aligned files need both src and tgt")
        kinds.append("src/tgt")
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of src/tgt, tsv, hf or bundled (got {kinds or 'none'})")
    if corpus.bundled and corpus.bundled not in ("train", "dev", "test"):
        raise ConfigError(f"{where}: bundled is {corpus.bundled!r}; allowed values: train, dev, test")
    if corpus.weight < 0:
        raise ConfigError(f"{where}: weight must not be negative, got {corpus.weight}")
    if corpus.limit is not None and corpus.limit <= 0:
        raise ConfigError(f"{where}: limit must be positive, got {corpus.limit}")


def config_to_yaml(config: Config) -> str:
    """The config as YAML text, which ``load_config`` reads back to an equal Config."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
