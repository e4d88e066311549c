"""The model spec's `calibration:` block: a probability calibration step fitted after training.

Its own small model so the training sections stay as they are; `base_sections` adds it to every
candidate's config only when it is declared, so models without it keep their candidate fingerprints.
The maths is `flows/training/calibration.py`; this model only declares the method and the share of the
training split the calibrator is fitted on (rows the network does not train on; the holdout stays the judge).

Light by rule: pydantic + daemon.schema only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from daemon.schema.base import SpecModel


class CalibrationSpec(SpecModel):
    method: Literal["platt", "isotonic"]  # platt: a logistic fit on the logit; isotonic: a monotone step fit
    fraction: float = Field(default=0.2, gt=0, lt=0.9)  # of the training split, held out to fit the calibrator
