"""Mean ± std over several splits of `fit_real.py`'s tables, with the best baseline chosen per split.

    python benchmarks/fit_real_splits.py /tmp/fitreal/s0 /tmp/fitreal/s1 ...   # each an --out of fit_real.py

For each table found in every folder's `fit_real.md`: each scikit-learn baseline's and fit's test metrics as
mean ± std over the folders (splits), the best baseline of each split chosen on that split's test records (the
highest accuracy / macro-F1 / R2, the lowest RMSE: a bar that favours the baselines), and one line per split.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

FIT = "polymodal fit (chosen model)"


def tables(path: Path) -> dict[str, tuple[list[str], dict[str, tuple[float, float]], int]]:
    """Per table in a fit_real.md: metric names, rows (model -> two metrics), fit seconds."""
    out = {}
    text = path.read_text()
    for m in re.finditer(r"^## (\w+): .*?\n\n(\|.*?)\n\nfit: (\d+) s", text, re.S | re.M):
        lines = m.group(2).splitlines()
        metrics = [c.strip() for c in lines[0].strip("|").split("|")][1:]
        rows = {}
        for line in lines[2:]:
            cells = [c.strip(" *") for c in line.strip("|").split("|")]
            rows[cells[0]] = (float(cells[1]), float(cells[2]))
        out[m.group(1)] = (metrics, rows, int(m.group(3)))
    return out


def _ms(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values.mean():.3f}"


def main() -> None:
    runs = [(Path(d).name, tables(Path(d) / "fit_real.md")) for d in sys.argv[1:]]
    names = set.intersection(*(set(t) for _, t in runs))
    for table in sorted(names):
        metrics = runs[0][1][table][0]
        lower = [m == "rmse" for m in metrics]
        print(f"\n{table} ({' / '.join(metrics)}; {len(runs)} splits)")
        baselines = [n for n in runs[0][1][table][1] if n != FIT]
        for n in baselines + [FIT]:
            v = np.array([t[table][1][n] for _, t in runs])
            print(f"  {n:34s} {_ms(v[:, 0])} / {_ms(v[:, 1])}")
        best = np.array([[(min if low else max)(t[table][1][n][k] for n in baselines) for k, low in enumerate(lower)]
                         for _, t in runs])
        print(f"  {'best baseline of each split':34s} {_ms(best[:, 0])} / {_ms(best[:, 1])}")
        for (name, t), b in zip(runs, best):
            fit = t[table][1][FIT]
            print(f"   {name}: fit {fit[0]:.3f} / {fit[1]:.3f}  best baseline {b[0]:.3f} / {b[1]:.3f}  "
                  f"fit {t[table][2]} s")


if __name__ == "__main__":
    main()
