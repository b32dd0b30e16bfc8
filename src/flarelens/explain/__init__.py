"""Attribution maps of the flare class, scored against where the flares were.

- :mod:`~flarelens.explain.attributions`: Guided Grad-CAM, Deep SHAP, Integrated Gradients
  through captum, batched over instances.
- :mod:`~flarelens.explain.scores`: localisation (mass within r degrees of the flare,
  pointing game, against the random-map baseline) and faithfulness (deletion curves).
- :mod:`~flarelens.explain.render`: overlays and comparison figures (matplotlib Agg).
- :mod:`~flarelens.explain.run`: selection, batching, resume and the output files.
"""

from flarelens.explain.attributions import METHODS, Attributor, ig_baseline, prepare_model

__all__ = ["METHODS", "Attributor", "ig_baseline", "prepare_model"]
