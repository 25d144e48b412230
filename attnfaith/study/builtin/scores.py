"""What the report shows of the methods' own scores (the runner's records, :mod:`attnfaith.study.records`): the
recovery of a known rationale (precision@k) and the token heat-maps."""

from __future__ import annotations

from attnfaith.study import plots
from attnfaith.study.registry import METHOD, Figure, Metric, ReportPart, Verdict, register_report_part
from attnfaith.study.statistics import few, percent

#: the method whose rationale recovery every other's is shown against
BASELINE = "random"


def _verdict(v: Verdict) -> list[str]:
    rp = v.table[v.method].get("rationale_precision")
    if not rp or rp["mean"] is None:
        return []
    text = f"its top-k tokens recover {percent(rp['mean'])} of the planted rationale"
    if few(rp["n"]):
        text += f" (over only {rp['n']} examples)"
    rr = v.table.get(BASELINE, {}).get("rationale_precision")
    if v.method != BASELINE and rr and rr["mean"] is not None:
        text += f" (random: {percent(rr['mean'])})"
    return [text]


register_report_part(ReportPart(
    name="rationale", order=30, verdict=_verdict,
    metrics=(Metric(key="rationale_precision", header="rationale P@k ↑", better="higher", percent=True,
                    path=("rationale_precision", METHOD), value=lambda p: p,
                    description="share of the method's top-k tokens that are planted rationale tokens (k = their "
                                "number)"),),
))
register_report_part(ReportPart(
    name="scores", order=1000,
    figures=(Figure(key=f"heatmap_{METHOD}", draw=plots.token_heatmap, title="Token heat-map: {label}",
                    caption="A few examples coloured by the {label} score of each token (divided by the example's "
                            "largest |score|); boxed tokens are the planted rationale when it is known."),),
))
