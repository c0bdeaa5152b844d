"""`model=hf`: a pretrained causal LM from the Hugging Face Hub or a local `save_pretrained` directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api import HarnessError, use_end_of_turn_as_eos


class Pretrained:
    def __init__(
        self,
        name: str = "hf",
        name_or_path: str = "gpt2",
        revision: str | None = None,
        trust_remote_code: bool = False,
        dtype: str = "auto",
    ) -> None:
        self.name = name
        self.name_or_path = name_or_path
        self.options: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.dtype = dtype

    def build(self, out_dir: Path, datasets_dir: Path) -> dict[str, Any]:
        """Copy the model into the stage cache (safetensors), so every later stage loads one local directory."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.name_or_path, **self.options)
            model = AutoModelForCausalLM.from_pretrained(self.name_or_path, dtype=self.dtype, **self.options)
        except (OSError, ValueError) as error:
            reason = str(error).strip().splitlines()[0]
            raise HarnessError(f"model.name_or_path={self.name_or_path!r} could not be loaded: {reason}") from error
        if tokenizer.pad_token is None:  # decoder-only models often ship without one; batching needs it
            tokenizer.pad_token = tokenizer.eos_token
        # a chat model's replies end with its end-of-turn token: make it the EOS every stage stops and scores at
        end_of_turn = use_end_of_turn_as_eos(tokenizer, model)
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        parameters = sum(p.numel() for p in model.parameters())
        return {"parameters": parameters, "end_of_turn_is_eos": float(end_of_turn is not None)}
