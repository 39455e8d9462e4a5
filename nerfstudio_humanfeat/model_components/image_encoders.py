"""Image encoders: ENeRF's FPN and the human-feature encoders (ResNet pyramid, DINO ViT-S/8).

Every encoder takes images in [0, 1], ``Float[Tensor, "V 3 H W"]``, and exposes ``out_channels`` and ``stride``
(the image-to-feature-map resolution ratio). Feature maps always span the whole input image, so they can be sampled
with ``projection.sample_pixel_aligned`` using full-resolution intrinsics and image size.

Pretrained weights are never downloaded: ``load_pretrained_weights`` reads an explicit file or the torch hub cache.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import timm
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_ARCH = "vit_small_patch8_224_dino"


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class FPNEncoder(nn.Module):
    """ENeRF's feature pyramid: 8 / 16 / 32 channels at full, 1/2 and 1/4 resolution.

    ``forward`` returns the maps ordered by stride (1, 2, 4); inputs in [0, 1] are rescaled to [-1, 1].
    """

    out_channels: Tuple[int, int, int] = (8, 16, 32)
    stride: Tuple[int, int, int] = (1, 2, 4)

    def __init__(self) -> None:
        super().__init__()
        c0, c1, c2 = self.out_channels
        self.conv0 = nn.Sequential(_conv_bn_relu(3, c0), _conv_bn_relu(c0, c0))
        self.conv1 = nn.Sequential(_conv_bn_relu(c0, c1, 5, 2), _conv_bn_relu(c1, c1))
        self.conv2 = nn.Sequential(_conv_bn_relu(c1, c2, 5, 2), _conv_bn_relu(c2, c2))
        self.top = nn.Conv2d(c2, c2, 1)
        self.lateral1 = nn.Conv2d(c1, c2, 1)
        self.lateral0 = nn.Conv2d(c0, c2, 1)
        self.smooth1 = nn.Conv2d(c2, c1, 3, padding=1)
        self.smooth0 = nn.Conv2d(c2, c0, 3, padding=1)

    @staticmethod
    def _upsample_add(coarse: Tensor, fine: Tensor) -> Tensor:
        return F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False) + fine

    def forward(
        self, images: Float[Tensor, "V 3 H W"]
    ) -> Tuple[Float[Tensor, "V 8 H W"], Float[Tensor, "V 16 H2 W2"], Float[Tensor, "V 32 H4 W4"]]:
        """Features at strides 1, 2 and 4."""
        conv0 = self.conv0(images * 2.0 - 1.0)
        conv1 = self.conv1(conv0)
        conv2 = self.conv2(conv1)
        feat2 = self.top(conv2)
        feat1 = self._upsample_add(feat2, self.lateral1(conv1))
        feat0 = self._upsample_add(feat1, self.lateral0(conv0))
        return self.smooth0(feat0), self.smooth1(feat1), feat2


def default_weights_filename(model: nn.Module, name: str) -> Optional[str]:
    """File name of the default pretrained checkpoint of a timm model (from its pretrained/default cfg url)."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    url = cfg.get("url") or ""
    if not url:
        try:
            url = timm.create_model(name, pretrained=False).default_cfg.get("url", "")
        except RuntimeError:
            url = ""
    return url.rsplit("/", 1)[-1] or None


def _extract_state_dict(obj: object) -> Dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "teacher", "student"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError("checkpoint does not contain a state dict of tensors")
    state = dict(obj)
    for prefix in ("module.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _check_state_dict(model: nn.Module, state: Mapping[str, Tensor], name: str, path: Path) -> None:
    expected = model.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if mismatched:
            shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in mismatched[:3]]
            details.append(f"{len(mismatched)} shape mismatches (e.g. {shapes})")
        raise ValueError(f"{name}: weights at {path} do not match the model: " + "; ".join(details))


def load_pretrained_weights(model: nn.Module, name: str, explicit_path: Optional[Union[str, Path]] = None) -> bool:
    """Loads pretrained weights into a timm model without any network access.

    Looks at ``explicit_path`` if given (it must exist), else at ``torch.hub.get_dir()/checkpoints/<file name of the
    model's default cfg url>``. Returns True when loaded; when nothing is found logs one warning and returns False.
    The key check is strict (missing, unexpected or mis-shaped keys raise ``ValueError``).
    """
    if explicit_path is not None:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{name}: pretrained weights file {path} does not exist")
        candidates = [path]
    else:
        filename = default_weights_filename(model, name)
        candidates = [Path(torch.hub.get_dir()) / "checkpoints" / filename] if filename else []
    found = [p for p in candidates if p.is_file()]
    if not found:
        where = ", ".join(str(p) for p in candidates) or "<no default file name>"
        logger.warning("%s: no pretrained weights found at %s; using random initialisation", name, where)
        return False
    path = found[0]
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{name}: could not read pretrained weights at {path}: {err}") from err
    try:
        state = _extract_state_dict(obj)
    except ValueError as err:
        raise ValueError(f"{name}: {path}: {err}") from err
    _check_state_dict(model, state, name, path)
    model.load_state_dict(state, strict=False)
    return True


def _pad_to_multiple(images: Tensor, multiple: int) -> Tensor:
    height, width = images.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return images
    return F.pad(images, (0, pad_w, 0, pad_h))


def _crop_to_image(features: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int], stride: int) -> Tensor:
    """Restricts a feature map computed on a padded image to the original image extent.

    Exact slicing when the image size is a multiple of ``stride``; otherwise bilinear resampling onto a
    ceil(H / stride) x ceil(W / stride) grid that spans exactly the image.
    """
    height, width = image_size
    out_h, out_w = math.ceil(height / stride), math.ceil(width / stride)
    if height % stride == 0 and width % stride == 0:
        return features[..., :out_h, :out_w]
    pad_h, pad_w = padded_size
    ys = (torch.arange(out_h, device=features.device, dtype=features.dtype) + 0.5) * (height / out_h)
    xs = (torch.arange(out_w, device=features.device, dtype=features.dtype) + 0.5) * (width / out_w)
    grid_y, grid_x = torch.meshgrid(ys * 2.0 / pad_h - 1.0, xs * 2.0 / pad_w - 1.0, indexing="ij")
    grid = torch.stack([grid_x, grid_y], dim=-1).expand(features.shape[0], out_h, out_w, 2)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)


class _HumanEncoder(nn.Module):
    """Shared ImageNet normalisation and freeze switch."""

    out_channels: int
    stride: int

    def __init__(self, freeze: bool) -> None:
        super().__init__()
        self.freeze = freeze
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _apply_freeze(self) -> None:
        if self.freeze:
            for param in self.parameters():
                param.requires_grad_(False)
            super().train(False)

    def train(self, mode: bool = True) -> "_HumanEncoder":
        """Frozen encoders stay in eval mode (BatchNorm statistics fixed)."""
        return super().train(mode and not self.freeze)

    def normalise(self, images: Tensor) -> Tensor:
        return (images - self.mean) / self.std

    def encode(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, images: Float[Tensor, "V 3 H W"]) -> Float[Tensor, "V C h w"]:
        """Feature map of images in [0, 1]."""
        if self.freeze:
            with torch.no_grad():
                return self.encode(images)
        return self.encode(images)


class ResNetPyramidEncoder(_HumanEncoder):
    """PixelNeRF-style ResNet pyramid: conv1 and layer1..layer3 resized to H/2 and concatenated (512 channels).

    Args:
        arch: "resnet18" or "resnet34" (timm, built with ``pretrained=False``).
        pretrained_path: ImageNet checkpoint (torchvision / timm format); None looks in the torch hub cache.
        freeze: frozen (no gradients, eval-mode BatchNorm) or fine-tuned.
    """

    stride = 2

    def __init__(
        self,
        arch: Literal["resnet18", "resnet34"] = "resnet34",
        pretrained_path: Optional[Union[str, Path]] = None,
        freeze: bool = False,
    ) -> None:
        super().__init__(freeze)
        if arch not in ("resnet18", "resnet34"):
            raise ValueError(f"unsupported ResNet arch {arch!r}")
        backbone = timm.create_model(arch, pretrained=False)
        self.pretrained_loaded = load_pretrained_weights(backbone, arch, pretrained_path)
        self.arch = arch
        self.conv1 = backbone.conv1
        self.bn1 = backbone.bn1
        self.act1 = backbone.act1
        self.maxpool = backbone.maxpool
        self.layer1 = backbone.layer1
        self.layer2 = backbone.layer2
        self.layer3 = backbone.layer3
        self.out_channels = 64 + 64 + 128 + 256
        self._apply_freeze()

    def encode(self, images: Tensor) -> Tensor:
        image_size = (images.shape[-2], images.shape[-1])
        x = _pad_to_multiple(self.normalise(images), 16)
        padded = (x.shape[-2], x.shape[-1])
        x = self.act1(self.bn1(self.conv1(x)))
        levels = [x]
        x = self.layer1(self.maxpool(x))
        levels.append(x)
        x = self.layer2(x)
        levels.append(x)
        levels.append(self.layer3(x))
        size = levels[0].shape[-2:]
        levels = [levels[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in levels[1:]]
        return _crop_to_image(torch.cat(levels, dim=1), padded, image_size, self.stride)


class DinoViTEncoder(_HumanEncoder):
    """DINO ViT-S/8 (timm ``vit_small_patch8_224_dino``) patch tokens of chosen blocks as a feature map at H/8.

    Any H, W: the input is zero-padded (after ImageNet normalisation) to a multiple of 8, the position embedding
    is bicubically interpolated to the token grid, and the map is restricted back to the image extent.

    Args:
        pretrained_path: DINO checkpoint (official ``dino_deitsmall8_pretrain.pth`` keys); None looks in the hub cache.
        freeze: frozen (no gradients) or fine-tuned.
        blocks: 1-based transformer block numbers (the paper's 9th and 11th = ``blocks[8]``, ``blocks[10]``).
        combine: "concat" (default, 384 x len(blocks) channels, as the paper's text says the features are
            concatenated) or "mean" (384 channels, the size the paper reports).
        apply_norm: apply the final LayerNorm to each selected block output (as DINO's ``get_intermediate_layers``).
    """

    stride = 8

    def __init__(
        self,
        pretrained_path: Optional[Union[str, Path]] = None,
        freeze: bool = False,
        blocks: Sequence[int] = (9, 11),
        combine: Literal["concat", "mean"] = "concat",
        apply_norm: bool = True,
    ) -> None:
        super().__init__(freeze)
        backbone = timm.create_model(DINO_ARCH, pretrained=False, num_classes=0)
        self.pretrained_loaded = load_pretrained_weights(backbone, DINO_ARCH, pretrained_path)
        depth = len(backbone.blocks)
        if not blocks or any(b < 1 or b > depth for b in blocks):
            raise ValueError(f"blocks must be 1-based block numbers in [1, {depth}], got {tuple(blocks)}")
        if combine not in ("concat", "mean"):
            raise ValueError(f"combine must be 'concat' or 'mean', got {combine!r}")
        self.block_indices: List[int] = [b - 1 for b in blocks]
        self.combine = combine
        self.apply_norm = apply_norm
        self.patch_size = backbone.patch_embed.proj.kernel_size[0]
        self.patch_proj = backbone.patch_embed.proj
        self.cls_token = backbone.cls_token
        self.pos_embed = backbone.pos_embed
        self.blocks = nn.ModuleList(list(backbone.blocks)[: max(blocks)])
        self.norm = backbone.norm if apply_norm else nn.Identity()
        self.embed_dim = backbone.embed_dim
        self.out_channels = self.embed_dim * (len(self.block_indices) if combine == "concat" else 1)
        self._apply_freeze()

    def interpolated_pos_embed(self, grid_h: int, grid_w: int) -> Tensor:
        """Position embedding (1, 1 + grid_h * grid_w, C) for a token grid of any size."""
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        side = int(round(math.sqrt(patch_pos.shape[1])))
        if (grid_h, grid_w) == (side, side):
            return self.pos_embed
        patch_pos = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)

    def encode(self, images: Tensor) -> Tensor:
        image_size = (images.shape[-2], images.shape[-1])
        x = _pad_to_multiple(self.normalise(images), self.patch_size)
        padded = (x.shape[-2], x.shape[-1])
        x = self.patch_proj(x)
        batch, _, grid_h, grid_w = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), x], dim=1) + self.interpolated_pos_embed(grid_h, grid_w)
        outputs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.block_indices:
                tokens = self.norm(x)[:, 1:]
                outputs.append(tokens.transpose(1, 2).reshape(batch, self.embed_dim, grid_h, grid_w))
        features = torch.cat(outputs, dim=1) if self.combine == "concat" else torch.stack(outputs).mean(dim=0)
        return _crop_to_image(features, padded, image_size, self.patch_size)


HumanEncoderKind = Literal["resnet18", "resnet34", "dino_vits8"]


def build_human_encoder(
    kind: HumanEncoderKind,
    pretrained_path: Optional[Union[str, Path]] = None,
    freeze: bool = False,
    dino_blocks: Sequence[int] = (9, 11),
    dino_combine: Literal["concat", "mean"] = "concat",
) -> Union[ResNetPyramidEncoder, DinoViTEncoder]:
    """Human-feature encoder f_h by name; the result has ``out_channels`` and ``stride``."""
    if kind in ("resnet18", "resnet34"):
        return ResNetPyramidEncoder(arch=kind, pretrained_path=pretrained_path, freeze=freeze)
    if kind == "dino_vits8":
        return DinoViTEncoder(pretrained_path=pretrained_path, freeze=freeze, blocks=dino_blocks, combine=dino_combine)
    raise ValueError(f"unknown human encoder kind {kind!r}")
