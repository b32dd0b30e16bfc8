"""``flarelens report``: one self-contained HTML page for a run directory."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML page (figures embedded) telling the story of a run directory",
        description="Collect everything under RUN_DIR (labels.csv, training histories and config.json, "
        "predictions*.csv, explanation outputs) into one HTML page readable offline: skill against persistence "
        "and climatology first, warnings above everything when a file is not to be trusted.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="directory written by the pipeline (e.g. runs/demo)")
    p.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold for a flare forecast (default: 0.5)")
    p.set_defaults(func=run)


def run(args) -> int:
    from flarelens.report import build_report

    path = build_report(args.run_dir, args.out, args.threshold)
    print(f"wrote {path}")
    return 0
