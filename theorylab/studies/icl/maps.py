"""The ICL theorem map: out-of-domain error over S1 x alpha' with Thm 2's conditions drawn over it.

Thm 2 (claims.thm2_ood) asks S1 >= 1 (each ODR pattern's IDR coefficients sum to at least 1; the claim splits its
arms by `S1 >= 1`), and the test prompts need l_ts >= 1/alpha' (the length_vs_alpha_test claim) to hold a context
sharing the query's pattern. Both are drawn as the zero contours of S1 - 1 and l_ts - 1/alpha'. S1 and alpha_test
are swept fields (config.py): every cell of a seed is the same trained model, graded on other test prompts.
"""
from __future__ import annotations

from theorylab.core.maps import Axis, Boundary, TheoremMap

MAPS = {
    "ood": TheoremMap(
        title="OOD error over S1 and alpha' (Thm 2)",
        theorem="Thm 2 (Li et al., ICML 2024): the out-of-domain error is O(eps) when every ODR pattern's IDR "
                "coefficients sum to S1 >= 1 and the test prompt is long enough, l_ts >= 1/alpha'.",
        x=Axis("S1", "S1 (sum of the IDR coefficients of each ODR pattern)", (0.4, 0.6, 0.8, 1.0, 1.2, 1.4)),
        y=Axis("alpha_test", "alpha' (fraction of test contexts sharing the query's pattern)",
               (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)),
        metric="ood_error", metric_label="OOD test error (ood_error)",
        boundaries=(Boundary("S1 = 1 (Thm 2 needs S1 >= 1; right of the line)", lambda x, y, cfg, fit: x - 1.0),
                    Boundary("l_ts = 1/alpha' (Thm 2 needs l_ts >= 1/alpha'; above the line)",
                             lambda x, y, cfg, fit: cfg.l_ts - 1.0 / y)),
        cmap="magma_r"),
}
