"""The pretrained path: a tiny random model of every verified transformers class (tokengap/analysis/hf.py: CLASSES),
saved with a tokenizer, scored through `python -m tokengap.analysis score --hf PATH`; its per-token losses must average,
window by window, to the model's own `labels=` loss. CUDA-only classes and the CUDA device run where there is a GPU."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
import transformers  # noqa: E402

from tokengap.analysis.__main__ import main as analysis_main  # noqa: E402
from tokengap.evaluation.evalset import EvalSet, TextTokenizer  # noqa: E402
from tokengap.evaluation.scorefile import load_scores  # noqa: E402

VOCAB = 320
TEXTS = ["The cat sat on the mat, and the dog sat on the log. " * 6, "def f(x):\n    return (x + 1) * [2, 3]\n" * 5,
         "A short one.", "<p class=\"a\">Hello <b>world</b></p>\n" * 7]


def tiny_config(model_type: str):
    c = dict(vocab_size=VOCAB, pad_token_id=None, eos_token_id=None, bos_token_id=None)
    if model_type == "llama":
        return transformers.LlamaConfig(**c, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    if model_type == "olmo3":
        return transformers.Olmo3Config(**c, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                        num_attention_heads=2, sliding_window=16, max_position_embeddings=256)
    if model_type == "olmo_hybrid":
        return transformers.OlmoHybridConfig(**c, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                             num_attention_heads=2, max_position_embeddings=256,
                                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    if model_type == "gpt_neox":
        return transformers.GPTNeoXConfig(**c, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=2, rotary_pct=0.25, max_position_embeddings=256)
    if model_type == "mamba":
        return transformers.MambaConfig(**c, hidden_size=32, state_size=4, num_hidden_layers=2, expand=2)
    if model_type == "mamba2":
        return transformers.Mamba2Config(**c, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, head_dim=16,
                                         num_heads=4, n_groups=1, chunk_size=16)
    raise ValueError(model_type)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS * 3, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    d = tmp_path_factory.mktemp("hf_tok")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                                eos_token="<|endoftext|>")
    fast.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf_eval")
    (d / "docs").mkdir()
    with open(d / "docs" / "eval.jsonl", "w") as f:
        for i, t in enumerate(TEXTS):
            f.write(json.dumps({"id": f"d{i}", "domain": "books", "source": "t", "text": t}) + "\n")
    return d


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _save_model(model_type, tokenizer_dir, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(model_type)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    out = tmp_path / model_type
    model.save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model_type", ["llama", "olmo3", "olmo_hybrid", "gpt_neox", "mamba", "mamba2"])
def test_class_scores_equal_its_own_labels_loss(model_type, device, tokenizer_dir, corpus, tmp_path, monkeypatch):
    import importlib.util
    if model_type == "olmo_hybrid" and device == "cpu" and importlib.util.find_spec("fla") is not None:
        pytest.skip("OlmoHybrid on CPU with fla installed is refused (test_cuda_only_class_is_refused_on_cpu)")
    path = _save_model(model_type, tokenizer_dir, tmp_path)
    out = tmp_path / "scores.npz"
    T = 48
    rc = analysis_main(["score", "--hf", str(path), "--eval", str(corpus), "--out", str(out), "--context", str(T),
                        "--batch-size", "2", "--device", device, "--dtype", "fp32"])
    assert rc == 0
    s = load_scores(out)
    ev = EvalSet.from_corpus(corpus, tokenizer=TextTokenizer.from_hf(str(path)))
    assert s.loss.shape == (ev.n_tokens,) and np.isfinite(s.loss).all()
    model = transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).to(device).eval()
    toks = torch.from_numpy(ev.tokens.astype(np.int64))
    checked = 0
    with torch.no_grad():
        for d, start, k in ev.windows(T):
            first = start == ev.doc_starts[d]
            inp = torch.cat([torch.tensor([ev.eot_id]), toks[start:start + k]]) if first else toks[start - 1:start + k]
            want = float(model(input_ids=inp[None].to(device), labels=inp[None].to(device)).loss)
            assert s.loss[start:start + k].mean() == pytest.approx(want, rel=2e-4, abs=2e-5), (d, start)
            checked += 1
    assert checked >= 6  # windows of several documents, first and later ones


def test_cuda_only_class_is_refused_on_cpu_before_loading(tokenizer_dir, corpus, tmp_path, monkeypatch, capsys):
    """With fla importable, OlmoHybrid on CPU fails in one line before any weights load."""
    import importlib.util
    path = _save_model("olmo_hybrid", tokenizer_dir, tmp_path)
    capsys.readouterr()  # what saving printed
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "fla" else real(n, *a))
    loaded = []
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: loaded.append(a))
    rc = analysis_main(["score", "--hf", str(path), "--eval", str(corpus), "--out", str(tmp_path / "x.npz"),
                        "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not loaded and err.count("\n") == 0 and "need CUDA" in err
    assert not (tmp_path / "x.npz").exists()


def test_inexact_mamba2_path_is_refused(tokenizer_dir, tmp_path, monkeypatch):
    """A Mamba2 whose losses move with the chunk size (planted: a chunk-dependent bias) is refused in one line."""
    from tokengap.analysis.errors import AnalysisError
    from tokengap.analysis.hf import mamba2_chunk_check
    path = _save_model("mamba2", tokenizer_dir, tmp_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    assert mamba2_chunk_check(model, VOCAB, torch.device("cpu")) < 1e-4  # the real path is exact
    mixer = next(m for m in model.modules() if type(m).__name__ == "Mamba2Mixer")
    real = mixer.forward
    monkeypatch.setattr(mixer, "forward", lambda *a, **k: real(*a, **k) * (1 + 0.1 * (mixer.chunk_size < 16)))
    with pytest.raises(AnalysisError, match="change by .* between chunk sizes 16 and 4"):
        mamba2_chunk_check(model, VOCAB, torch.device("cpu"))


def test_missing_model_without_network_fails_in_one_line_within_seconds(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    rc = analysis_main(["score", "--hf", "allenai/no-such-model-tokengap", "--eval", str(corpus),
                        "--out", str(tmp_path / "x.npz"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "not in the local Hugging Face cache" in err
    assert time.perf_counter() - t0 < 10
    # and with the variable unset on a machine whose hub is unreachable: the same, within the timeout
    monkeypatch.delenv("HF_HUB_OFFLINE")
    import huggingface_hub

    def unreachable(self, repo, timeout=None, **kw):
        raise ConnectionError("Failed to resolve 'huggingface.co'")
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    rc = analysis_main(["score", "--hf", "allenai/no-such-model-tokengap", "--eval", str(corpus),
                        "--out", str(tmp_path / "x.npz"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "hub cannot be reached" in err and err.count("\n") == 0


def test_pair_recipes_name_only_verified_classes_as_verified():
    """tokengap/conf/pairs.yaml: every side marked verified is a class this file tests; every pair says its context."""
    import yaml

    from tokengap.analysis.hf import CLASSES
    from tokengap.models.config import CONF_DIR
    pairs = yaml.safe_load((CONF_DIR / "pairs.yaml").read_text())["pairs"]
    tested = {cls for cls, _ in CLASSES.values()}
    assert len(pairs) >= 4
    for p in pairs:
        assert p["context"] > 0 and p["dtype"] in ("bf16", "fp32") and p["tokenizer"].startswith("shared")
        for side in (p["a"], p["b"]):
            assert "/" in side["hub"] and side["memory_gb"] > 0
            assert side["verified"] == (side["class"] in tested), side
