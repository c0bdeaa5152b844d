"""`harness-report DIR`: rebuild the comparison of a sweep (or any folder of runs) from its folders."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from harness.errors import HarnessError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="harness-report",
        description="Build comparison.csv, comparison.md, equal_kl.csv and report.html from the result.json files "
        "under DIR.",
    )
    parser.add_argument("directory", type=Path, help="a sweep directory (results/sweeps/<experiment>/<time>)")
    parser.add_argument(
        "--baseline",
        default=None,
        help="group the others are compared with, paired by seed (default: the one recorded with the sweep)",
    )
    parser.add_argument(
        "--kl-budgets",
        default=None,
        metavar="B1,B2,...",
        help="KL budgets in nats the methods are compared at along their frontiers, e.g. 0.5,1,2 (default: those "
        "recorded with the sweep, else 0.25,0.5,1,2,4 where the data reaches them)",
    )
    parser.add_argument(
        "--wandb", action="store_true", help="also log the comparison as a run in the sweep's W&B group"
    )
    parser.add_argument(
        "--wandb-report",
        action="store_true",
        help="also create a W&B Report for the sweep's group (online mode and the wandb-workspaces package)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print all of comparison.md (default: the headline table, who leads at equal KL and where the files are; "
        "HARNESS_VERBOSE=1 does the same)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only where report.html is")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = run(args)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if report.failed_or_missing:
        print(f"warning: {report.failed_or_missing} job(s) failed or are missing; see the report", file=sys.stderr)
        sys.exit(1)


def run(args: argparse.Namespace):
    from harness.report import build_report, terminal_text, wants_verbose
    from harness.report.aggregate import parse_kl_budgets
    from harness.report.publish import log_comparison, sweep_identity

    report = build_report(args.directory, baseline=args.baseline, kl_budgets=parse_kl_budgets(args.kl_budgets))
    if args.quiet:
        print(f"report: {report.html.resolve()}")
    else:
        print(terminal_text(report, wants_verbose(args.verbose)))
    identity = sweep_identity(report)
    if args.wandb:
        log_comparison(report, comparison_logger(identity["logger"]))
    if args.wandb_report:
        from harness.report.wandb_report import build_report as build_wandb_report
        from harness.report.wandb_report import comparison_panels, metric_titles, publish_report

        logger = identity["logger"]
        wandb_report = build_wandb_report(
            entity=logger.get("entity") or _default_entity(),
            project=logger.get("project", "alignment-harness"),
            group=identity["group"],
            title=f"{report.sweep.experiment}: alignment comparison",
            algorithms=sorted({group.algorithm for group in report.comparison.groups}),
            **comparison_panels(report.comparison),
            titles=metric_titles(report.comparison),  # the judge of each win rate, as the table names it
        )
        print(f"W&B report: {publish_report(wandb_report)}")
    return report


def comparison_logger(logger: dict) -> dict:
    """The sweep's own logger config, if it is one that can log the comparison (W&B), else a one-line error."""
    from hydra.utils import get_class

    name = logger.get("name") or logger.get("_target_") or "none recorded"
    try:
        can_log = bool(logger.get("_target_")) and hasattr(get_class(logger["_target_"]), "log_comparison")
    except ImportError as error:
        reason = str(error).strip().splitlines()[0]
        raise HarnessError(f"--wandb: the sweep's logger {logger['_target_']} cannot be imported: {reason}") from error
    if not can_log:
        raise HarnessError(f"--wandb: the sweep's logger ({name}) cannot log a comparison; the sweep must log to W&B")
    return logger


def _default_entity() -> str:
    """The logged-in user's default entity (needs W&B credentials and network)."""
    try:
        import wandb

        return wandb.Api().default_entity
    except Exception as error:  # no key, no network: say so in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HarnessError(f"W&B report: cannot find your W&B entity (set logger.entity or log in): {first}") from error


if __name__ == "__main__":
    main()
