"""JPEG 2000 conversion: reduced-resolution decode vs full decode + area average.

Writes a 4096² HMI-magnetogram JP2 in Helioviewer's container (the XML box of sunpy's real
Helioviewer JP2 with the geometry of a 4096² HMI image: NAXIS 4096, CDELT 0.504", CRPIX at
the centre, RSUN_OBS of the date) and codestream (8-bit, 9/7 irreversible wavelet, 8
decomposition levels, 8 quality layers, RPCL order, about 0.5 bit per pixel), then converts
it to SIZE² both ways with :func:`flarelens.convert.read_source`:

* ``full``: decode 4096², area-average to SIZE² (flarelens before the change);
* ``reduced``: decode at the resolution level nearest SIZE (OpenJPEG's resolution
  reduction through Pillow), off-disk pixels set to 0 from the header's disk.

Prints CPU seconds per image of each (median of ``--repeat``, one process, one thread) and
the difference on the disk: mean and largest absolute difference in gray levels, the share
of on-disk pixels that differ by more than 1 and 2 levels, and off the disk how many pixels
each path leaves non-zero.

    python benchmarks/bench_decode.py [--size 512] [--repeat 5] [--pixels sim4096.npy] [--keep DIR]

The magnetogram is :func:`flarelens.simulate.simulate_image` at 1024² upscaled to 4096²
with HMI-like pixel noise (sigma ``--noise`` gray levels, 4 by default: about 8 G) on the
disk, or a 4096² uint8 array from ``--pixels`` (e.g. ``simulate_image(t, size=4096)``,
which takes minutes to render).
"""

from __future__ import annotations

import argparse
import os
import struct
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from flarelens import geometry, images
from flarelens.convert import read_source

SUNPY_JP2 = "2023_01_31__03_39_23_200__SDO_HMI_HMI_continuum.jp2"
TIME = "2014-01-07T12:00:00"
N = 4096


def magnetogram_4096(noise: float, pixels: str | None) -> np.ndarray:
    """4096² uint8 magnetogram, off-disk exactly 0 (as Helioviewer's files)."""
    on_disk = geometry.disk_mask(TIME, N)
    if pixels:
        big = np.load(pixels).astype(np.float32)
    else:
        from flarelens.simulate import simulate_image

        small, _ = simulate_image(TIME, size=1024, seed=0)
        big = np.asarray(Image.fromarray(small.astype(np.float32), mode="F").resize((N, N), Image.BICUBIC))
    big = big + np.random.default_rng(0).normal(0.0, noise, big.shape).astype(np.float32)
    return np.where(on_disk, np.clip(np.rint(big), 1, 255), 0).astype(np.uint8)


def helioviewer_xml() -> bytes:
    """Helioviewer's XML box (from sunpy's real file) with the geometry of a 4096² HMI magnetogram."""
    import glymur
    from sunpy.data.test import get_test_filepath

    box = next(b for b in glymur.Jp2k(get_test_filepath(SUNPY_JP2)).box if b.box_id == "xml ")
    root = box.xml.getroot()
    eph = geometry.ephemeris(TIME)
    values = {
        "naxis1": N, "naxis2": N, "crpix1": (N + 1) / 2, "crpix2": (N + 1) / 2, "crval1": 0.0, "crval2": 0.0,
        "cdelt1": geometry.HMI_PLATE_SCALE, "cdelt2": geometry.HMI_PLATE_SCALE, "crota2": 0.0,
        "rsun_obs": float(eph.angular_radius), "content": "MAGNETOGRAM", "bunit": "Gauss", "date-obs": TIME,
    }
    for node in root.find("fits"):
        if node.tag.lower() in values:
            node.text = str(values[node.tag.lower()])
    return b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root)


def write_helioviewer_jp2(pixels: np.ndarray, path: Path) -> Path:
    """A JP2 file like Helioviewer's: the codestream, then an XML box inserted before it."""
    raw = path.with_suffix(".raw.jp2")
    # 8 layers from 0.01 to 0.5 bit per pixel (compression ratios for 8-bit samples).
    rates = [8 / bpp for bpp in np.geomspace(0.01, 0.5, 8)]
    Image.fromarray(pixels).save(raw, "JPEG2000", irreversible=True, num_resolutions=9, quality_mode="rates",
                                 quality_layers=rates, progression="RPCL", codeblock_size=(64, 64))
    data = raw.read_bytes()
    raw.unlink()
    xml = helioviewer_xml()
    # Top-level boxes: 4-byte big-endian length, 4-byte type; the codestream box is "jp2c".
    pos = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"jp2c":
            break
        pos += length
    box = struct.pack(">I4s", 8 + len(xml), b"xml ") + xml
    path.write_bytes(data[:pos] + box + data[pos:])
    return path


def cpu_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--noise", type=float, default=4.0, help="pixel noise on the disk, gray levels (default 4)")
    parser.add_argument("--pixels", help="a 4096² uint8 .npy magnetogram to use instead of the upscaled simulation")
    parser.add_argument("--keep", help="directory to keep the 4096² JP2 in (default: a temporary one)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_decode_"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / "HMI.m2014.01.07_12.00.00.jp2"
    if not path.exists():
        write_helioviewer_jp2(magnetogram_4096(args.noise, args.pixels), path)
    header = images.read_header(path)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, {header['NAXIS1']}², RSUN_OBS {header['RSUN_OBS']:.1f}\"")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    cx, cy, r = images.disk_geometry(header, args.size)
    yy, xx = np.mgrid[0:args.size, 0:args.size]
    dist = np.hypot(xx - cx, yy - cy)
    on = dist <= r - 0.75          # pixels wholly on the disk
    limb = (dist > r - 0.75) & (dist <= r + 0.75)
    off = dist > r + 0.75
    full = read_source(path, args.size, decode="full")
    t_full = cpu_seconds(lambda: read_source(path, args.size, decode="full"), args.repeat)
    print(f"CPU s per image (median of {args.repeat}); difference from full in gray levels: on the disk "
          f"({on.sum()} px) mean |diff|, max, share > 1 and > 2; on the limb ring ({limb.sum()} px) mean; "
          f"off the disk ({off.sum()} px) non-zero pixels")
    print(f"{'decode':>9} {'CPU s':>6} {'speed-up':>8} {'mean':>6} {'max':>4} {'> 1':>6} {'> 2':>6} {'limb':>5} "
          f"{'off>0':>5}")
    print(f"{'full':>9} {t_full:>6.3f} {1:>7.1f}x {0:>6.3f} {0:>4} {0:>6.2%} {0:>6.2%} {0:>5.2f} "
          f"{(full[off] > 0).sum():>5}")
    for decode in ("reduced", "coarsest"):
        out = read_source(path, args.size, decode=decode)
        t = cpu_seconds(lambda: read_source(path, args.size, decode=decode), args.repeat)  # noqa: B023
        diff = np.abs(full.astype(int) - out.astype(int))
        print(f"{decode:>9} {t:>6.3f} {t_full / t:>7.1f}x {diff[on].mean():>6.3f} {diff[on].max():>4} "
              f"{(diff[on] > 1).mean():>6.2%} {(diff[on] > 2).mean():>6.2%} {diff[limb].mean():>5.2f} "
              f"{(out[off] > 0).sum():>5}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
