"""Attribution maps of the flare class, scored against where the flares were.

Split like captum: algorithms apart from their use and their pictures.

- :mod:`~flarelens.explain.prepare`: a model copy captum's DeepLift and Guided Backprop
  handle exactly (the DeepLift exactness fixes).
- :mod:`~flarelens.explain.methods`: the registry of attribution methods (Guided
  Grad-CAM, Deep SHAP, Integrated Gradients); adding a method is one registered class.
- :mod:`~flarelens.explain.attributions`: :class:`Attributor`, the registered methods
  batched over instances.
- :mod:`~flarelens.explain.instances`: which predictions to explain, and their images.
- :mod:`~flarelens.explain.truth`: where the flare was on each image.
- :mod:`~flarelens.explain.scores`: localisation (mass near the flare,
  pointing game, against the random-map baseline) and faithfulness (deletion curves).
- :mod:`~flarelens.explain.storage`: the map files and the settings they were made with.
- :mod:`~flarelens.explain.summary`: scores.csv and summary.json.
- :mod:`~flarelens.explain.render`: overlays and comparison figures (matplotlib Agg).
- :mod:`~flarelens.explain.run`: the run (batching, resume, output files) and ``explain()``.
"""

from flarelens.explain.attributions import Attributor
from flarelens.explain.methods import METHODS, REGISTRY, AttributionMethod, ig_baseline, register
from flarelens.explain.prepare import prepare_model

__all__ = ["METHODS", "REGISTRY", "AttributionMethod", "Attributor", "ig_baseline", "prepare_model", "register"]
