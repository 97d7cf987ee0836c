"""Lineage restates a synthetic-share estimate as parts that add up to 1."""

import pytest

from scanner.lineage import lineage_of
from scanner.share import SyntheticShare


def share(estimate, ci95, generators, warning=None) -> SyntheticShare:
    return SyntheticShare.model_validate(
        {
            "estimate": estimate,
            "ci95": ci95 if warning is None else (0.0, 1.0),
            "model_ci95": ci95,
            "standard_error": 0.02,
            "generators": {
                name: {"estimate": value, "ci95": bounds, "model_ci95": bounds, "standard_error": 0.02}
                for name, (value, bounds) in generators.items()
            },
            "plain_mle": estimate,
            "plain_mle_ci95": ci95,
            "documents": 1000,
            "documents_without_vocabulary": 0,
            "profile": "0123456789abcdef",
            "fit": {
                "p_value": 0.4 if warning is None else 1e-6,
                "score_test_p_value": 0.4,
                "word_test_p_value": None,
                "zero_share_p_value": 0.001,
                "interval_widening": 1.0,
                "warning": warning,
            },
        }
    )


def test_accepted_fit_names_each_generator():
    lineage = lineage_of(share(0.3, (0.25, 0.36), {"a": (0.2, (0.1, 0.3)), "b": (0.1, (0.0, 0.2))}))

    assert lineage.attributed
    assert lineage.human.estimate == pytest.approx(0.7)
    assert lineage.human.ci95 == pytest.approx((0.64, 0.75))
    assert set(lineage.generators) == {"a", "b"}
    assert lineage.generators["a"].ci95 == (0.1, 0.3)
    total = lineage.human.estimate + sum(part.estimate for part in lineage.generators.values())
    assert total + lineage.unattributed_synthetic.estimate == pytest.approx(1.0)
    assert lineage.unattributed_synthetic.ci95 == (0.0, 0.36)


def test_generator_shares_are_scaled_to_the_synthetic_share():
    lineage = lineage_of(share(0.3, (0.25, 0.36), {"a": (0.24, (0.1, 0.3)), "b": (0.12, (0.0, 0.2))}))

    assert lineage.generators["a"].estimate == pytest.approx(0.2)
    assert lineage.generators["b"].estimate == pytest.approx(0.1)
    assert lineage.generators["b"].ci95 == (0.0, 0.2)


def test_rejected_fit_leaves_the_synthetic_share_unattributed():
    lineage = lineage_of(share(0.4, (0.3, 0.5), {"a": (0.4, (0.3, 0.5))}, warning="the profile does not fit"))

    assert not lineage.attributed
    assert lineage.generators == {}
    assert lineage.unattributed_synthetic.estimate == pytest.approx(0.4)
    assert lineage.unattributed_synthetic.ci95 == (0.0, 1.0)
    assert lineage.human.ci95 == (0.0, 1.0)


def test_no_estimate_no_lineage():
    assert lineage_of(None) is None
