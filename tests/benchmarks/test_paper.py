"""benchmarks/paper.py: its statistics, its verdicts on made-up results, and one tiny run of
every paper grid through the real sweep, natural yardstick and report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import paper
from simulator.sweep import SweepConfig

ROOT = Path(__file__).resolve().parents[2]


def test_expected_best_of_n_is_exact():
    values = np.array([3.0, 1.0, 4.0, 1.5, 9.0, 2.6])
    for n in (1, 2, 3, 6):
        brute = np.mean([max(c) for c in itertools.combinations(values, n)])
        assert paper.expected_best_of(values, n) == pytest.approx(brute)


def test_sign_test_and_log_fit():
    assert paper.sign_test(8, 8) == pytest.approx(2 / 256)
    assert paper.sign_test(4, 8) == 1.0
    assert paper.sign_test(0, 8) == paper.sign_test(8, 8)
    assert paper.log_fit({10: 1.0, 100: 2.0, 1000: 3.0}) == pytest.approx(1.0)
    assert paper.log_fit({10: 1.0, 100: 1.0, 1000: 5.0}) < 0.8


def test_a_curve_counts_images_by_whole_generations():
    row = {"generation_maxima": [1.0, 3.0, 2.0, 5.0], "images": 80, "generations": 4}
    at = np.array([10.0, 20.0, 45.0, 60.0, 80.0])
    best = paper.curve(row, at)
    assert np.isnan(best[0])
    np.testing.assert_array_equal(best[1:], [1.0, 3.0, 3.0, 5.0])


def _data(ga: dict[str, float], others: dict[str, dict[str, float]]) -> paper.Data:
    """Made-up layers-grid results: best activations per label and target, natural best 1."""
    targets = list(ga)
    configurations = [{"label": label, "optimizer": "ga", "generator": "fourier"}
                      for label in ("ga", *others)]  # fmt: skip
    grid = SweepConfig.model_validate({"targets": targets, "configurations": configurations})
    rows = [
        {"label": label, "target": t, "seed": 0, "best_activation": v, "images": 40,
         "generations": 2, "generation_maxima": [v / 2, v]}
        for label, bests in (("ga", ga), *others.items())
        for t, v in bests.items()
    ]  # fmt: skip
    natural = {t: {"best": 1.0, "best_of": {"10": 0.5, "100": 0.75, "1000": 1.0}} for t in targets}
    return paper.Data({"layers": rows}, {"layers": grid}, natural, crops=1000)


UNITS = [f"efficientnet-lite0:{layer}:{c}" for layer in ("_blocks.3", "_fc") for c in range(4)]


def test_verdicts_follow_the_numbers(tmp_path):
    beats = _data(dict.fromkeys(UNITS, 2.0), {"cmaes": dict.fromkeys(UNITS, 3.0)})
    loses = _data(dict.fromkeys(UNITS, 0.5), {"cmaes": dict.fromkeys(UNITS, 3.0)})
    assert paper.claim_natural(beats, tmp_path).verdict == "reproduced"
    assert paper.claim_natural(loses, tmp_path).verdict == "partly reproduced"  # the log fit holds
    assert paper.claim_layers(beats, tmp_path).verdict == "reproduced"
    assert paper.claim_layers(loses, tmp_path).verdict == "not reproduced"
    half = _data({u: 2.0 if "_fc" in u else 0.5 for u in UNITS}, {"cmaes": dict.fromkeys(UNITS, 1)})
    assert paper.claim_layers(half, tmp_path).verdict == "partly reproduced"
    # NES worse than the GA early and better at the output is the paper's pattern
    pattern = {u: 0.8 if "_blocks.3" in u else 1.3 for u in UNITS}
    data = _data(dict.fromkeys(UNITS, 1.0), {"nes": pattern, "cmaes": pattern})
    claim = paper.claim_optimizers(data, tmp_path)
    assert claim.verdict == "reproduced"  # without noise; the noisy half was not run
    assert "GA at least as good: not run" in claim.summary
    reversed_pattern = {u: 2 - v for u, v in pattern.items()}
    data = _data(dict.fromkeys(UNITS, 1.0), {"nes": reversed_pattern, "cmaes": pattern})
    assert paper.claim_optimizers(data, tmp_path).verdict == "not reproduced"
    # claims whose grids did not run say so rather than guess
    assert paper.claim_noise(beats, tmp_path).verdict == "not checked"
    assert paper.claim_init(beats, tmp_path).verdict == "not checked"


def _with(data: paper.Data, grid: str, bests: dict[str, dict], **by_label: dict) -> paper.Data:
    """``data`` and a made-up ``grid``: per label, best activation per target (or per
    (target, seed)); ``by_label`` sets a configuration field per label (e.g. noise=...)."""
    configurations = [
        {"label": label, "optimizer": label.split("-")[0], "generator": "fourier",
         **{name: values[label] for name, values in by_label.items() if label in values}}
        for label in bests
    ]  # fmt: skip
    targets = list(dict.fromkeys(k if isinstance(k, str) else k[0]
                                 for per in bests.values() for k in per))  # fmt: skip
    seeds = sorted({k[1] for per in bests.values() for k in per if not isinstance(k, str)} or {0})
    data.grids[grid] = SweepConfig.model_validate(
        {"targets": targets, "configurations": configurations, "seeds": seeds}
    )
    data.rows[grid] = [
        {"label": label, "target": k if isinstance(k, str) else k[0],
         "seed": 0 if isinstance(k, str) else k[1], "best_activation": v}
        for label, per in bests.items()
        for k, v in per.items()
    ]  # fmt: skip
    return data


def test_the_noise_claim_reads_the_levels_from_the_grid(tmp_path):
    def noisy(values: dict[int, float]) -> paper.Data:
        data = _data(dict.fromkeys(UNITS, 3.0), {"cmaes": dict.fromkeys(UNITS, 4.0)})
        bests = {f"ga-K{k}": dict.fromkeys(UNITS, v) for k, v in values.items()}
        noise = {f"ga-K{k}": f"poisson:{k}" for k in values}
        return _with(data, "noise", bests, noise=noise)

    rising = noisy({5: 1.2, 20: 1.6, 50: 2.0, 250: 2.8})
    claim = paper.claim_noise(rising, tmp_path)
    assert claim.verdict == "reproduced"
    assert any(line.startswith("| 5 | 1.20 | 8/8 |") for line in claim.lines)
    falling = noisy({5: 2.9, 20: 2.0, 50: 1.5, 250: 0.9})
    assert paper.claim_noise(falling, tmp_path).verdict == "partly reproduced"  # K=5 strong
    only_one = noisy({20: 1.6})  # two levels with noiseless: no correlation, no 5 or 250
    assert paper.claim_noise(only_one, tmp_path).verdict == "not checked"


def test_ties_match_no_direction(tmp_path):
    tie = {u: 0.98 if "_blocks.3" in u else 1.02 for u in UNITS}
    data = _data(dict.fromkeys(UNITS, 1.0), {"nes": tie, "cmaes": tie})
    claim = paper.claim_optimizers(data, tmp_path)
    assert claim.verdict == "not reproduced"
    assert "0 of 2 (layer, optimizer) pairs" in claim.lines[-1]  # NES in two layers


def test_hyperparameter_and_start_verdicts(tmp_path):
    def hyper(variant: float) -> paper.Data:
        bests = {"ga-default": dict.fromkeys(UNITS, 2.0),
                 "ga-population-40": dict.fromkeys(UNITS, 2.0 * variant),
                 "ga-default-K20": dict.fromkeys(UNITS, 1.0),
                 "ga-population-40-K20": dict.fromkeys(UNITS, 0.95)}  # fmt: skip
        configs = {"ga-default": {"population": 20}}
        return _with(_data(dict.fromkeys(UNITS, 2.0), {}), "hyper", bests, settings=configs)

    assert paper.claim_hyper(hyper(0.9), tmp_path).verdict == "reproduced"
    assert paper.claim_hyper(hyper(1.3), tmp_path).verdict == "partly reproduced"
    assert "identical results" in "".join(paper.claim_hyper(hyper(0.9), tmp_path).lines)

    def starts(values: list[float]) -> paper.Data:
        bests = {"ga": {(u, s): v for u in UNITS[:2] for s, v in enumerate(values)}}
        return _with(_data(dict.fromkeys(UNITS, 2.0), {}), "init", bests)

    assert paper.claim_init(starts([1.0, 1.01, 0.99, 1.0]), tmp_path).verdict == "reproduced"
    assert paper.claim_init(starts([1.0, 0.5, 0.9, 1.3]), tmp_path).verdict == "not reproduced"
    assert paper.claim_init(starts([1.0]), tmp_path).verdict == "not checked"


def test_saturation_is_judged_on_the_best_so_far(tmp_path):
    def run(maxima: list[float]) -> paper.Data:
        data = _with(_data(dict.fromkeys(UNITS, 2.0), {}), "saturation",
                     {"ga-10k": dict.fromkeys(UNITS[:1], max(maxima))})  # fmt: skip
        data.rows["saturation"][0].update(
            images=20 * len(maxima), generations=len(maxima), generation_maxima=maxima
        )
        return data

    fast = [1.0 - 0.5 ** (g / 5) for g in range(1, 101)]
    slow = [g / 100 for g in range(1, 101)]
    assert paper.claim_saturation(run(fast), tmp_path).verdict == "reproduced"
    assert paper.claim_saturation(run(slow), tmp_path).verdict == "not reproduced"


def _tiny(grid: dict) -> dict:
    """A real paper grid shrunk to seconds: two units, 32 px, a few generations."""
    first = {t.split(":")[1]: t for t in reversed(grid["targets"])}  # each layer's first unit
    keep = [first["_blocks.3"], first["_fc"]]
    budget = 80 if grid["common"]["budget"] > 3000 else 40
    common = {**grid["common"], "budget": budget, "image_size": 32, "input_size": 64,
              "references": 10}  # fmt: skip
    return {**grid, "targets": keep, "common": common,
            "seeds": grid.get("seeds", [0])[:2]}  # fmt: skip


@pytest.mark.slow
def test_every_paper_grid_runs_and_the_report_gives_each_claim_a_verdict(tmp_path):
    grids, results = tmp_path / "grids", tmp_path / "results"
    grids.mkdir()
    for name in paper.GRIDS:
        real = json.loads((ROOT / "benchmarks/grids" / f"paper_{name}.json").read_text())
        (grids / f"paper_{name}.json").write_text(json.dumps(_tiny(real)))
    doc = tmp_path / "docs" / "PAPER.md"
    argv = ["--grids", str(grids), "--results", str(results), "--doc", str(doc),
            "--natural", "40"]  # fmt: skip
    paper.main(argv)
    text = doc.read_text()
    titles = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert len(titles) == len(paper.CLAIMS)
    verdicts = [line.removeprefix("**Verdict: ").removesuffix(".**") for line in text.splitlines()
                if line.startswith("**Verdict: ")]  # fmt: skip
    assert len(verdicts) == len(titles) and set(verdicts) <= set(paper.VERDICTS)
    # every grid ran, so every claim was checked but the generators' (DeePSiM: not offline)
    assert [t for t, v in zip(titles, verdicts, strict=True) if v == "not checked"] == [
        paper.claim_generators(paper.Data({}, {}, {}), tmp_path).title
    ]
    assert "| ga | 2 |" in text  # ... whose pixel runs are shown for information
    for figure in ("natural", "layers", "curves", "saturation", "noise", "hyperparameters"):
        assert (doc.parent / "paper" / f"{figure}.png").stat().st_size > 1000
    natural = json.loads((results / paper.NATURAL_FILE).read_text())
    assert natural["crops"] == 40 and len(natural["units"]) == 2
    lines = {g: (results / f"paper_{g}" / "results.jsonl").read_text() for g in paper.GRIDS}
    assert all("error" not in json.loads(line) for t in lines.values() for line in t.splitlines())
    paper.main([*argv, "--report-only"])  # from what is stored: nothing runs again
    assert lines == {g: (results / f"paper_{g}" / "results.jsonl").read_text() for g in paper.GRIDS}
    assert doc.read_text() == text
