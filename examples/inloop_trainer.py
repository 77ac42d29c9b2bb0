"""Filtered token losses logged by a Hugging Face `Trainer` while a small random Llama trains (docs/library.md).

    python examples/inloop_trainer.py                      # after `make data` (or `make train-hybrid`)
    python examples/inloop_trainer.py --corpus build/corpus/tiny --steps 60 --every 20

Evaluation text: the corpus's held-out documents (any texts work: docs/library.md); training data: windows of its
train.bin. Runs on the CPU in about a minute; prints the logged `eval_tokengap/...` values at each evaluation.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Trainer, TrainingArguments

from tokengap.analysis.hf_callback import FilteredLossCallback
from tokengap.analysis.inloop import FilteredEval


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="build/corpus/tiny")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=30_000, help="the in-loop subset of the eval text")
    ap.add_argument("--min-tokens", type=int, default=200, help="fewest tokens a filter may hold")
    ap.add_argument("--out", default="/tmp/tokengap-inloop-example")
    a = ap.parse_args(argv)
    corpus = Path(a.corpus)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(corpus / "tokenizer.json"), eos_token="<|endoftext|>")
    texts = [json.loads(line) for line in open(corpus / "docs" / "eval.jsonl", encoding="utf-8")]
    fe = FilteredEval.build(texts, tok, context_len=256, max_tokens=a.max_tokens, min_filter_tokens=a.min_tokens)
    print("in-loop eval set:", fe.counts())

    ids = np.fromfile(corpus / "train.bin", dtype=json.load(open(corpus / "train.json"))["dtype"])
    rows = torch.from_numpy(ids[: (len(ids) // 256) * 256].astype(np.int64)).view(-1, 256)[:4096]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=256))
    args = TrainingArguments(output_dir=a.out, max_steps=a.steps, per_device_train_batch_size=8, learning_rate=3e-3,
                             logging_steps=10, report_to=[], save_strategy="no", disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": r, "labels": r} for r in rows])
    trainer.add_callback(FilteredLossCallback(trainer, fe, every_n_steps=a.every))
    trainer.train()
    for h in trainer.state.log_history:
        if "eval_tokengap/all" in h:
            print(f"step {h['step']:4d}  " + "  ".join(f"{k.removeprefix('eval_tokengap/')} {v:.3f}" for k, v in h.items()
                                                     if k.startswith("eval_tokengap/filter/") or k.endswith("/all")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
