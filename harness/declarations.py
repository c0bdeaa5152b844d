"""What a plugin's YAML says about its metrics, as opposed to what its constructor takes.

An eval suite declares its headline metrics (`headline:`, the columns the comparison leads with) and an
algorithm the training curves worth plotting (`curves:`). The core takes these keys out of the config before it
builds the plugin, records them in `result.json`, and the report reads them from there: the core itself names
no suite, metric or algorithm.

    headline:                 # in an eval suite's YAML; metrics are filed under eval/<suite>/
      - {metric: score, label: my score, better: higher, role: quality, bounds: [0, 1]}
    curves:                   # in an algorithm's YAML; keys of its training log
      - {key: objective/score, label: reward-model score, role: proxy}
    curves:                   # in an eval suite's YAML: a family of its metrics over the number in their names
      - {metric: "pass_at_{k}", x: k, label: pass@k, log_x: true, better: higher, bounds: [0, 1],
         low: "pass_at_{k}_low", high: "pass_at_{k}_high", table: [1, 4, 16, 64]}
    kl_beta_ignored: has no KL term to a reference (...)   # an algorithm the shared kl_beta cannot reach, and why

A suite's curve is drawn over every value of its `x` that a job reports (`pass_at_1`, `pass_at_2`, ...), one line
per method, its band the interval over seeds or, for a method with one seed, the job's own `low`/`high` where the
suite reports them; `table` lists the x values comparison.md tabulates (harness.report.curves).

An algorithm either takes `kl_beta` (its YAML reads `${kl_beta}`: plugins/algorithms/kl.py) or declares why not;
a job that sets kl_beta for one that declares it warns in one line (`kl_beta_warning`) instead of dropping it silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from harness.errors import HarnessError

# ranges: settings' allowed values (harness.ranges); kl_beta_ignored: why the shared kl_beta does not apply;
# search: what equal-budget tuning may change, and over which range (harness.tune.space)
DECLARATION_KEYS = ("headline", "curves", "ranges", "kl_beta_ignored", "search")
BETTER = ("higher", "lower", None)  # None: no best value is marked (e.g. a KL, where less is a cost, not a quality)
# quality: the metric paired differences are taken on and the frontier's y axis; divergence: the frontier's x axis
# (the KL to the reference); proxy: what an RL algorithm optimised, set against the quality metric
ROLES = ("quality", "divergence", "proxy", None)


def split_declarations(node: Any) -> tuple[Any, dict[str, Any]]:
    """A plain, resolved copy of a plugin config without declaration keys (taken out of nested plugin configs
    too, such as an algorithm's `init`), and the node's own declarations (`{"headline": [...], ...}`)."""
    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    if not isinstance(node, Mapping):
        return node, {}
    declared = {key: node[key] for key in DECLARATION_KEYS if key in node}
    return _strip(node), declared


def _strip(value: Any) -> Any:
    if isinstance(value, Mapping):
        is_plugin = "_target_" in value
        return {k: _strip(v) for k, v in value.items() if not (is_plugin and k in DECLARATION_KEYS)}
    if isinstance(value, list):
        return [_strip(item) for item in value]
    return value


def headline_entries(suite: str, declared: Any) -> list[dict[str, Any]]:
    """A suite's `headline:` list as result.json records it: full metric keys, every field filled in."""
    entries = []
    for index, item in enumerate(declared or []):
        where = f"eval.{suite}.headline[{index}]"
        if not isinstance(item, Mapping) or not item.get("metric"):
            expected = "{metric: NAME, label: TEXT, better: higher|lower|null}"
            raise HarnessError(f"{where}: expected {expected}, got {item!r}")
        entry = {
            "key": f"eval/{suite}/{item['metric']}",
            "label": str(item.get("label") or item["metric"]),
            "better": item.get("better"),
            "digits": int(item.get("digits", 3)),
            "role": item.get("role"),
            "order": item.get("order"),
            "note": item.get("note"),
            "bounds": _bounds(where, item.get("bounds")),
        }
        _check(where, entry)
        entries.append(entry)
    return entries


def curve_entries(algorithm: str, declared: Any) -> list[dict[str, Any]]:
    """An algorithm's `curves:` list as result.json records it: training-log keys with a label and a role."""
    entries = []
    for index, item in enumerate(declared or []):
        where = f"algorithm {algorithm}: curves[{index}]"
        if isinstance(item, str):
            item = {"key": item}
        if not isinstance(item, Mapping) or not item.get("key"):
            expected = "a training-log key or {key: KEY, label: TEXT, role: ROLE}"
            raise HarnessError(f"{where}: expected {expected}, got {item!r}")
        entry = {"key": str(item["key"]), "label": str(item.get("label") or item["key"]), "role": item.get("role")}
        _check(where, entry)
        entries.append(entry)
    return entries


def metric_curve_entries(suite: str, declared: Any) -> list[dict[str, Any]]:
    """A suite's `curves:` list as result.json records it (in `curves`, beside the algorithm's training curves, told
    apart by their `x`): full metric keys with `{x}` where the number goes, every field filled in."""
    entries = []
    for index, item in enumerate(declared or []):
        where = f"eval.{suite}.curves[{index}]"
        x = item.get("x") if isinstance(item, Mapping) else None
        expected = '{metric: "NAME_{x}", x: x, label: TEXT, log_x: true|false}, the metric naming its x as {x}'
        if not isinstance(x, str) or not x.isidentifier() or f"{{{x}}}" not in str(item.get("metric") or ""):
            raise HarnessError(f"{where}: expected {expected}, got {item!r}")
        keys = {}
        for field in ("metric", "low", "high"):
            pattern = item.get(field)
            if pattern is not None and str(pattern).count(f"{{{x}}}") != 1:
                raise HarnessError(f"{where}: {field}={pattern!r}; expected a metric name with {{{x}}} once")
            keys[field] = None if pattern is None else f"eval/{suite}/{pattern}"
        table = item.get("table")
        if table is not None and not (
            isinstance(table, list | tuple) and all(isinstance(v, int | float) and v > 0 for v in table)
        ):
            raise HarnessError(f"{where}: table={table!r}; expected a list of positive {x} values, e.g. [1, 4, 16]")
        entry = {
            "key": keys["metric"],
            "x": x,
            "label": str(item.get("label") or item["metric"]),
            "x_label": str(item.get("x_label") or x),
            "log_x": bool(item.get("log_x", False)),
            "better": item.get("better"),
            "digits": int(item.get("digits", 3)),
            "bounds": _bounds(where, item.get("bounds")),
            "low": keys["low"],
            "high": keys["high"],
            "table": None if table is None else list(table),
            "note": item.get("note"),
        }
        _check(where, entry)
        entries.append(entry)
    return entries


def kl_beta_warning(algorithm: str, kl_beta: Any, declared: Mapping[str, Any]) -> str | None:
    """The one line a job warns with when `kl_beta` is set and the algorithm declares it has no use for it
    (`kl_beta_ignored: <why>`): `kl_beta=0.1: cpo has no KL term to a reference (...); ignored`. None otherwise."""
    why = declared.get("kl_beta_ignored")
    if kl_beta is None or not why:
        return None
    return f"kl_beta={kl_beta}: {algorithm} {why}; ignored"


def _bounds(where: str, bounds: Any) -> list[float | None] | None:
    """`bounds: [low, high]`: the values the metric can take (null: unbounded on that side), so the report keeps its
    intervals inside them. Undeclared: None, and the report infers none."""
    if bounds is None:
        return None
    expected = "[low, high] with numbers or null (e.g. [0, 1], [0, null])"
    numeric = (
        isinstance(bounds, list | tuple)
        and len(bounds) == 2
        and all(b is None or (isinstance(b, int | float) and not isinstance(b, bool)) for b in bounds)
    )
    if not numeric or (None not in bounds and bounds[0] >= bounds[1]):
        raise HarnessError(f"{where}: bounds={bounds!r}; expected {expected}")
    return [None if b is None else float(b) for b in bounds]


def _check(where: str, entry: Mapping[str, Any]) -> None:
    if entry.get("better") not in BETTER:
        raise HarnessError(f"{where}: better={entry['better']!r}; expected higher, lower or null")
    if entry.get("role") not in ROLES:
        roles = ", ".join(map(str, ROLES[:-1]))
        raise HarnessError(f"{where}: role={entry['role']!r}; expected one of {roles} or null")


def build_plugin(node: Any) -> Any:
    """Instantiate a plugin from its config node, without what it declares (a suite's `headline`, an algorithm's
    `curves`: not constructor arguments); a user error raised by its constructor stays one line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(split_declarations(node)[0], _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, HarnessError):
            raise cause from None
        reason = str(cause or error).strip().splitlines()[0]
        raise HarnessError(f"{node.get('_target_')}: cannot be built from its config: {reason}") from error
