"""One self-contained HTML page telling the whole story of a run directory.

The page is built only from files found under the run directory — labels.csv, each
training run's history.csv and config.json, predictions*.csv, explanation outputs — so a
demo run and a real-data run on a GPU cluster produce the same page. Every number on it
is recomputed from those files by the library (``flarelens.evaluate``), figures are
embedded as base64 PNG, and no script runs on the page, so it reads offline as it is.

Modules: :mod:`~flarelens.report.collect` (what the directory holds and what is wrong
with it), one module per section (:mod:`~flarelens.report.skill`,
:mod:`~flarelens.report.limb`, :mod:`~flarelens.report.explanations`,
:mod:`~flarelens.report.training`), :mod:`~flarelens.report.figures` (the PNGs),
:mod:`~flarelens.report.markup` (HTML pieces) and :mod:`~flarelens.report.page` (the page).
"""

from flarelens.report.page import build_report
from flarelens.report.skill import STUDY_REFERENCE

__all__ = ["build_report", "STUDY_REFERENCE"]
