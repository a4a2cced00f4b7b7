"""Calibrate the WinMax threshold by Monte Carlo under the null hypothesis.

``python -m watermark.calibrate`` simulates texts written without the key
(each scored token green with probability γ, independently), computes the
WinMax statistic for each length in ``LENGTHS`` and writes the
``(1 - WINMAX_FPR)`` quantile to ``watermark/winmax_thresholds.json``. Fixed seed:
the file is reproducible.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np

from watermark.windowed import MIN_WINDOW, WINMAX_FPR, winmax_z

LENGTHS = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
OUT = Path(__file__).with_name("winmax_thresholds.json")


def calibrate(gamma: float = 0.25, simulations: int = 20000, seed: int = 0) -> list[dict[str, float]]:
    """Return ``[{"tokens": T, "z": threshold}]`` for each length in ``LENGTHS``."""
    rng = np.random.default_rng(seed)
    rows = []
    for total in LENGTHS:
        stats = []
        for _ in range(0, simulations, 1000):  # batches keep memory bounded at T = 4096
            green = rng.random((1000, total)) < gamma
            stats.append(winmax_z(green, gamma, MIN_WINDOW))
        z = float(np.quantile(np.concatenate(stats), 1 - WINMAX_FPR))
        rows.append({"tokens": total, "z": round(z, 4)})
        print(f"T={total:5d}  WinMax threshold at FPR {WINMAX_FPR:g}: z >= {z:.3f}")
    return rows


def main() -> None:
    """Write ``winmax_thresholds.json``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--simulations", type=int, default=20000)
    args = parser.parse_args()
    rows = calibrate(simulations=args.simulations)
    OUT.write_text(
        json.dumps(
            {
                "method": "Monte Carlo under H0: scored tokens i.i.d. green with probability gamma",
                "gamma": 0.25,
                "fpr": WINMAX_FPR,
                "min_window": MIN_WINDOW,
                "window_growth": 1.5,
                "simulations": args.simulations,
                "seed": 0,
                "date": date.today().isoformat(),
                "thresholds": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
