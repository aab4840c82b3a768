import numpy as np
import pytest

from rlhflab.feedback.agreement import annotator_report, fleiss_kappa, krippendorff_alpha


def test_fleiss_kappa_matches_the_textbook_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories → κ = 0.210
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[1, 1], [2, 1]]))


def test_krippendorff_alpha_matches_krippendorffs_nominal_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example: α = 0.743
    raters = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[str(r[i]) for r in raters if r[i] is not None] for i in range(12)]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == 1.0


def test_annotator_report_measures_position_bias_and_consensus():
    rows = []
    for q in range(20):
        rows.append(
            {
                "query_id": q,
                "annotator": "careful",
                "label": "left",
                "shown_swapped": q % 2 == 0,
                "seconds": 2.0,
            }
        )
        rows.append(
            {
                "query_id": q,
                "annotator": "agrees",
                "label": "left",
                "shown_swapped": False,
                "seconds": 4.0,
            }
        )
        # always clicks the side shown on the left, whatever it is
        rows.append(
            {
                "query_id": q,
                "annotator": "lazy",
                "label": "right" if q % 2 == 0 else "left",
                "shown_swapped": q % 2 == 0,
                "seconds": 0.5,
            }
        )
    report = annotator_report(rows)
    lazy, careful = report["annotators"]["lazy"], report["annotators"]["careful"]
    assert lazy["left_shown_win_rate"] == 1.0 and careful["left_shown_win_rate"] == 0.5
    assert careful["agreement_with_consensus"] == 1.0 and lazy["agreement_with_consensus"] == 0.5
    assert lazy["median_seconds"] == 0.5 and report["overlapping_queries"] == 20
