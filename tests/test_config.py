"""Config: defaults in one place, strict validation, overrides, and a YAML round trip."""

import dataclasses
import re

import pytest
import yaml

from rnnmt.config import (
    BUNDLED_CONFIGS,
    Config,
    ConfigError,
    config_from_dict,
    config_to_yaml,
    load_config,
    parse_overrides,
)


@pytest.mark.parametrize("name", ["default", "seed", "shared", "shared-v1"])
def test_bundled_configs_load(name):
    config = load_config(name)
    assert config.name == name


def test_seed_config_is_the_seed_model():
    model = load_config("seed").model
    assert (model.cell, model.attention, model.bidirectional) == ("rnn", "none", False)


def test_unknown_key_names_the_key_and_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown key 'model.cel'; allowed: cell, emb_size"):
        config_from_dict({"model": {"cel": "gru"}})


def test_unknown_choice_names_the_allowed_values():
    with pytest.raises(ConfigError, match=r"model.cell is 'lstmm'; allowed values: rnn, gru, lstm"):
        config_from_dict({"model": {"cell": "lstmm"}})


@pytest.mark.parametrize("section, key, value", [("train", "lr", "fast"), ("model", "hidden_size", 2.5),
                                                 ("model", "bidirectional", "yes"), ("train", "max_steps", True)])
def test_wrong_type_names_the_field(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}.{key} must be"):
        config_from_dict({section: {key: value}})


def test_range_checks():
    with pytest.raises(ConfigError, match="model.dropout must be in"):
        config_from_dict({"model": {"dropout": 1.5}})
    with pytest.raises(ConfigError, match="input_feeding needs an attention"):
        config_from_dict({"model": {"input_feeding": True, "attention": "none"}})
    with pytest.raises(ConfigError, match="lr_schedule cooldown ends with train.max_steps or train.max_minutes"):
        config_from_dict({"train": {"lr_schedule": "cooldown", "max_steps": 0, "max_minutes": 0}})
    with pytest.raises(ConfigError, match=r"train.lr_cooldown must be in \(0, 1\], got 0.0"):
        config_from_dict({"train": {"lr_cooldown": 0.0}})
    with pytest.raises(ConfigError, match="aligned files need both src and tgt"):
        config_from_dict({"data": {"train": [{"src": "a.en"}]}})


def test_overrides_apply_and_are_typed(tmp_path):
    config = load_config("default", ["--train.lr", "3e-4", "--model.cell=lstm", "--data.dev", "null"])
    assert config.train.lr == 3e-4 and config.model.cell == "lstm" and config.data.dev == []  # null: no dev set
    with pytest.raises(ConfigError, match="must look like --section.key"):
        parse_overrides(["--lr", "1"])
    with pytest.raises(ConfigError, match="has no value"):
        parse_overrides(["--train.lr"])


def test_yaml_round_trip(tmp_path):
    config = load_config("default", ["--model.attention", "bahdanau"])
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(config), encoding="utf-8")
    assert load_config(path) == config


def test_missing_config_is_named():
    with pytest.raises(ConfigError, match="neither a file nor a bundled config"):
        load_config("no-such-config")


def test_defaults_live_in_the_dataclasses():
    assert config_from_dict({}) == Config()


def test_a_bare_off_means_off():
    assert load_config("default", ["--train.amp", "off"]).train.amp == "off"
    assert config_from_dict({"train": {"amp": False}}).train.amp == "off"


def test_each_dropout_defaults_to_the_general_one():
    assert config_from_dict({"model": {"dropout": 0.3}}).model.dropouts() == (0.3, 0.3, 0.3)
    assert config_from_dict({"model": {"dropout": 0.3, "rnn_dropout": 0.0}}).model.dropouts() == (0.3, 0.0, 0.3)


def test_one_dev_set_as_a_mapping_still_reads_as_a_list():
    """Model folders written before several dev sets have ``dev: {...}`` in their config.yaml."""
    config = config_from_dict({"data": {"dev": {"bundled": "dev"}}})
    assert [corpus.label() for corpus in config.data.dev] == ["bundled-dev"]


@pytest.mark.parametrize(("override", "message"), [
    (["--train.lr", "nan"], "train.lr must be a finite number"),
    (["--model.word_dropout", "1.0"], r"model.word_dropout must be in \[0, 1\)"),
    (["--train.ema_decay", "-0.1"], r"train.ema_decay must be in \[0, 1\)"),
    (["--data.train", "[{bundled: train, weight: -1}]"], r"data.train\[0\]: weight must not be negative"),
    (["--data.train", "[{bundled: train, weight: 0}]"], "at least one corpus with a weight above 0"),
    (["--vocab.kind", "word", "--vocab.sampling", "true"], "vocab.sampling needs vocab.kind sentencepiece"),
    (["--data.dev", "[{bundled: dev}, {bundled: dev}]"], "two dev sets are both called 'bundled-dev'"),
    (["--train.threads", "-1"], "train.threads must not be negative"),
])
def test_out_of_range_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("default", override)


def test_a_bad_override_is_blamed_not_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^override --train.lr: train.lr must be a finite number, got nan$"):
        load_config("default", ["--train.lr", "nan"])
    with pytest.raises(ConfigError, match=r"^override --train.lr_factor: train.lr_factor must be in"):
        load_config("default", ["--train.lr", "1e-3", "--train.lr_factor", "2"])  # lr is not lr_factor
    with pytest.raises(ConfigError, match=r"^overrides --search.n_best, --search.beam_size: search.n_best \(6\)"):
        load_config("default", ["--search.n_best", "6", "--search.beam_size", "2"])
    with pytest.raises(ConfigError, match=r"^override --model.celll: unknown key 'model.celll'"):
        load_config("default", ["--model.celll", "gru"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  lr_factor: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(broken))}: train.lr_factor must be in"):
        load_config(broken, ["--train.lr", "1e-3"])  # the file's own fault stays the file's


def test_an_override_that_is_not_yaml_is_named():
    with pytest.raises(ConfigError, match=r"^override --data.train: '\[\{' is not valid YAML: .*line 1, column 3"):
        parse_overrides(["--data.train", "[{"])


def test_the_reference_config_lists_every_field():
    """default.yaml is the commented reference: every field of every section is written out there."""
    raw = yaml.safe_load((BUNDLED_CONFIGS / "default.yaml").read_text(encoding="utf-8"))
    for section in ("data", "vocab", "model", "train", "search"):
        fields = {f.name for f in dataclasses.fields(getattr(Config(), section))}
        assert fields == set(raw[section]), f"{section}: missing {sorted(fields - set(raw[section]))}"
