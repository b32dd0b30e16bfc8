"""``flarelens explain``: attribution maps of a checkpoint's predictions, scored against the flares."""

from __future__ import annotations


def _csv_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def register(sub) -> None:
    from flarelens.explain.methods import IG_BASELINES, METHODS
    from flarelens.explain.prepare import OUTPUTS
    from flarelens.explain.truth import IMAGE_RADIUS, NEIGHBOURHOODS

    p = sub.add_parser(
        "explain",
        help="attribution maps (Guided Grad-CAM, Deep SHAP, Integrated Gradients) scored against where the flares were",
        description="For the selected rows of PRED.csv: each method's attribution map of the flare class (one .npz per "
        "image under OUT/maps), overlays on the magnetogram with the flare marked (OUT/overlays), a comparison figure "
        "(OUT/comparison.png), and scores: share of positive attribution near the flare at the image time (within "
        "--image-radius solar radii on the image, or --radius heliographic degrees), pointing game, ground-truth "
        "regions of simulated images, deletion curves — each against a random baseline (OUT/scores.csv, "
        "OUT/summary.json). Instances whose flare source was behind the limb at the image time are counted apart. "
        "Rows the checkpoint trained on are refused (--allow-training-rows). Resumable: images whose .npz exists "
        "are skipped.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint of `flarelens train` (RUN_DIR/best.pt)")
    p.add_argument("--predictions", required=True, metavar="PRED.csv", help="predictions of `flarelens predict`")
    p.add_argument("--images", required=True, metavar="DIR", help="image root (YYYY/MM/DD/HMI.m...)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)} (default: all)")
    sel = p.add_argument_group("selection")
    sel.add_argument("--class", dest="classes", help="largest-flare classes, e.g. X or X,M (none = no flare)")
    sel.add_argument("--outcome", help="prediction outcomes at --threshold, e.g. TP,FN")
    sel.add_argument("--start", help="first image time, UTC")
    sel.add_argument("--end", help="last image time, UTC (inclusive)")
    sel.add_argument("--position", choices=["central", "limb"], help="flare longitude within +-70 deg (central) or beyond")
    sel.add_argument("--limit", type=int, help="at most N instances (the first in time)")
    sel.add_argument("--threshold", type=float, default=0.5, help="flare_prob threshold for the outcome (default: 0.5)")
    m = p.add_argument_group("methods")
    m.add_argument("--layer", help="Grad-CAM layer by module name (default: the backbone's last convolution)")
    m.add_argument("--labels", metavar="L", help="labels.csv to draw the Deep SHAP background from: non-flaring rows "
                   "outside the checkpoint's validation fold (default: non-flaring rows of PRED.csv, with a note)")
    m.add_argument("--background", type=int, default=16, metavar="K", help="Deep SHAP background images (default: 16)")
    m.add_argument("--ig-baseline", choices=IG_BASELINES, default="physical",
                   help="physical: zero field on the disk, off-disk kept (default); gray: flat 0.5 as in the study")
    m.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps (default: 50)")
    m.add_argument("--attribute", choices=OUTPUTS, default="logit",
                   help="what is attributed: the flare logit (default, as the study) or the flare probability")
    run = p.add_argument_group("run")
    run.add_argument("--batch-size", type=int, default=8, help="images per attribution call (default: 8)")
    run.add_argument("--internal-batch-size", type=int, default=64,
                     help="most samples per forward pass inside IG / Deep SHAP (default: 64)")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    run.add_argument("--neighbourhood", choices=NEIGHBOURHOODS, default="image",
                     help="flare neighbourhood of the mass/hit scores: image (on-disk pixels within --image-radius "
                     "solar radii of the flare on the image; default: it holds at the limb) or heliographic (within "
                     "--radius degrees); scores.csv has both")
    run.add_argument("--image-radius", type=float, default=IMAGE_RADIUS, metavar="R",
                     help=f"image neighbourhood radius, fraction of the solar radius (default: {IMAGE_RADIUS:g} = "
                     "sin 10 deg, the 10-degree neighbourhood at disk centre)")
    run.add_argument("--radius", type=float, default=10.0, help="heliographic neighbourhood radius, degrees (default: 10)")
    run.add_argument("--regions", metavar="CSV", help="ground truth of `flarelens simulate` (default: DIR/regions.csv of --images if present)")
    run.add_argument("--no-deletion", action="store_true", help="skip the deletion curves")
    run.add_argument("--no-overlays", action="store_true", help="skip the per-image overlay PNGs")
    run.add_argument("--comparison-rows", type=int, default=8, help="instances in comparison.png, spread over the selection (default: 8; 0: none)")
    run.add_argument("--seed", type=int, default=0, help="background draw and random deletion order (default: 0)")
    run.add_argument("--overwrite", action="store_true", help="replace maps made with other settings in --out")
    run.add_argument("--allow-training-rows", action="store_true",
                     help="explain rows the checkpoint trained on (outside its validation fold) instead of refusing "
                     "them; every output marks them as training data")
    p.set_defaults(func=run_command)


def run_command(args) -> int:
    from flarelens.explain.run import ExplainSettings, Selection, explain
    from flarelens.explain.summary import format_summary

    methods = tuple(_csv_list(args.methods) or ())
    selection = Selection(
        classes=_csv_list(args.classes), outcomes=_csv_list(args.outcome), start=args.start, end=args.end,
        position=args.position, limit=args.limit, threshold=args.threshold,
    )
    settings = ExplainSettings(
        methods=methods, layer=args.layer, background_k=args.background, ig_baseline=args.ig_baseline,
        n_steps=args.steps, internal_batch_size=args.internal_batch_size, batch_size=args.batch_size,
        output=args.attribute, neighbourhood=args.neighbourhood, radius_deg=args.radius, image_radius=args.image_radius,
        deletion=not args.no_deletion, overlays=not args.no_overlays,
        comparison_rows=args.comparison_rows, seed=args.seed, device=args.device, threshold=args.threshold,
    )
    result = explain(
        args.checkpoint, args.predictions, args.images, args.out, selection, settings,
        labels=args.labels, regions=args.regions, overwrite=args.overwrite,
        allow_training_rows=args.allow_training_rows,
    )
    print(f"{result.computed} explained, {result.skipped} already done")
    print(format_summary(result.summary))
    print(f"wrote {result.files['scores']} and {result.files['summary']}")
    return 0
