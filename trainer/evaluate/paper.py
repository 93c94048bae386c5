"""The published numbers (Hashizume et al., APSIPA Trans. 2025, Slakh2100 redux test set), shown
beside ours in reports. Accuracies in %, correlations as Pearson r; None where the paper has none.
"""

from __future__ import annotations

from model.parts import PARTS

_N = None


def _row(*values: float | None) -> dict[str, float | None]:
    return dict(zip(PARTS, values, strict=True))


# Table 1: kNN music-ID accuracy per subspace; "baseline" = individual networks on signals
# separated by Spleeter (the paper's conventional method), only for drums, bass and piano.
TABLE1_PROPOSED: dict[float, dict[str, float | None]] = {
    3.0: _row(84.73, 51.01, 77.21, 76.50, 82.84),
    5.0: _row(86.84, 59.20, 82.00, 80.18, 83.34),
    10.0: _row(88.91, 64.87, 84.30, 82.70, 82.20),
}
TABLE1_BASELINE: dict[float, dict[str, float | None]] = {
    3.0: _row(94.00, 51.78, 39.40, _N, _N),
    5.0: _row(95.24, 61.54, 43.27, _N, _N),
    10.0: _row(94.62, 70.32, 45.30, _N, _N),
}
# Table 2 (5 s): row (i) = norm + pseudo pieces + basic + additional triplets + pre-training;
# row (a) = the conventional method on separated signals.
TABLE2_PROPOSED = _row(95.80, 61.91, 67.37, 57.32, 80.69)
TABLE2_BASELINE = _row(90.19, 40.00, 41.28, _N, _N)
# Table 3: instrument identification, with pre-training and norm loss.
TABLE3_PROPOSED = _row(84.48, 96.04, 90.27, 76.85, 92.24)
# Table 4: stem-input vs masked mix-input distance-matrix correlation, "w/ psd" row.
TABLE4_PROPOSED = _row(0.6159, 0.4782, 0.3608, 0.4115, 0.3243)
