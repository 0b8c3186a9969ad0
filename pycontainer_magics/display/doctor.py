"""`%container doctor` as a DataFrame: one row per feature (works or not, why, what to do, what needs it)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..lab.doctor import Report

COLUMNS = ["feature", "works", "why", "what to do", "needed for"]


class DoctorFrame(pd.DataFrame):  # type: ignore[misc]  # pandas ships no types here
    """A plain DataFrame that shows its text columns in full (the reasons are the point)."""

    @property
    def _constructor(self) -> Any:
        return pd.DataFrame  # slices and computations are ordinary DataFrames

    def _repr_html_(self) -> str | None:
        with pd.option_context("display.max_colwidth", None):
            html: str | None = super()._repr_html_()
            return html

    def __repr__(self) -> str:
        return str(self.to_string(max_colwidth=None))


def doctor_frame(report: Report) -> pd.DataFrame:
    rows = [(c.feature, c.works, c.why, c.fix, c.needed_for) for c in report.checks]
    df = DoctorFrame(rows, columns=COLUMNS, index=pd.Index([c.key for c in report.checks], name="key"))
    df.attrs["uid"] = report.uid
    df.attrs["user"] = report.user
    return df


__all__ = ["DoctorFrame", "doctor_frame"]
