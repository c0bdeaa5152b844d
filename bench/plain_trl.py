"""A TRL-backed method the way one would train it without the harness: a plain script around TRL's trainer.

    python bench/plain_trl.py SPEC.json
SPEC names the trainer class (trl.SFTTrainer, trl.KTOTrainer, ...), the data it eats (demonstrations,
preferences, unpaired), whether it gets a reference model, the model folder to start from, the dataset folder,
the trainer settings (the harness's own, so both sides train the same way) and the thread count. The last stdout
line is a JSON report with where the time went: imports, loading, building the trainer, training, saving.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

from common import peak_rss_mb  # bench/common.py: this script's folder is on sys.path


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    marks = {"start": time.perf_counter()}
    import datasets  # noqa: F401  (the harness imports these three at start-up)
    import torch
    import transformers  # noqa: F401

    torch.set_num_threads(spec["threads"])
    marks["imported"] = time.perf_counter()
    # From here on is what a harness stage build does, the harness having imported these three at start-up:
    # import the trainer and the model classes (transformers and TRL load them lazily), load, build, train, save.
    import dataclasses
    import importlib
    import inspect
    import typing

    from datasets import Dataset, load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    module, _, name = spec["trainer_class"].rpartition(".")
    trainer_cls = getattr(importlib.import_module(module), name)
    annotation = inspect.signature(trainer_cls.__init__).parameters["args"].annotation  # `KTOConfig | None`
    config_cls = next(c for c in typing.get_args(annotation) if dataclasses.is_dataclass(c))

    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_path"])
    out_dir = spec["out_dir"]
    # what the harness resolves on CPU: TRL's own default (bf16=None) would train in bf16 autocast
    common = {"output_dir": out_dir, "seed": spec["seed"], "report_to": "none", "use_cpu": True, "bf16": False}
    extra = {}
    if spec["reference_model"]:
        extra["ref_model"] = AutoModelForCausalLM.from_pretrained(spec["model_path"])
    if spec["data"] == "demonstrations":
        data = load_from_disk(spec["data_path"])["sft"]
    else:
        data = load_from_disk(spec["data_path"])["preferences"].select_columns(["prompt", "chosen", "rejected"])
        if spec["data"] == "unpaired":  # KTO: each pair as one good and one bad completion
            rows = []
            for row in data:
                rows.append({"prompt": row["prompt"], "completion": row["chosen"], "label": True})
                rows.append({"prompt": row["prompt"], "completion": row["rejected"], "label": False})
            data = Dataset.from_list(rows)
    marks["loaded"] = time.perf_counter()
    args = config_cls(**{**spec["trainer"], **common})
    trainer = trainer_cls(model=model, args=args, processing_class=tokenizer, train_dataset=data, **extra)
    marks["built"] = time.perf_counter()
    outcome = trainer.train()
    marks["trained"] = time.perf_counter()
    trainer.save_model(out_dir)
    tokenizer.save_pretrained(out_dir)
    marks["saved"] = time.perf_counter()
    names = list(marks)
    spans = {f"{b}_s": marks[b] - marks[a] for a, b in itertools.pairwise(names)}
    print(
        json.dumps(
            {
                **spans,
                # trainer imports + load + build + train + save: what a harness stage build does
                "training_s": marks["saved"] - marks["imported"],
                "train_runtime_s": outcome.metrics["train_runtime"],
                "global_step": outcome.global_step,
                "loss": outcome.training_loss,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
