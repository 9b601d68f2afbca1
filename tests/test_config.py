"""Config: defaults in one place, strict validation, overrides, and a YAML round trip."""

import pytest

from rnnmt.config import Config, ConfigError, config_from_dict, config_to_yaml, load_config, parse_overrides


@pytest.mark.parametrize("name", ["default", "seed", "shared"])
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
    with pytest.raises(ConfigError, match="aligned files need both src and tgt"):
        config_from_dict({"data": {"train": [{"src": "a.en"}]}})


def test_overrides_apply_and_are_typed(tmp_path):
    config = load_config("default", ["--train.lr", "3e-4", "--model.cell=lstm", "--data.dev", "null"])
    assert config.train.lr == 3e-4 and config.model.cell == "lstm" and config.data.dev is None
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
