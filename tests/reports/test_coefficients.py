"""Hand-computed cases for every formula of the pure module (numbers worked out in the
comments; the README's worked example is the first case)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.reports import coefficients as calc
from app.reports.coefficients import BallotAnswers as B

WEIGHTS = {"A": 2.0, "B": 1.0, "C": 1.0}
# A: 8, 6, 7        -> 3 answers, mean 7
# B: 6, 9, 9        -> 3 answers, mean 8   (r2 can't judge)
# C: 4              -> 1 answer: below k = 3, not shown
BALLOTS = [
    B({"A": 8, "B": 6, "C": None}, nps=10),
    B({"A": 6, "B": None, "C": None}, nps=9),
    B({"A": 7, "B": 9, "C": 4}, nps=6),
    B({"A": None, "B": 9, "C": None}, nps=None),
]


def test_competency_means_skip_cant_judge_and_need_k_answers() -> None:
    assert calc.competency_means(BALLOTS, WEIGHTS, k=3) == {"A": (3, 7.0), "B": (3, 8.0)}
    assert calc.competency_means(BALLOTS, WEIGHTS, k=4) == {}


def test_weighted_coefficient_renormalises_over_shown_competencies() -> None:
    # (2*7 + 1*8) / (2 + 1) = 22/3; C is not shown, so its weight drops out.
    assert calc.weighted_coefficient({"A": 7.0, "B": 8.0}, WEIGHTS) == pytest.approx(22 / 3)
    assert calc.weighted_coefficient({}, WEIGHTS) is None
    # A zero weight never divides by zero.
    assert calc.weighted_coefficient({"A": 5.0}, {"A": 0.0}) is None


def test_rater_scores_use_each_raters_answered_competencies() -> None:
    # r1 (2*8+6)/3 = 22/3, r2 A only = 6, r3 (2*7+9)/3 = 23/3 (C is not shown), r4 B only = 9
    scores = calc.rater_scores(BALLOTS, ["A", "B"], WEIGHTS)
    assert scores == pytest.approx([22 / 3, 6.0, 23 / 3, 9.0])
    assert calc.rater_scores([B({"A": None})], ["A"], {"A": 1.0}) == []


def test_mean_sd_and_moments_agree() -> None:
    values = [22 / 3, 6.0, 23 / 3, 9.0]
    mean, sd = calc.mean_sd(values)
    # mean 7.5; squared deviations 1/36 + 2.25 + 1/36 + 2.25 = 41/9; / 3 -> sd = sqrt(41/27)
    assert mean == pytest.approx(7.5)
    assert sd == pytest.approx(math.sqrt(41 / 27)) == pytest.approx(1.2322818)
    mean_sq = sum(v * v for v in values) / 4
    assert calc.sd_from_moments(4, 7.5, mean_sq) == pytest.approx(sd)
    assert calc.mean_sd([]) == (None, None)
    assert calc.mean_sd([3.0]) == (3.0, None)
    assert calc.sd_from_moments(1, 3.0, 9.0) is None
    # A zero variance that rounding makes slightly negative is still 0.
    assert calc.sd_from_moments(3, 0.1, 0.01 - 1e-18) == 0.0


@pytest.mark.parametrize(
    ("df", "expected"),
    [
        (1, 12.7062),
        (2, 4.3027),
        (3, 3.1824),
        (4, 2.7764),
        (9, 2.2622),
        (10, 2.2281),
        (30, 2.0423),
        (120, 1.9799),
        (1000, 1.9623),
    ],
)
def test_t_quantile_matches_the_tables(df: int, expected: float) -> None:
    assert calc.t_quantile_975(df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_rejects_zero_df() -> None:
    with pytest.raises(ValueError):
        calc.t_quantile_975(0)


def test_confidence_interval_is_a_t_interval() -> None:
    # 22/3 ± t(0.975, 3) * 1.2322818 / sqrt(4) = 7.3333 ± 3.18245 * 0.61614 = ± 1.96084
    low, high = calc.confidence_interval(22 / 3, math.sqrt(41 / 27), 4)
    assert low == pytest.approx(5.372498, abs=1e-6)
    assert high == pytest.approx(9.294169, abs=1e-6)
    assert calc.confidence_interval(5.0, None, 4) == (None, None)
    assert calc.confidence_interval(5.0, 1.0, 1) == (None, None)


def test_nps_counts_promoters_and_detractors_and_needs_k_answers() -> None:
    # answers 10, 9, 6: promoters 2, detractors 1 -> (2 - 1) / 3 = 33.3
    assert calc.net_promoter_score([10, 9, 6, None], k=3) == (3, pytest.approx(100 / 3))
    assert calc.net_promoter_score([10, 9, 6, None], k=4) == (3, None)
    # 7 and 8 are passives: counted in the denominator only.
    assert calc.net_promoter_score([7, 8, 9, 0], k=3) == (4, 0.0)
    assert calc.nps_from_counts(0, 0, 0, k=3) is None


def test_employee_figures_combine_everything() -> None:
    fig = calc.employee_figures(1, 5, BALLOTS, WEIGHTS, k=3)
    assert fig.meets_k and fig.included
    assert fig.raters == 4 and fig.scored_raters == 4
    assert fig.coefficient == pytest.approx(22 / 3)
    assert fig.sd == pytest.approx(1.2322818)
    assert (fig.ci_low, fig.ci_high) == (pytest.approx(5.372498), pytest.approx(9.294169))
    assert fig.nps == pytest.approx(100 / 3) and fig.nps_answers == 3
    assert fig.competencies == {"A": (3, 7.0), "B": (3, 8.0)}


def test_employee_below_k_gets_nothing_but_the_status() -> None:
    fig = calc.employee_figures(1, 5, BALLOTS[:2], WEIGHTS, k=3)
    assert not fig.meets_k and not fig.included
    assert fig.raters is None and fig.coefficient is None and fig.competencies == {}
    assert fig.nps is None and fig.comments == [] and fig.sd is None


def test_compare_same_scale_not_significant_when_within_uncertainty() -> None:
    # delta 22/3 - 6 = 1.3333; se_now = 1.23228/2 = 0.61614 (n 4), se_before = 0.3 (n 4)
    # Welch df = (0.379630 + 0.09)² / (0.379630²/3 + 0.09²/3) = 0.220552 / 0.050740 = 4.3467
    # t(0.975, 4.3467) = 2.6912; 2.6912 * sqrt(0.469630) = 1.8443 > 1.3333 -> not significant
    se = math.sqrt(41 / 27) / 2
    scale = calc.Scale(1, 10)
    assert calc.welch_df(se, 4, 0.3, 4) == pytest.approx(4.3467, abs=1e-4)
    assert calc.t_quantile_975(4.3467) == pytest.approx(2.6912, abs=1e-4)
    delta, significant = calc.compare(
        22 / 3, se, 6.0, 0.3, scale=scale, previous_scale=scale, current_n=4, previous_n=4
    )
    assert delta == pytest.approx(4 / 3)
    assert significant is False
    delta, significant = calc.compare(
        22 / 3, se, 5.0, 0.3, scale=scale, previous_scale=scale, current_n=4, previous_n=4
    )
    assert delta == pytest.approx(7 / 3) and significant is True


def test_compare_across_scales_maps_the_previous_value_onto_the_current_scale() -> None:
    # 3 on 1..5 is at 50% of the scale -> 1 + 0.5 * 9 = 5.5 on 1..10; delta 7.3333 - 5.5
    # se_before 0.2 * 9/4 = 0.45. The z test said significant (1.96 * 0.76297 = 1.4954 <
    # 1.8333); Welch with 4 raters a side does not: df = 0.338874 / 0.061708 = 5.4916,
    # t = 2.5029, 2.5029 * 0.76297 = 1.9096 > 1.8333.
    se = math.sqrt(41 / 27) / 2
    kwargs = {"scale": calc.Scale(1, 10), "previous_scale": calc.Scale(1, 5)}
    delta, significant = calc.compare(22 / 3, se, 3.0, 0.2, current_n=4, previous_n=4, **kwargs)
    assert delta == pytest.approx(11 / 6)
    assert significant is False
    # With more raters behind the same standard errors the test gets its power back.
    assert calc.compare(22 / 3, se, 3.0, 0.2, current_n=30, previous_n=30, **kwargs)[1] is True
    assert calc.rescale(3.0, calc.Scale(1, 5), calc.Scale(1, 10)) == 5.5
    assert calc.rescale(0.0, calc.Scale(0, 10), calc.Scale(0, 10)) == 0.0


def test_compare_without_previous_or_uncertainty() -> None:
    scale = calc.Scale(1, 10)
    n = {"current_n": 3, "previous_n": 3}
    assert calc.compare(7.0, 0.1, None, None, scale=scale, previous_scale=scale, **n) == (
        None,
        None,
    )
    assert calc.compare(None, None, 7.0, 0.1, scale=scale, previous_scale=scale, **n) == (
        None,
        None,
    )
    assert calc.compare(7.0, None, 6.0, 0.1, scale=scale, previous_scale=scale, **n) == (1.0, None)
    # Without the n behind the standard errors there are no degrees of freedom.
    assert calc.compare(7.0, 0.1, 6.0, 0.1, scale=scale, previous_scale=scale) == (1.0, None)
    # Nobody varied on either side: any change is real.
    assert calc.compare(7.0, 0.0, 6.0, 0.0, scale=scale, previous_scale=scale, **n) == (1.0, True)
    assert calc.welch_df(0.1, 1, 0.1, 3) is None


def test_welch_keeps_false_positives_at_five_percent_with_three_raters_a_side() -> None:
    """Simulated cycles where nothing changed: 3 raters before, 3 after, same true mean.

    The z test (1.96 · combined se) calls about 12% of them a real change; Welch's t with
    Welch-Satterthwaite df stays at or below the nominal 5% (it is slightly conservative).
    """
    rng = np.random.default_rng(2026)
    runs = 20_000
    before = rng.normal(7.0, 1.5, size=(runs, 3))
    after = rng.normal(7.0, 1.5, size=(runs, 3))
    scale = calc.Scale(1, 10)
    z_hits = welch_hits = 0
    for b, a in zip(before, after, strict=True):
        se_b = float(b.std(ddof=1)) / math.sqrt(3)
        se_a = float(a.std(ddof=1)) / math.sqrt(3)
        delta, significant = calc.compare(
            float(a.mean()),
            se_a,
            float(b.mean()),
            se_b,
            scale=scale,
            previous_scale=scale,
            current_n=3,
            previous_n=3,
        )
        assert delta is not None
        welch_hits += bool(significant)
        z_hits += abs(delta) > calc.Z_95 * math.sqrt(se_a**2 + se_b**2)
    assert welch_hits / runs <= 0.05
    assert z_hits / runs > 0.10  # the simulation does catch the old test's overclaiming


def test_icc1_matches_shrout_and_fleiss() -> None:
    # Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges. Their one-way ANOVA gives
    # BMS = 11.24, WMS = 6.26, and ICC(1,1) = .17, ICC(1,4) = .44 (Table 4).
    table = [
        [9, 2, 5, 8],
        [6, 1, 3, 2],
        [8, 4, 6, 8],
        [7, 1, 2, 6],
        [10, 5, 6, 9],
        [6, 2, 4, 7],
    ]
    samples = []
    for row in table:
        mean, sd = calc.mean_sd([float(v) for v in row])
        assert mean is not None
        samples.append(calc.RaterSample(len(row), mean, sd))
    icc = calc.icc1(samples)
    assert icc is not None
    # (11.2417 - 6.2639) / (11.2417 + 3 * 6.2639) = 4.9778 / 30.0333
    assert icc == pytest.approx(0.165741, abs=1e-5)
    assert round(icc, 2) == 0.17
    assert round(calc.spearman_brown(icc, 4) or 0, 2) == 0.44
    # With equal rater counts, Spearman-Brown of ICC(1,1) is exactly (BMS - WMS) / BMS.
    assert calc.spearman_brown(icc, 4) == pytest.approx(4.9778 / 11.2417, abs=1e-4)


def test_icc1_with_unequal_rater_counts_uses_the_average_group_size() -> None:
    # Groups (5, 6, 7), (1, 2), (8, 9, 9, 10): N 9, g 3, grand mean 57/9 = 6.3333
    # SSB = 3(6 - 6.3333)² + 2(1.5 - 6.3333)² + 4(9 - 6.3333)² = 75.5, MSB = 37.75
    # SSW = 2 + 0.5 + 2 = 4.5, MSW = 4.5 / 6 = 0.75; n0 = (9 - 29/9) / 2 = 2.8889
    # ICC = (37.75 - 0.75) / (37.75 + 1.8889 * 0.75) = 37 / 39.1667 = 0.944681
    groups = [[5, 6, 7], [1, 2], [8, 9, 9, 10]]
    samples = []
    for g in groups:
        mean, sd = calc.mean_sd([float(v) for v in g])
        assert mean is not None
        samples.append(calc.RaterSample(len(g), mean, sd))
    assert calc.icc1(samples) == pytest.approx(0.944681, abs=1e-6)
    # Nothing to compare: one employee, or nobody varies at all.
    assert calc.icc1(samples[:1]) is None
    assert calc.icc1([calc.RaterSample(3, 5.0, 0.0), calc.RaterSample(3, 5.0, 0.0)]) is None


def test_spearman_brown_reliability_of_a_three_rater_mean() -> None:
    # The example: ICC(1) 0.38, 3 raters -> 3 * 0.38 / (1 + 2 * 0.38) = 0.6477
    assert calc.spearman_brown(0.38, 3) == pytest.approx(0.647727, abs=1e-6)
    assert calc.spearman_brown(0.38, 1) == pytest.approx(0.38)
    assert calc.spearman_brown(-0.2, 5) == 0.0
    assert calc.spearman_brown(None, 3) is None


def test_bands_group_overlapping_intervals_anchored_on_the_band_top() -> None:
    intervals = {
        "a": (9.0, 8.5, 9.5),
        "b": (8.6, 8.0, 9.2),  # overlaps a
        "c": (8.0, 7.6, 8.4),  # overlaps b but not a: opens band 2
        "d": (7.9, 7.0, 8.8),  # overlaps c
        "e": (6.0, None, None),  # no interval: the point itself, below c's interval
        "f": (6.0, 5.0, 7.0),
    }
    assert calc.bands(intervals) == {"a": 1, "b": 1, "c": 2, "d": 2, "e": 3, "f": 3}
    assert calc.bands({}) == {}


def test_ranks_share_ties_and_skip() -> None:
    values = {"a": 8.0, "b": 7.0, "c": 7.0 + 1e-12, "d": 5.0}
    assert calc.competition_ranks(values) == {"a": 1, "b": 2, "c": 2, "d": 4}
    # sorted ascending 5, 7, 7, 8: below d 0, below b/c 1, below a 3; / (n - 1) = 3
    assert calc.percentiles(values) == {
        "a": 100.0,
        "b": pytest.approx(100 / 3),
        "c": pytest.approx(100 / 3),
        "d": 0.0,
    }
    assert calc.percentiles({"x": 3.0}) == {"x": 100.0}
    assert calc.percentiles({}) == {}


def test_histogram_bins_are_half_open_except_the_last() -> None:
    hist = calc.histogram([1.0, 2.0, 5.6, 10.0], low=1, high=10)
    assert hist["counts"] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert hist["edges"][0] == 1.0 and hist["edges"][-1] == 10.0 and len(hist["edges"]) == 11


def test_histogram_values_on_inner_edges_go_up() -> None:
    # Edges 1, 1.9, 2.8, ... 10: each inner edge value opens its bin ([a, b)), and the
    # scale maximum closes the last one. 2.8 once landed in [1.9, 2.8): (2.8 - 1) / 0.9 is
    # 1.9999999999999998 in floating point.
    inner = [1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1]
    hist = calc.histogram([*inner, 10.0], low=1, high=10)
    assert hist["edges"][1:-1] == inner
    assert hist["counts"] == [0, 1, 1, 1, 1, 1, 1, 1, 1, 2]
    assert calc.histogram([0.0, 5.0], low=0, high=5, bins=5)["counts"] == [1, 0, 0, 0, 1]


def three_level_company() -> calc.CycleInput:
    """R > C1 > G1, and a second root R2; one competency so coefficients are plain means.

    e1 (R) 8,8,8 -> 8   e2 (C1) 6,7,8 -> 7   e3 (G1) 4,5,6 -> 5
    e4 (G1) 10,10 -> below k   e5 (R2) 9,9,9 -> 9   e6 (R2) no ballots -> below k
    """

    def ballots(*scores: int) -> list[B]:
        return [B({"q": s}) for s in scores]

    return calc.CycleInput(
        scale=calc.Scale(1, 10),
        weights={"q": 1.0},
        departments={1: None, 2: 1, 3: 2, 4: None},
        suppliers={11: 1, 12: 2, 13: 3, 14: 3, 15: 4, 16: 4},
        ballots={
            11: ballots(8, 8, 8),
            12: ballots(6, 7, 8),
            13: ballots(4, 5, 6),
            14: ballots(10, 10),
            15: ballots(9, 9, 9),
        },
        invited=12,
        responded=9,
    )


def test_department_rollup_over_a_three_level_tree() -> None:
    res = calc.compute_cycle(three_level_company(), k=3)
    g1, c1, r, r2 = (res.departments[d] for d in (3, 2, 1, 4))
    assert (g1.coefficient, g1.employees_included, g1.suppliers) == (5.0, 1, 2)  # e4 left out
    assert (c1.coefficient, c1.employees_included) == (6.0, 2)  # (7 + 5) / 2
    assert r.coefficient == pytest.approx(20 / 3) and r.employees_included == 3  # (8+7+5)/3
    assert (r2.coefficient, r2.employees_included, r2.suppliers) == (9.0, 1, 2)
    assert res.company.coefficient == 7.25 and res.company.employees_included == 4
    assert res.company.suppliers == 6
    assert res.response_rate == 0.75
    assert res.company.competencies == {"q": (4, 7.25)}
    # ranks: e5 9, e1 8, e2 7, e3 5; each department rank inside its own department
    assert [res.employees[e].company_rank for e in (15, 11, 12, 13)] == [1, 2, 3, 4]
    assert (
        res.employees[13].department_rank == 1 and res.employees[13].department_percentile == 100.0
    )
    assert res.employees[14].company_rank is None
    # a first cycle: nothing to compare with
    assert all(e.delta is None for e in res.employees.values())
    assert res.company.delta is None


def test_cycle_reliability_and_bands() -> None:
    res = calc.compute_cycle(three_level_company(), k=3)
    # Included: e1 (8, 8, 8), e2 (6, 7, 8), e3 (4, 5, 6), e5 (9, 9, 9); grand mean 7.25
    # MSB = 3 (0.75² + 0.25² + 2.25² + 1.75²) / 3 = 8.75, MSW = (0 + 2 + 2 + 0) / 8 = 0.5
    # ICC = (8.75 - 0.5) / (8.75 + 2 * 0.5) = 0.846154; 3 raters -> 0.942857
    assert res.icc == pytest.approx(8.25 / 9.75)
    assert res.employees[12].reliability == pytest.approx(0.942857, abs=1e-6)
    assert res.employees[14].reliability is None  # below k
    assert res.employees[12].se == pytest.approx(1 / math.sqrt(3))
    # e5 9 [9, 9] | e1 8 [8, 8], e2 7 [4.52, 9.48] | e3 5 [2.52, 7.48]
    assert [res.employees[e].company_band for e in (15, 11, 12, 13)] == [1, 2, 2, 3]
    assert res.employees[14].company_band is None
    assert res.employees[13].department_band == 1


def test_second_cycle_reports_deltas() -> None:
    first = calc.compute_cycle(three_level_company(), k=3)
    data = three_level_company()
    data.ballots = {**data.ballots, 13: [B({"q": 9})] * 3, 14: [B({"q": 2})] * 3}
    second = calc.compute_cycle(data, k=3, previous=first)
    e3 = second.employees[13]
    # 9 with sd 0 now vs 5 with sd 1 before: se = 0 and 1/sqrt(3); 4 > 1.96 * 0.577
    assert e3.delta == 4.0 and e3.delta_significant is True
    # e4 was below k before: no delta even though it is shown now
    assert second.employees[14].coefficient == 2.0 and second.employees[14].delta is None
    # G1: before 5 (only e3), now (9 + 2) / 2 = 5.5
    assert second.departments[3].delta == pytest.approx(0.5)


def test_subtree_includes_self_and_all_descendants() -> None:
    assert calc.subtree({1: None, 2: 1, 3: 2, 4: None}) == {1: {1, 2, 3}, 2: {2, 3}, 3: {3}, 4: {4}}


def test_confidence_interval_never_leaves_the_scale() -> None:
    # Mean 9.5 of (10, 9, 10, 9): the raw t interval reaches above 10.
    raw_low, raw_high = calc.confidence_interval(9.5, math.sqrt(1 / 3), 4)
    assert raw_high is not None and raw_high > 10
    low, high = calc.confidence_interval(9.5, math.sqrt(1 / 3), 4, scale=calc.Scale(1, 10))
    assert high == 10 and low == raw_low
