"""A Hugging Face `Trainer` callback that logs filtered token losses every N steps (docs/library.md).

    from tokengap.analysis.inloop import FilteredEval
    from tokengap.analysis.hf_callback import FilteredLossCallback
    fe = FilteredEval.build(texts, tokenizer, context_len=512)
    trainer = Trainer(model=model, args=args, train_dataset=ds)
    trainer.add_callback(FilteredLossCallback(trainer, fe, every_n_steps=200))

Every `every_n_steps` optimizer steps (and once at the end of training) it runs `fe.evaluate(model)` and logs
the losses through `trainer.log`, so every logger `report_to` names (TensorBoard, W&B, ...) and
`trainer.state.log_history` get them, under stable names: "eval_tokengap/all", "eval_tokengap/filter/<name>",
"eval_tokengap/domain/<domain>" — which the Trainer's integrations show as "eval/tokengap/..." (they put a key that
starts with "eval_" under eval/, any other under train/). The evaluation leaves the Trainer's random generators (CPU and CUDA), its data order
and the model's train / eval mode as they were: a run with the callback trains the same weights as one without
(tests/test_inloop.py checks both). In a multi-process run every process evaluates (the model may be sharded)
and `trainer.log` reports from the main one.
"""
from __future__ import annotations

from typing import Optional

import torch
from transformers import TrainerCallback

from tokengap.analysis.inloop import FilteredEval


class FilteredLossCallback(TrainerCallback):
    """Logs `fe.evaluate(model)` every `every_n_steps` steps and at the end (at_end) through `trainer.log`."""

    def __init__(self, trainer, fe: FilteredEval, every_n_steps: int = 500, at_end: bool = True,
                 prefix: str = "eval_tokengap/", dtype: Optional[torch.dtype] = None, batch_size: int = 8):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps: {every_n_steps} (at least 1)")
        self.trainer, self.fe, self.every, self.at_end = trainer, fe, every_n_steps, at_end
        self.prefix, self.dtype, self.batch_size = prefix, dtype, batch_size
        self.logged_steps: list[int] = []  # the steps evaluated (one evaluation per step at most)

    def _evaluate(self, state, control, model) -> None:
        if state.global_step in self.logged_steps:
            return
        res = self.fe.evaluate(model, dtype=self.dtype, batch_size=self.batch_size)
        self.logged_steps.append(state.global_step)
        # trainer.log runs the callbacks' on_log, whose handler clears control.should_log: the Trainer would then
        # skip its own loss record of this step (tests/test_inloop.py caught it). Keep the Trainer's flags as they were.
        flags = {k: getattr(control, k) for k in vars(control)}
        self.trainer.log({**res.flat(self.prefix), self.prefix + "eval_seconds": res.seconds})
        for k, v in flags.items():
            setattr(control, k, v)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._evaluate(state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.at_end:
            self._evaluate(state, control, model)
