"""Does the expected FNMR hold on identities it was not fitted on? Predicted against observed FNMR
per quality decile, on held-out synthetic identities.

For each quality model (``--model``, repeatable, or every variant of an ``igfiqa demo`` output
folder with ``--demo``) and each split seed, the synthetic benchmark's identities are split in
half: :func:`igfiqa.evaluation.expected_fnmr.calibrate_model` fits the expected-FNMR calibration
on one half (FR threshold at ``--fmr`` on that half's non-mated pairs, 95% band from a bootstrap
over its identities) and measures, on the other half, the mean predicted FNMR and band per decile
of probe quality against the observed share of false non-matches at the calibration's threshold.
Target (docs/scoring.md, "Expected FNMR"): every decile within its band or within 0.03.

    python benchmarks/fnmr_reliability.py --demo demo_out
    python benchmarks/fnmr_reliability.py --model runs/x --fr-model runs/y --seeds 0 1 2

The benchmark defaults to 200 new identities x 10 images at the demo's image size, drawn from
identities neither the demo's training nor its held-out evaluation used. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from igfiqa.data.benchmarks import open_benchmark
from igfiqa.evaluation.expected_fnmr import calibrate_model

DEFAULT_BENCHMARK = (
    "synthetic:identities=200,samples=10,image_size=48,seed=20261206,first_identity=3000000"
)


def demo_models(folder: Path) -> dict[str, Path]:
    """The variants of an ``igfiqa demo`` output folder: name -> run folder."""
    runs = folder / "runs"
    found = {p.name: p for p in sorted(runs.iterdir()) if (p / "checkpoints").is_dir()}
    if not found:
        raise SystemExit(f"{folder} holds no demo runs (runs/*/checkpoints)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="quality model (repeatable)")
    parser.add_argument(
        "--demo", type=Path, help="an `igfiqa demo` output folder: all its variants"
    )
    parser.add_argument(
        "--fr-model", help="FR model (default: the demo's CR-FIQA backbone / first model)"
    )
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    parser.add_argument("--fmr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    models = {Path(m).name: Path(m) for m in args.model}
    if args.demo is not None:
        models.update(demo_models(args.demo))
    if not models:
        raise SystemExit("give --model PATH (repeatable) or --demo DIR")
    fr_model = args.fr_model or str(models.get("crfiqa", next(iter(models.values()))))
    pairset = open_benchmark("synthetic", args.benchmark)
    results: dict[str, list[dict]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        for name, path in models.items():
            results[name] = []
            for seed in args.seeds:
                run = calibrate_model(
                    path, pairset, fr_model, fmr=args.fmr, holdout=0.5, seed=seed,
                    bootstrap=args.bootstrap, source=args.benchmark, cache_dir=cache,
                )  # fmt: skip
                check = run.reliability
                assert check is not None
                gaps = np.abs(check.observed - check.predicted)
                results[name].append(
                    {
                        "seed": seed,
                        "deciles_within": int(check.within.sum()),
                        "deciles_consistent": int(check.consistent.sum()),
                        "deciles": int(check.within.size),
                        "largest_gap": round(float(np.nanmax(gaps)), 4),
                        "mean_band_width": round(float(np.nanmean(check.high - check.low)), 4),
                        "threshold": run.calibration.threshold,
                        "thresholds": run.calibration.thresholds((0.05, 0.10)),
                        "fit_mated_comparisons": run.calibration.info["num_mated_comparisons"],
                        "held_out_comparisons": int(check.count.sum()),
                        "per_decile": check.to_dict()["deciles"],
                    }
                )
                row = results[name][-1]
                print(name, seed, row["deciles_within"], row["deciles_consistent"], flush=True)

    def share(name: str, key: str) -> str:
        runs = results[name]
        return f"{sum(r[key] for r in runs)}/{sum(r['deciles'] for r in runs)}"

    summary = {
        "benchmark": "fnmr_reliability",
        "synthetic": args.benchmark,
        "fr_model": fr_model,
        "fmr": args.fmr,
        "holdout": 0.5,
        "bootstrap": args.bootstrap,
        "seconds": round(time.perf_counter() - started, 1),
        "models": results,
        "target_every_decile_within": {
            name: all(r["deciles_within"] == r["deciles"] for r in runs)
            for name, runs in results.items()
        },
        "deciles_within_over_all_runs": {name: share(name, "deciles_within") for name in results},
        "deciles_consistent_over_all_runs": {
            name: share(name, "deciles_consistent") for name in results
        },
    }
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
