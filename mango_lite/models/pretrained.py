"""Encoders that start from pretrained weights the user supplies: never downloaded.

The paper's baselines (TokenFusion, GeminiFusion) fuse features of ImageNet-pretrained SegFormer (MiT)
backbones, and a movie-plot encoder is a pretrained language model. mango_lite cannot ship or fetch such
weights; these classes load them from a local file or folder the user points to, and raise
:class:`~mango_lite.errors.MangoLiteError` naming what is missing otherwise.

Every image encoder here maps ``(B, in_channels, H, W)`` to ``(B, width, H / stride, W / stride)`` like
:class:`~mango_lite.models.encoders.ConvEncoder`: the backbone's feature level whose reduction equals
``stride``, a 1x1 projection to ``width`` and the same :class:`FlowStandardize` (the flow's data must not be
rescalable by a learnable affine, see :mod:`mango_lite.models.encoders`). A pretrained backbone expects three
input channels; a one-channel modality (depth, shading, edges) is repeated to three channels, as TokenFusion
and CEN feed depth to an RGB-pretrained backbone. The text encoder mean-pools a Hugging Face model's last
hidden states into one vector per plot and spreads it onto the token grid with a trainable
:class:`~mango_lite.models.text.VectorEncoder`.

``pretrained_parameters()`` of each encoder lists the backbone's parameters, so the training engine can give
them their own learning rate (the fine-tuning rate) and the new layers a larger one
(:func:`split_pretrained_parameters`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import MangoLiteError
from ..presets import IMAGE_ENCODERS
from .encoders import FlowStandardize

__all__ = [
    "IMAGE_ENCODERS",
    "PretrainedImageEncoder",
    "TimmEncoder",
    "SegformerEncoder",
    "PretrainedTextEncoder",
    "build_image_encoder",
    "split_pretrained_parameters",
]



def _import_optional(module: str, what: str, extra: str = "pretrained"):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise MangoLiteError(
            f"{what} needs the optional package {module.split('.')[0]!r}, which could not be imported ({exc}); "
            f"pip install 'mango_lite[{extra}]', or use encoder='conv' (trained from scratch)"
        ) from exc


def _existing(path: str | os.PathLike | None, what: str, kind: str, option: str = "encoder_weights") -> Path:
    if path is None:
        flag = "--" + option.replace("_", "-")
        alternative = ("--encoder conv to train the encoders from scratch" if option == "encoder_weights"
                       else "the default text encoder")
        raise MangoLiteError(f"{what} needs local pretrained weights: pass the path of a {kind} as {option} "
                             f"({flag} on the command line), or use {alternative}; mango_lite never downloads "
                             "weights")
    p = Path(path)
    ok = p.is_dir() if kind.endswith("folder") else p.is_file()
    if not ok:
        raise MangoLiteError(f"{what}: {kind} {str(p)!r} does not exist. mango_lite never downloads weights; "
                             f"pass a local {kind}")
    return p


class PretrainedImageEncoder(nn.Module):
    """Shared tail of the pretrained image encoders: channel adaptation, level choice, 1x1, standardise.

    Subclasses set ``self.backbone``, ``self.reductions`` / ``self.level_channels`` (the backbone's feature
    levels) and implement :meth:`features` (``x (B, 3, H, W) -> (B, C_level, H/stride, W/stride)``)."""

    backbone: nn.Module
    reductions: list[int]
    level_channels: list[int]

    def _finish(self, in_channels: int, width: int, stride: int, name: str) -> None:
        if in_channels not in (1, 3):
            raise MangoLiteError(
                f"{type(self).__name__}: a pretrained backbone reads 3 channels (a 1-channel modality is repeated "
                f"to 3); got in_channels={in_channels}"
            )
        if stride not in self.reductions:
            raise MangoLiteError(
                f"{type(self).__name__}: {name!r} has feature reductions {self.reductions}; none equals "
                f"encoder_stride {stride}"
            )
        self.in_channels = in_channels
        self.width = width
        self.stride = stride
        self.level = self.reductions.index(stride)
        self.proj = nn.Conv2d(self.level_channels[self.level], width, 1)
        self.standardize = FlowStandardize(width)

    def features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def pretrained_parameters(self) -> Iterator[nn.Parameter]:
        """The backbone's trainable parameters (those loaded from the user's weights)."""
        return (p for p in self.backbone.parameters() if p.requires_grad)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected an image batch (B, {self.in_channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.standardize(self.proj(self.features(x)))


class TimmEncoder(PretrainedImageEncoder):
    """A ``timm`` backbone (``features_only``) with weights from a local file (a state_dict saved with
    ``torch.save`` or a safetensors file), e.g. ``name="mit_b2"`` or ``"resnet50"``.

    ``(B, in_channels, H, W) -> (B, width, H/stride, W/stride)``. Raises :class:`MangoLiteError` if timm is
    missing, the file does not exist, fewer than 90 % of the model's tensors are in it with their shapes (the
    classifier head of an ImageNet checkpoint is ignored), or no level has reduction ``stride``."""

    def __init__(self, name: str, weights_path: str | os.PathLike | None, in_channels: int, width: int,
                 stride: int = 8) -> None:
        super().__init__()
        timm = _import_optional("timm", "TimmEncoder")
        path = _existing(weights_path, "TimmEncoder", "weights file")
        model = timm.create_model(name, pretrained=False, features_only=True, in_chans=3)
        self.reductions = [int(r) for r in model.feature_info.reduction()]
        self.level_channels = [int(c) for c in model.feature_info.channels()]
        state = _load_state(path)
        own = model.state_dict()
        matched = [k for k in own if k in state and tuple(state[k].shape) == tuple(own[k].shape)]
        if len(matched) < 0.9 * len(own):  # a partial load would train mostly from scratch, silently
            missing = [k for k in own if k not in set(matched)]
            raise MangoLiteError(
                f"TimmEncoder: only {len(matched)} of the {len(own)} tensors of timm model {name!r} are in "
                f"{str(path)!r} with the right shape (first missing: {missing[:5]}); is it a checkpoint of this model?"
            )
        model.load_state_dict({k: state[k] for k in matched}, strict=False)
        self.matched = len(matched)  # tensors loaded (the rest keep timm's initialisation)
        self.backbone = model
        self._finish(in_channels, width, stride, name)

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)[self.level]


def _load_state(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        st = _import_optional("safetensors.torch", "loading a .safetensors file")
        state = st.load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise MangoLiteError(f"{str(path)!r} does not hold a state_dict (got {type(state).__name__})")
    return state


class SegformerEncoder(PretrainedImageEncoder):
    """SegFormer's Mix Transformer (MiT-B0 ... B5) through ``transformers``, from a local folder holding
    ``config.json`` and the weights (what ``SegformerModel.save_pretrained`` writes, e.g. a copy of the
    ``nvidia/mit-b2`` repository). The four stages have reductions 4, 8, 16 and 32.

    ``(B, in_channels, H, W) -> (B, width, H/stride, W/stride)``."""

    def __init__(self, folder: str | os.PathLike | None, in_channels: int, width: int, stride: int = 8) -> None:
        super().__init__()
        tf = _import_optional("transformers", "SegformerEncoder")
        path = _existing(folder, "SegformerEncoder", "model folder")
        try:
            model, info = tf.SegformerModel.from_pretrained(str(path), local_files_only=True, output_loading_info=True)
        except Exception as exc:  # noqa: BLE001 - every loading failure is reported the same way
            raise MangoLiteError(f"SegformerEncoder: could not load a SegFormer model from {str(path)!r}: {exc}") from exc
        missing = list(info.get("missing_keys") or []) + list(info.get("mismatched_keys") or [])
        if missing:  # transformers would initialise them at random and only log it
            raise MangoLiteError(f"SegformerEncoder: the weights in {str(path)!r} miss {len(missing)} tensors of the "
                                 f"model (first: {[str(k) for k in missing[:5]]}); is it a MiT checkpoint?")
        cfg = model.config
        if int(cfg.num_channels) != 3:
            raise MangoLiteError(f"SegformerEncoder: {str(path)!r} reads {cfg.num_channels} channels, expected 3")
        self.reductions = [int(torch.prod(torch.tensor(cfg.strides[: i + 1]))) for i in range(len(cfg.strides))]
        self.level_channels = [int(c) for c in cfg.hidden_sizes]
        self.backbone = model
        self._finish(in_channels, width, stride, path.name)
        # stages past the one used would cost time and leave parameters without a gradient: drop them, so
        # the last stage kept is the level used (transformers >= 5 holds ``stages``; 4.x ``encoder.block`` ...)
        keep = self.level + 1
        if hasattr(model, "stages"):
            model.stages = nn.ModuleList(list(model.stages)[:keep])
        else:
            enc = model.encoder
            for name in ("patch_embeddings", "block", "layer_norm"):
                setattr(enc, name, nn.ModuleList(list(getattr(enc, name))[:keep]))

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(pixel_values=x).last_hidden_state


class PretrainedTextEncoder(nn.Module):
    """A Hugging Face text model from a local folder (``config.json``, weights, tokenizer files: e.g. a copy
    of ``sentence-transformers/all-MiniLM-L6-v2`` or ``bert-base-uncased``), mean-pooled over the words,
    then a trainable :class:`~mango_lite.models.text.VectorEncoder` onto the ``h x w`` token grid.

    ``texts: list[str] -> (B, width, h, w)``. ``finetune=False`` (default) keeps the language model frozen
    (in eval mode, no gradient), like a sentence embedder; ``True`` trains it at the pretrained learning rate.
    ``max_length``: words kept per plot (longer plots are truncated)."""

    def __init__(self, folder: str | os.PathLike | None, width: int, tokens: int,
                 grid: tuple[int, int] | None = None, finetune: bool = False, max_length: int = 256) -> None:
        super().__init__()
        from .text import VectorEncoder

        tf = _import_optional("transformers", "PretrainedTextEncoder")
        path = _existing(folder, "PretrainedTextEncoder", "model folder", option="text_model")
        try:
            self.tokenizer = tf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = tf.AutoModel.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise MangoLiteError(f"PretrainedTextEncoder: could not load a text model and tokenizer from "
                                 f"{str(path)!r}: {exc}") from exc
        self.backbone = model
        self.finetune = bool(finetune)
        self.max_length = int(max_length)
        self.dim = int(model.config.hidden_size)
        if not self.finetune:
            self.backbone.requires_grad_(False)
        self.proj = VectorEncoder(self.dim, width, tokens, grid)

    def train(self, mode: bool = True) -> PretrainedTextEncoder:
        super().train(mode)
        if not self.finetune:  # a frozen model stays in eval mode (no dropout)
            self.backbone.eval()
        return self

    def pretrained_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.backbone.parameters() if p.requires_grad)

    def embed(self, texts: Sequence[str]) -> Tensor:
        """Mean of the last hidden states over the non-padding tokens: ``(B, dim)`` float32."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError("PretrainedTextEncoder: expected a list of plot strings")
        device = self.proj.lift.weight.device
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            hidden = self.backbone(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, texts: Sequence[str]) -> Tensor:
        return self.proj(self.embed(texts))


def build_image_encoder(kind: str, in_channels: int, width: int, stride: int, depth: int = 1,
                        weights: str | os.PathLike | None = None, name: str | None = None) -> nn.Module:
    """The image encoder ``kind`` (one of :data:`IMAGE_ENCODERS`): ``conv`` (trained from scratch, ignores
    ``weights``), ``timm`` (``name`` = timm model name, ``weights`` = file) or ``segformer`` (``weights`` =
    folder)."""
    from .encoders import ConvEncoder

    kind = str(kind).lower()
    if kind == "conv":
        if weights is not None:
            raise MangoLiteError(f"encoder_weights {str(weights)!r} given, but encoder='conv' trains its encoders from "
                                 "scratch; choose encoder='segformer' or 'timm' (--encoder) to load them")
        return ConvEncoder(in_channels, width, stride, depth)
    if kind == "timm":
        if not name:
            raise MangoLiteError("encoder='timm' needs encoder_name, the timm model name (e.g. 'mit_b2')")
        return TimmEncoder(name, weights, in_channels, width, stride)
    if kind == "segformer":
        return SegformerEncoder(weights, in_channels, width, stride)
    raise MangoLiteError(f"encoder must be one of {IMAGE_ENCODERS}, got {kind!r}")


def split_pretrained_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(pretrained, new)``: the trainable parameters of every pretrained backbone in ``model`` and all
    other trainable parameters, each once, in module order."""
    pre_ids: set[int] = set()
    for m in model.modules():
        fn = getattr(m, "pretrained_parameters", None)
        if callable(fn) and m is not model:
            pre_ids.update(id(p) for p in fn())
    pre: list[nn.Parameter] = []
    new: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (pre if id(p) in pre_ids else new).append(p)
    return pre, new
