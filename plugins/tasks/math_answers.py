"""Final answers of maths problems: finding them in a completion, and deciding whether two are equal.

Equivalence is math-verify's (Hugging Face's maintained checker: LaTeX and plain expressions parsed to sympy, so
`\\frac{1}{2}`, `\\dfrac12`, `1/2` and `0.5` are one answer). GSM8K's answers are numbers: they are compared as exact
fractions, after commas, `$` and a trailing full stop are dropped (`#### 1,000` is 1000).

math-verify bounds its parsing and comparing with SIGALRM, which only the main thread may set: called from any other
thread (a reward function a trainer runs in a worker, a thread pool) these checks run without its time limit instead
of failing; a completion's answer is what is parsed there, short enough for that.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from typing import Any

TIMEOUT_SECONDS = 5  # math-verify's own default, for parsing and for comparing
BOXED = ("\\boxed", "\\fbox")
# `#### 42` (GSM8K's answer line): the text after the last one is the answer
HASHES = "####"
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
# what may surround a number in an answer: currency, thousands separators (also LaTeX's `{,}`), a full stop
NUMBER_NOISE = re.compile(r"\\\$|\$|\{,\}|,|\\!|\\,|\s")


def timeout() -> int | None:
    """math-verify's time limit where it can keep one (the main thread), else None: no limit rather than an error."""
    return TIMEOUT_SECONDS if threading.current_thread() is threading.main_thread() else None


# -- finding the answer ------------------------------------------------------------------------------------------
def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`, `\\boxed 5`) in `text`, braces balanced; None if
    there is none or it is empty."""
    start = max(text.rfind(command) for command in BOXED)
    if start < 0:
        return None
    rest = text[start:]
    command = next(c for c in BOXED if rest.startswith(c))
    rest = rest[len(command) :]
    if rest.startswith(" "):  # `\boxed 5`: one token
        content = rest[1:].split("$")[0].split()[0] if rest[1:].strip() else ""
        return content or None
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, char in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return rest[1:i].strip() or None
    return None  # never closed


def after_hashes(text: str) -> str | None:
    """The text after the last `####` up to the end of its line (GSM8K's answer line), or None."""
    start = text.rfind(HASHES)
    if start < 0:
        return None
    answer = text[start + len(HASHES) :].strip().split("\n")[0].strip()
    return answer or None


def last_number(text: str) -> str | None:
    found = NUMBER.findall(text)
    return found[-1].rstrip(",") if found else None


# -- numbers (GSM8K) ---------------------------------------------------------------------------------------------
def number(text: str) -> Fraction | None:
    """`text` as an exact number when it is one (`1,000`, `$18`, `-3.50`, `7.`), else None."""
    plain = NUMBER_NOISE.sub("", text).rstrip(".")
    if not plain or not re.fullmatch(r"-?(\d+\.?\d*|\.\d+)", plain):
        return None
    try:
        return Fraction(Decimal(plain))
    except (InvalidOperation, ValueError):
        return None


def number_text(value: Fraction) -> str:
    """One spelling for each number: `1000`, `-3`, `0.5` (a terminating decimal), `1/3` (else)."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator == 1:
        return format(Decimal(value.numerator) / Decimal(value.denominator), "f").rstrip("0")
    return f"{value.numerator}/{value.denominator}"


def numeric_answer(text: str) -> str | None:
    """An answer's one spelling when it is a number: the number itself (`$1,000`), LaTeX that math-verify reads as
    a rational (`\\frac{3}{2}`), else the last number in it (`72 dollars`); otherwise the text, stripped (an answer,
    never equal to a number); None for no text."""
    text = text.strip()
    if not text:
        return None
    value = number(text)
    if value is None:
        parsed = parse_answer(f"${text}$")
        if parsed and getattr(parsed[0], "is_Rational", False):
            value = Fraction(int(parsed[0].p), int(parsed[0].q))
    if value is None and (last := last_number(text)) is not None:
        value = number(last)
    return text if value is None else number_text(value)


# -- expressions (MATH) ------------------------------------------------------------------------------------------
def parse_answer(text: str) -> list[Any]:
    """math-verify's reading of `text` (a completion, or a reference in `$...$`): sympy objects, then the string it
    read them from; empty if it finds no answer."""
    from math_verify import parse

    seconds = timeout()
    return parse(text, parsing_timeout=seconds)  # type: ignore[arg-type]  # None: no limit, off the main thread


@lru_cache(maxsize=65536)
def reference(answer: str) -> tuple[Any, ...]:
    """A reference answer, parsed once however many completions are checked against it. LaTeX math-verify cannot
    read is kept as text, so a completion giving the same text still matches."""
    parsed = parse_answer(f"${answer}$")
    return tuple(parsed) if parsed else (answer.strip(),)


def given_answer(completion: str) -> list[Any]:
    """math-verify's reading of the completion's answer: its last `\\boxed{}` when it has one (the answer it
    committed to, not a candidate it mentioned on the way), else whatever answer math-verify finds in it."""
    boxed = last_boxed(completion)
    return parse_answer(f"\\boxed{{{boxed}}}" if boxed is not None else completion)


def equivalent(answer: str, completion: str) -> bool:
    """Whether the completion's final answer is the reference `answer` (math-verify: LaTeX or numeric equality)."""
    from math_verify import verify

    given = given_answer(completion)
    if not given:
        return False
    return bool(verify(list(reference(answer)), given, timeout_seconds=timeout()))


def expression_text(completion: str) -> str | None:
    """The completion's final answer, spelled so that equal answers are equal strings (for majority votes): the
    parsed sympy expression (decimals as exact fractions: `0.5` and `\\frac12` are both `1/2`), else the text
    math-verify found; None when it finds no answer."""
    import sympy

    given = given_answer(completion)
    if not given:
        return None
    value = given[0]
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, sympy.Float):
        value = sympy.Rational(str(value))
    return str(value)
