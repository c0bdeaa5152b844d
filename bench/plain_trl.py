"""SFT or DPO the way one would without the harness: a plain script around TRL's trainer.

    python bench/plain_trl.py SPEC.json
SPEC names the algorithm (sft | dpo), the model folder to start from, the dataset folder, the trainer settings
(the harness's own, so both sides train the same way) and the thread count. The last stdout line is a JSON
report with where the time went: imports, loading, building the trainer, training, saving.
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
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_path"])
    out_dir = spec["out_dir"]
    # what the harness resolves on CPU: TRL's own default (bf16=None) would train in bf16 autocast
    common = {"output_dir": out_dir, "seed": spec["seed"], "report_to": "none", "use_cpu": True, "bf16": False}
    if spec["algorithm"] == "sft":
        data = load_from_disk(spec["data_path"])["sft"]
        marks["loaded"] = time.perf_counter()
        args = SFTConfig(**{**spec["trainer"], **common})
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=data)
    else:
        reference = AutoModelForCausalLM.from_pretrained(spec["model_path"])
        pairs = load_from_disk(spec["data_path"])["preferences"].select_columns(["prompt", "chosen", "rejected"])
        marks["loaded"] = time.perf_counter()
        args = DPOConfig(**{**spec["trainer"], **common})
        trainer = DPOTrainer(
            model=model, ref_model=reference, args=args, processing_class=tokenizer, train_dataset=pairs
        )
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
