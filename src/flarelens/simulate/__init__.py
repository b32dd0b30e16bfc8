"""Synthetic full-disk HMI-like magnetograms whose active regions follow the real flare catalog.

There are no real magnetograms on the development machines and nowhere a ground truth of
"where should a model look". This package draws line-of-sight magnetograms, as Helioviewer
serves HMI (8-bit, 0 G = 128, clipped at +-250 G, off-disk 0, solar north up), in which

* every flaring active region of a GOES catalog (flares grouped by NOAA number; unnumbered
  flares joined to a numbered region nearby or grouped among themselves by position) sits
  where its flares happened, from a few days before its first flare to a few days after its
  last, turning with the Sun's differential rotation and hidden on the far side;
* a region is a bipole (leading spot and a more diffuse following polarity, Hale's polarity
  law, Joy's tilt) with plage around it, sizes of tens to ~200 arcsec and spot fields of
  2-3 kG; the field is radial, so the line of sight sees it times mu, foreshortened towards
  the limb;
* a region's *complexity* (parasitic and delta-like opposite-polarity pairs with strong
  gradients, a more compact bipole) rises ahead of its flares and is graded with flare size:
  the largest flare starting in the next 24 h sets it (C flares a little, M more, X most),
  flares one to three days ahead raise it partly, it relaxes over the 18 h after a flare;
* flare-quiet regions emerge at random at the latitudes of the activity belts (some of them
  looking somewhat complex), as distractors, and the quiet Sun carries a mixed-polarity
  network, ephemeral bipoles and noise.

So the signal is learnable (complexity tells a coming M or X flare apart) but not trivial:
complexity ramps up before the 24-h window and lingers after flares, quiet regions can be
large or moderately complex, limb regions are foreshortened, and flares without a position
have no region at all.

Everything is deterministic for a seed: a region's layout is seeded by (seed, region id),
the quiet Sun of an image by (seed, image time), so resuming or another number of workers
changes nothing. Ground truth goes to ``OUT/regions.csv`` (one row per image and region whose
centre is on the visible disk).
"""

from flarelens.simulate.evolution import Layout, RegionState, complexity, region_layout, region_states
from flarelens.simulate.regions import (
    RegionModel, build_regions, catalog_regions, flare_grade, leading_polarity, make_model, quiet_regions,
)
from flarelens.simulate.rendering import JPEG_QUALITY, add_kernels, encode_jpeg, render_field
from flarelens.simulate.run import (
    REGION_COLUMNS, SIMULATOR_VERSION, SimulationSummary, ground_truth, simulate, simulate_image,
)

__all__ = [
    "JPEG_QUALITY", "Layout", "REGION_COLUMNS", "RegionModel", "RegionState", "SIMULATOR_VERSION",
    "SimulationSummary", "add_kernels", "build_regions", "catalog_regions", "complexity", "encode_jpeg",
    "flare_grade", "ground_truth", "leading_polarity", "make_model", "quiet_regions", "region_layout",
    "region_states", "render_field", "simulate", "simulate_image",
]
