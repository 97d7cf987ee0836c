"""Lineage: how much of a corpus (or group) is human, from each profile generator,
or synthetic of unattributed origin.

It restates the synthetic-share estimate as parts that add up to 1:

- `human`: 1 - synthetic share, with the interval of the share mirrored.
- `generators`: the share of each of the profile's generators, when the fit
  test accepts the profile. The mixture then attributes all synthetic text to
  them. Each generator's share is bias-corrected on its own, so their sum can
  differ slightly from the synthetic share. They are scaled to add up to it.
  The intervals are the estimate's own.
- `unattributed_synthetic`: synthetic text whose generator the profile cannot
  name. When the fit test rejects the profile, the corpus does not look like
  any mix of the profile's references, so no generator is named and the whole
  synthetic share is unattributed, with the interval [0, 1]. When the fit is
  accepted the estimate is 0, but text of an unlisted generator that scores like
  a listed one would be counted as that generator, so the interval runs from 0
  to the upper limit of the synthetic share.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from scanner.share import SyntheticShare


class LineagePart(BaseModel):
    """A share in [0, 1] and its 95% interval."""

    model_config = ConfigDict(extra="forbid")

    estimate: float
    ci95: tuple[float, float]


class Lineage(BaseModel):
    """Parts of the text by origin; the estimates add up to 1."""

    model_config = ConfigDict(extra="forbid")

    human: LineagePart
    generators: dict[str, LineagePart]
    unattributed_synthetic: LineagePart
    attributed: bool
    method: str = "restates synthetic_share; generators are named only when the fit test accepts the profile"


def lineage_of(share: SyntheticShare | None) -> Lineage | None:
    """Return the lineage of an estimate, or None without one."""
    if share is None:
        return None
    low, high = share.ci95
    human = LineagePart(estimate=1.0 - share.estimate, ci95=(1.0 - high, 1.0 - low))
    if share.fit.warning is not None:
        return Lineage(
            human=human,
            generators={},
            unattributed_synthetic=LineagePart(estimate=share.estimate, ci95=(0.0, 1.0)),
            attributed=False,
        )
    attributed = sum(value.estimate for value in share.generators.values())
    scale = share.estimate / attributed if attributed > 0 else 0.0
    generators = {
        name: LineagePart(estimate=value.estimate * scale, ci95=value.ci95) for name, value in share.generators.items()
    }
    return Lineage(
        human=human,
        generators=generators,
        unattributed_synthetic=LineagePart(estimate=0.0, ci95=(0.0, high)),
        attributed=True,
    )
