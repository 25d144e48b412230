"""Progress a person can trust: the run's estimate, live counting inside a stage, the ETA, and the lines a log gets
(:class:`attnfaith.progress.RunProgress`, wired into the study runner)."""

from __future__ import annotations

import io

import pytest

from attnfaith.engine import report_variants, variant_listener
from attnfaith.progress import RunProgress


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_listener_counts_only_in_its_body_and_nests():
    seen_a, seen_b = [], []
    report_variants(5)  # nobody listens: nothing happens
    with variant_listener(seen_a.append):
        report_variants(3)
        with variant_listener(seen_b.append):
            report_variants(4)
        report_variants(1)
    report_variants(7)
    assert seen_a == [3, 4, 1] and seen_b == [4]


def test_eta_is_the_rate_so_far_times_the_work_left():
    """Hand computation: 400 forwards in all; after 10 s, 100 counted → 300 left at 0.1 s each = 30 s."""
    clock, out = FakeClock(), io.StringIO()
    p = RunProgress(400, n_chunks=2, n_examples=8, stream=out, interval=5.0, terminal=False, clock=clock)
    p.announce({"method loo": 100.0, "evaluator erasure": 300.0})
    assert "8 examples in 2 chunk(s), about 400 forwards (method loo 100, evaluator erasure 300)" in out.getvalue()
    with p.stage("evaluator erasure", 200):
        clock.t += 10
        report_variants(100)  # interval passed: one line
        assert p.eta() == pytest.approx(30.0)
        clock.t += 1
        report_variants(20)  # within the interval: no line
        report_variants(500)  # capped at the stage's estimate
        assert p.done == pytest.approx(200)
    lines = out.getvalue().splitlines()
    progress_lines = [ln for ln in lines if "ETA" in ln]
    assert len(progress_lines) == 1
    assert "25% | chunk 1/2 | evaluator erasure | 0/8 examples done | elapsed 10s | ETA 30s" in progress_lines[0]
    p.chunk_done(4, 11.0)
    text = out.getvalue()
    assert "chunk 1/2 done (11.0 s): 4/8 examples" in text
    # 200 of 400 done in 11 s: 11 s left, 22 s in all
    assert "projected total 22s (about 11s left)" in text


def test_a_stage_that_stops_early_counts_its_whole_estimate():
    clock = FakeClock()
    p = RunProgress(100, n_chunks=1, n_examples=2, stream=io.StringIO(), terminal=False, clock=clock)
    with p.stage("method loo", 60):
        report_variants(10)
    assert p.done == pytest.approx(60)


def test_resumed_work_counts_as_done_but_not_into_the_rate():
    clock = FakeClock()
    p = RunProgress(100, n_chunks=2, n_examples=10, done_chunks=1, done_examples=5, stream=io.StringIO(),
                    terminal=False, clock=clock)
    assert p.done == pytest.approx(50) and p.eta() is None
    with p.stage("evaluator single", 50):
        clock.t += 5
        report_variants(1)  # under 5 % of the 50 left: no ETA yet
        assert p.eta() is None
        report_variants(9)
        assert p.eta() == pytest.approx(40 * 5 / 10)


@pytest.fixture(scope="module")
def tiny():
    from attnfaith.demo import word_tokenizer
    from attnfaith.testing import tiny_model

    tok = word_tokenizer()
    return tiny_model("bert", num_labels=2, vocab_size=len(tok)), tok


def test_a_logged_run_prints_the_estimate_moving_lines_and_the_projection(tiny, capsys, tmp_path):
    """A study run on a tiny model with stderr not a terminal, a progress line at every forward (interval 0): the
    estimate comes first, lines with an ETA move, one line per chunk, the projected total after the first."""
    from attnfaith.study import run_evaluation

    model, tokenizer = tiny
    texts = ["a good day", "the bad river and the dull day", "good", "not a good day", "bad", "the river day"]
    run_evaluation(model, tokenizer, texts, methods="attention,loo,random", evaluators="erasure,permutation",
                   out_dir=tmp_path / "run", batch_size=3, permutations=4, n_random=2, progress=True,
                   progress_interval=0.0, figures=False)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0].startswith("attnfaith: 6 examples in 2 chunk(s), about ")
    assert "evaluator erasure" in lines[0] and "method loo" in lines[0]
    moving = [ln for ln in lines if "ETA" in ln]
    assert len(moving) >= 4
    percents = [int(ln.split("attnfaith: ")[1].split("%")[0]) for ln in moving]
    assert percents == sorted(percents) and percents[-1] <= 100
    assert any("chunk 1/2 done" in ln for ln in lines) and any("chunk 2/2 done" in ln for ln in lines)
    assert any("projected total" in ln for ln in lines)
