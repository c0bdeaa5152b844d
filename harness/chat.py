"""Conversations: how a task's messages become the text a model reads, in the model's own chat format.

A task writes prompts and completions either as text or as messages:
- a prompt is a string, or a list of `{role, content}` messages (system, user and earlier assistant turns) that
  the next assistant turn answers;
- a completion (SFT `completion`, preference `chosen`/`rejected`) is a string, or a list holding one assistant
  message (TRL's conversational form).

Messages stay messages in the data stage; they become text only where they meet a model, with that model's
tokenizer (`ChatFormat`): its chat template when it has one (the generation prompt included, so a completion
is exactly the assistant's reply), else the plain `Human: ...\\n\\nAssistant:` transcript. A model with a chat
template ends a reply with its end-of-turn token; the base-model stage makes that token the tokenizer's EOS
(`use_end_of_turn_as_eos`), so every trainer (TRL appends `eos_token` to completions), sampler and reward model
stops and scores at the end of a turn without knowing about chat. Text prompts stay text on any model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import HarnessError

Message = Mapping[str, str]
ROLES = ("system", "user", "assistant")
PLAIN_ROLES = {"user": "Human", "human": "Human", "assistant": "Assistant", "system": "System"}
PLAIN_ASSISTANT = "Assistant:"
TEXT_COLUMNS = ("prompt", "completion", "chosen", "rejected")


def is_conversation(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(m, Mapping) for m in value)


def render_plain(messages: Sequence[Message], generation_prompt: bool = True) -> str:
    """A conversation as an HH-style transcript (`Human: ...\\n\\nAssistant: ...`); with `generation_prompt`, it
    ends where the assistant's next reply begins (`...\\n\\nAssistant:`)."""
    names = [PLAIN_ROLES.get(m["role"], str(m["role"]).capitalize()) for m in messages]
    lines = [f"{name}: {str(m['content']).strip()}" for name, m in zip(names, messages, strict=True)]
    return "\n\n".join([*lines, PLAIN_ASSISTANT] if generation_prompt else lines)


def joinable(prompt: str, completion: str) -> str:
    """The completion, with a leading space where `prompt + completion` would otherwise fuse two words."""
    if not prompt or not completion or prompt[-1:].isspace() or completion[:1].isspace():
        return completion
    return " " + completion


def reply_text(completion: Any, where: str = "completion") -> str:
    """The assistant's reply in a completion: a string, or a list holding one assistant message."""
    if isinstance(completion, str):
        return completion
    if is_conversation(completion) and len(completion) >= 1 and completion[-1].get("role") == "assistant":
        return str(completion[-1].get("content") or "")
    raise HarnessError(f"{where}={str(completion)[:60]!r}: expected text or a list ending in an assistant message")


def check_messages(messages: Sequence[Any], where: str) -> list[dict[str, str]]:
    """Messages as plain dicts; a role outside system/user/assistant or a non-text content is one line."""
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise HarnessError(f"{where}[{i}]={str(message)[:60]!r}: expected a message {{role, content}}")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise HarnessError(f"{where}[{i}].role={role!r}: expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise HarnessError(f"{where}[{i}].content={str(content)[:60]!r}: expected text")
        checked.append({"role": role, "content": content})
    return checked


def end_of_turn_token(tokenizer: Any) -> str | None:
    """The special token a chat template closes an assistant turn with (`<|im_end|>`, `<|eot_id|>`, ...), found
    by rendering a probe conversation: the first special token after the assistant's words. None without a
    template, or when the template closes turns with ordinary text."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    probe = "PROBE_REPLY_7f3c"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hello"}, {"role": "assistant", "content": probe}], tokenize=False
        )
    except Exception as error:  # a template that raises (e.g. it requires a system turn) is a bad template
        raise HarnessError(f"the model's chat template cannot render a user and an assistant turn: {error}") from None
    after = text[text.rfind(probe) + len(probe) :]
    special = sorted(set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {})), key=len)
    positions = [(after.find(token), -len(token), token) for token in special if token and token in after]
    return min(positions)[2] if positions else None


def use_end_of_turn_as_eos(tokenizer: Any, model: Any) -> str | None:
    """Make the template's end-of-turn token the tokenizer's EOS and the model's stop token, so every stage stops
    a reply where the model's turn ends. Returns the token (None: nothing to change)."""
    token = end_of_turn_token(tokenizer)
    if token is None or token == tokenizer.eos_token:
        return token
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        tokenizer.pad_token = tokenizer.eos_token  # keep the old EOS as padding, never the end-of-turn token
    tokenizer.eos_token = token
    token_id = tokenizer.convert_tokens_to_ids(token)
    model.config.eos_token_id = token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return token


class ChatFormat:
    """Renders a task's prompts and completions for one tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        # a template that writes the BOS itself, for a tokenizer that adds one when encoding: drop the written one
        bos = getattr(tokenizer, "bos_token", None)
        self.strip_bos = None
        if self.has_template and bos:
            ids = tokenizer("a")["input_ids"]
            if ids and ids[0] == tokenizer.bos_token_id:
                self.strip_bos = bos

    def prompt(self, prompt: Any, where: str = "prompt") -> str:
        if isinstance(prompt, str):
            return prompt
        if not is_conversation(prompt) or not prompt:
            raise HarnessError(f"{where}={str(prompt)[:60]!r}: expected text or a non-empty list of messages")
        messages = check_messages(prompt, where)
        if messages[-1]["role"] == "assistant":
            raise HarnessError(f"{where}: the last message is the assistant's; expected a turn for it to answer")
        if not self.has_template:
            return render_plain(messages)
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if self.strip_bos and text.startswith(self.strip_bos):
            text = text[len(self.strip_bos) :]
        return text

    def completion(self, prompt: Any, completion: Any, where: str = "completion") -> str:
        """The reply as the text that follows the rendered prompt (TRL appends the EOS, our samplers stop on it)."""
        reply = reply_text(completion, where)
        if is_conversation(prompt):
            if self.has_template:
                return reply.strip()
            return " " + reply.strip()  # after `Assistant:`
        return joinable(prompt, reply) if isinstance(prompt, str) else reply

    def row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """One dataset row with its prompt and completion columns rendered."""
        out = dict(row)
        if "prompt" in row:
            out["prompt"] = self.prompt(row["prompt"])
        for column in ("completion", "chosen", "rejected"):
            if column in row:
                out[column] = self.completion(row.get("prompt", ""), row[column], column)
        return out

    def dataset(self, dataset: Any) -> Any:
        """A `datasets.Dataset` with its prompt/completion columns rendered (unchanged when they are all text)."""
        features = getattr(dataset, "features", {})
        columns = [c for c in TEXT_COLUMNS if c in features]
        if all(getattr(features[c], "dtype", None) in ("string", "large_string") for c in columns):
            return dataset
        # in memory: the source is a cached stage's folder, which nothing but its build may write to
        return dataset.map(self.row, keep_in_memory=True, load_from_cache_file=False)
