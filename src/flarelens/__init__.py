"""flarelens: build, evaluate and explain full-disk solar flare prediction models.

The pipeline is a chain of steps, each a plain function in its own module and a
subcommand of the ``flarelens`` command:

catalog -> labels -> (download -> convert | simulate) -> train -> predict ->
evaluate / locations -> explain -> report
"""

__version__ = "0.1.0"

from flarelens.errors import FlareLensError

__all__ = ["FlareLensError", "__version__"]
