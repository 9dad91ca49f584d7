"""SAM glue: builders, pre/post-processing, decoding from a ``[SEG]`` embedding, strict checkpoint loading.

VISA prompts SAM's mask decoder with one embedding per referring expression (the projected
``[SEG]`` hidden state) instead of points or boxes (docs/sam_and_seg_head.md):

* sparse prompt = the embedding itself, ``[N, 1, D]`` (no positional encoding, no padding point);
* dense prompt  = ``prompt_encoder.no_mask_embed`` broadcast to ``[N, D, h, w]``;
* ``multimask_output=False`` (the single-mask token), then SAM's ``postprocess_masks``; a pixel
  belongs to the object where the logit is > 0.

Everything here is built on the installed ``segment_anything`` package: we import its modules and
only add what VISA needs around them. Sizes are data (:data:`SAM_SPECS`), not subclasses, the way
``segment_anything.build_sam`` does it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.transforms import ResizeLongestSide
from tqdm.auto import tqdm

from visa_lib.paths import TOY_WEIGHTS
from visa_lib.weights import CheckpointKeyError, load_strict, read_metadata, read_state_dict

#: SAM's pixel normalisation on 0-255 RGB (same numbers as ``Sam``'s defaults and VISA's dataset).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

#: The shipped toy SAM (reproducible with ``python scripts/train_toy_sam.py``).
TOY_SAM_WEIGHTS = TOY_WEIGHTS / "toy_sam.safetensors"

#: Key in a safetensors file's metadata that records the spec the weights were trained with.
_SPEC_METADATA_KEY = "visa_lib.sam_spec"

#: Prefixes under which SAM's keys appear in the checkpoints we know, tried in this order by
#: :func:`load_sam_state_dict` when ``prefix`` is not given.
KNOWN_PREFIXES = (
    "",  # sam_vit_*.pth from Meta, our toy file
    "model.visual_model.",  # merged VISA / LISA checkpoint (docs/checkpoints.md)
    "base_model.model.model.visual_model.",  # VISA before merging LoRA (PEFT wrapper)
    "visual_model.",
    "module.",  # saved from a DistributedDataParallel wrapper
)


@dataclass(frozen=True)
class SamSpec:
    """All sizes of one SAM variant.

    Attributes:
        encoder_embed_dim (int): ViT width of the image encoder.
        encoder_depth (int): number of ViT blocks.
        encoder_num_heads (int): attention heads per ViT block.
        encoder_global_attn_indexes (tuple[int, ...]): blocks with global attention; the others use
            windowed attention of ``window_size`` (this changes the ``rel_pos_*`` shapes).
        img_size (int): side S of the square, padded encoder input.
        patch_size (int): ViT patch size; the image embedding is ``S / patch_size`` on each side.
        window_size (int): window of the non-global blocks.
        prompt_embed_dim (int): D, the width of the prompt tokens, the image embedding and the mask
            decoder's transformer. VISA's ``[SEG]`` head outputs this many numbers.
        mask_in_chans (int): hidden channels of the (unused by VISA) mask-prompt encoder.
        decoder_depth (int), decoder_mlp_dim (int), decoder_num_heads (int): TwoWayTransformer sizes.
        iou_head_hidden_dim (int): hidden width of the IoU-prediction MLP.
        num_multimask_outputs (int): masks predicted in multimask mode (VISA uses the single mask).
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding, ``img_size // patch_size`` (64 for real SAM)."""
        return self.img_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-resolution logits, 4x the embedding (256 for real SAM)."""
        return 4 * self.embedding_size


#: Sizes of every SAM we build. The three real ones match ``segment_anything.build_sam``; "toy" is
#: small enough to train on one CPU core in minutes (frames 240x320 -> 192x256 inside a 256 square).
SAM_SPECS: dict[str, SamSpec] = {
    "vit_h": SamSpec(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamSpec(768, 12, 12, (2, 5, 8, 11)),
    "toy": SamSpec(
        encoder_embed_dim=96,
        encoder_depth=4,
        encoder_num_heads=4,
        encoder_global_attn_indexes=(1, 3),
        img_size=256,
        # 8-px patches: a 32 x 32 image embedding (128 x 128 low-res logits), fine enough for small
        # coins and thin parts that 16-px patches blurred; the encoder still trains on one CPU core.
        patch_size=8,
        window_size=8,
        prompt_embed_dim=64,
        decoder_mlp_dim=256,
        decoder_num_heads=4,
        iou_head_hidden_dim=64,
    ),
}


def _resolve_spec(name: str | SamSpec) -> tuple[str, SamSpec]:
    if isinstance(name, SamSpec):
        return "custom", name
    if name not in SAM_SPECS:
        raise ValueError(f"build_sam: unknown SAM size {name!r}; choose one of {sorted(SAM_SPECS)}")
    return name, SAM_SPECS[name]


def sam_prompt_dim(name_or_sam: str | SamSpec | Sam) -> int:
    """Width D of SAM's prompt embeddings (256 for real SAM, 64 for the toy): the ``[SEG]`` head's output.

    Args:
        name_or_sam (str | SamSpec | Sam): a key of :data:`SAM_SPECS`, a spec, or a built model.
    """
    if isinstance(name_or_sam, Sam):
        return int(name_or_sam.prompt_encoder.embed_dim)
    return _resolve_spec(name_or_sam)[1].prompt_embed_dim


def build_sam(
    name: str | SamSpec = "toy",
    checkpoint: str | Path | Mapping[str, torch.Tensor] | None = None,
    *,
    pretrained: bool = True,
) -> Sam:
    """Build a ``segment_anything`` ``Sam`` of a named size and (optionally) load weights strictly.

    Args:
        name (str | SamSpec): "toy", "vit_b", "vit_l", "vit_h" (see :data:`SAM_SPECS`) or a custom spec.
        checkpoint (str | Path | Mapping | None): a ``.pth``/``.bin`` (read with ``weights_only=True``)
            or ``.safetensors`` file, or an in-memory state dict; SAM keys may carry a known prefix
            such as VISA's ``model.visual_model.``. ``None``: for "toy" the shipped
            ``data_samples/weights/toy_sam.safetensors`` (unless ``pretrained=False``); for the
            real sizes random initialisation (e.g. before a VISA checkpoint fills it).
        pretrained (bool): only for "toy" with ``checkpoint=None``: ``False`` gives random weights.

    Returns:
        Sam: in eval mode, on the CPU. ``sam.spec`` holds the :class:`SamSpec` it was built from.
    """
    spec_name, spec = _resolve_spec(name)
    grid = spec.embedding_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=spec.encoder_depth,
            embed_dim=spec.encoder_embed_dim,
            img_size=spec.img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=spec.encoder_num_heads,
            patch_size=spec.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=spec.encoder_global_attn_indexes,
            window_size=spec.window_size,
            out_chans=spec.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=spec.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(spec.img_size, spec.img_size),
            mask_in_chans=spec.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=spec.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=spec.decoder_depth,
                embedding_dim=spec.prompt_embed_dim,
                mlp_dim=spec.decoder_mlp_dim,
                num_heads=spec.decoder_num_heads,
            ),
            transformer_dim=spec.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=spec.iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    sam.spec = spec  # plain attribute: lets loaders and savers check which sizes they deal with
    sam.eval()
    if checkpoint is None and spec_name == "toy" and pretrained:
        if not TOY_SAM_WEIGHTS.exists():
            raise FileNotFoundError(
                f"build_sam('toy'): shipped weights {TOY_SAM_WEIGHTS} not found; run "
                "`python scripts/train_toy_sam.py` to make them, or pass pretrained=False for random weights"
            )
        checkpoint = TOY_SAM_WEIGHTS
    if checkpoint is not None:
        state_dict = checkpoint if isinstance(checkpoint, Mapping) else read_checkpoint(checkpoint, spec)
        load_sam_state_dict(sam, state_dict)
    return sam


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def read_checkpoint(path: str | Path, expected_spec: SamSpec | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch pickle (``.pth``/``.bin``/``.pt``), safely.

    Torch pickles are read with ``torch.load(..., weights_only=True)``: a file holding anything but
    tensors and plain containers is refused instead of executing code.

    Args:
        path (str | Path): the file.
        expected_spec (SamSpec | None): if given and the safetensors metadata records the spec the
            weights were saved with, the two must agree.

    Returns:
        dict[str, torch.Tensor]: on the CPU.
    """
    if Path(path).suffix == ".safetensors" and expected_spec is not None:
        saved = read_metadata(path).get(_SPEC_METADATA_KEY)
        if saved is not None:
            saved_spec = json.loads(saved)
            wanted = json.loads(json.dumps(asdict(expected_spec)))
            if saved_spec != wanted:
                diff = {k: (saved_spec.get(k), v) for k, v in wanted.items() if saved_spec.get(k) != v}
                raise ValueError(f"{path}: saved with a different SAM spec, (file, requested) = {diff}")
    return read_state_dict(path, what="SAM checkpoint")


def _detect_prefix(state_dict: Mapping[str, torch.Tensor]) -> str:
    for prefix in KNOWN_PREFIXES:
        if f"{prefix}mask_decoder.iou_token.weight" in state_dict:
            return prefix
    sample = list(state_dict)[:5]
    raise CheckpointKeyError(
        "load_sam_state_dict: no SAM weights found (looked for 'mask_decoder.iou_token.weight' under "
        f"the prefixes {list(KNOWN_PREFIXES)}); first keys are {sample}. Pass prefix=... explicitly"
    )


def load_sam_state_dict(sam: Sam, state_dict: Mapping[str, torch.Tensor], prefix: str | None = None) -> Sam:
    """Load SAM weights strictly: every key present, no extra key, every shape equal.

    Args:
        sam (Sam): the model to fill (e.g. from ``build_sam(name, pretrained=False)``).
        state_dict (Mapping[str, Tensor]): Meta's ``sam_vit_*.pth`` layout (``image_encoder.*``,
            ``prompt_encoder.*``, ``mask_decoder.*``), possibly under a prefix.
        prefix (str | None): prefix of SAM's keys, e.g. ``"model.visual_model."`` in a merged VISA
            checkpoint, whose other keys (the LLM, ``text_hidden_fcs``) are then ignored. ``None``
            detects it among :data:`KNOWN_PREFIXES`.

    Returns:
        Sam: the same model, for chaining.

    Raises:
        CheckpointKeyError (a KeyError): missing or unexpected SAM keys, named (the first 8 and a count).
        ValueError: shape mismatches, all named with both shapes.
    """
    if prefix is None:
        prefix = _detect_prefix(state_dict)
    ours = {k: v for k, v in state_dict.items() if k.startswith(prefix)} if prefix else dict(state_dict)
    ours = {k[len(prefix) :]: v for k, v in ours.items()}
    load_strict(
        sam,
        ours,
        f"load_sam_state_dict (prefix {prefix!r})",
        "Check that the checkpoint is a SAM of the size you built (build_sam(name=...)) and that the prefix "
        "is right",
    )
    return sam


def save_sam(sam: Sam, path: str | Path) -> Path:
    """Save SAM's weights as safetensors, recording its spec in the metadata.

    Args:
        sam (Sam): a model from :func:`build_sam`.
        path (str | Path): destination ``.safetensors`` file (parent folders are created).
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt"}
    spec = getattr(sam, "spec", None)
    if spec is not None:
        metadata[_SPEC_METADATA_KEY] = json.dumps(asdict(spec))
    tensors = {k: v.detach().cpu().contiguous() for k, v in sam.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)
    return path


# ----------------------------------------------------------------------------------------------
# Pre- and post-processing
# ----------------------------------------------------------------------------------------------


def resized_size(original: tuple[int, int], img_size: int) -> tuple[int, int]:
    """SAM's longest-side resize target ``(h', w')``.

    ``(int(h*s + 0.5), int(w*s + 0.5))`` with ``s = S / max(h, w)``, as ``ResizeLongestSide``.
    """
    return ResizeLongestSide.get_preprocess_shape(int(original[0]), int(original[1]), int(img_size))


def _as_uint8_frames(frames: np.ndarray | torch.Tensor, where: str) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise TypeError(f"{where}: frames must be uint8 RGB in 0..255, got dtype {frames.dtype}")
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{where}: expected a frame [H,W,3] or frames [T,H,W,3], got shape {frames.shape}")
    return frames


def preprocess_for_sam(
    frames: np.ndarray | torch.Tensor, img_size: int = 1024
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Turn RGB frames into SAM's input exactly as VISA does (docs/sam_and_seg_head.md).

    Steps: ``ResizeLongestSide(S).apply_image`` (PIL bilinear resize to ``(h', w')``), then
    ``(x - mean) / std`` on 0-255 RGB, then zero padding on the right and bottom to ``S x S``.

    Args:
        frames (uint8 [H,W,3] or [T,H,W,3], numpy or torch): RGB frames of one size.
        img_size (int): S, the encoder's input side (``sam.image_encoder.img_size``).

    Returns:
        pixels (float32 [T,3,S,S], T=1 for a single frame), resized ``(h', w')`` (the unpadded
        region, needed by :func:`postprocess_masks`).
    """
    frames = _as_uint8_frames(frames, "preprocess_for_sam")
    transform = ResizeLongestSide(img_size)
    resized = np.stack([transform.apply_image(f) for f in frames])  # [T,h',w',3] uint8
    h, w = resized.shape[1:3]
    x = torch.from_numpy(resized).permute(0, 3, 1, 2).float()
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    x = F.pad(x, (0, img_size - w, 0, img_size - h))  # zeros after normalisation, as SAM pads
    return x, (int(h), int(w))


def postprocess_masks(
    low_res_logits: torch.Tensor,
    resized: tuple[int, int],
    original: tuple[int, int],
    img_size: int | None = None,
) -> torch.Tensor:
    """Bring decoder logits back to the frame: upsample to S, crop ``[:h', :w']``, resize to ``(H, W)``.

    Same three bilinear steps as ``Sam.postprocess_masks`` (align_corners=False), computed in float32.

    Args:
        low_res_logits (float [N,1,h,w]): the single-mask output of SAM's mask decoder.
        resized (tuple[int, int]): ``(h', w')`` from :func:`preprocess_for_sam`.
        original (tuple[int, int]): ``(H, W)`` of the frame.
        img_size (int | None): S; defaults to ``4 * h`` (SAM's decoder upsamples the embedding 4x and
            the embedding is S/16, so the low-res logits are S/4).

    Returns:
        float32 [N,H,W] logits; the mask is ``logits > 0`` (``Sam.mask_threshold``).
    """
    if low_res_logits.ndim != 4 or low_res_logits.shape[1] != 1:
        shape = tuple(low_res_logits.shape)
        raise ValueError(f"postprocess_masks: expected low-res logits [N,1,h,w], got {shape}")
    size = int(img_size) if img_size is not None else 4 * low_res_logits.shape[-2]
    if resized[0] > size or resized[1] > size:
        raise ValueError(f"postprocess_masks: resized {resized} does not fit in the {size}x{size} input")
    x = low_res_logits.float()
    if x.shape[0] == 0:
        return x.new_zeros((0, int(original[0]), int(original[1])))
    x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False)
    x = x[..., : resized[0], : resized[1]]
    x = F.interpolate(x, (int(original[0]), int(original[1])), mode="bilinear", align_corners=False)
    return x[:, 0]


def center_point(mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` of the mask pixel farthest from the background (ties: first in raster order): the
    usual "first click" of interactive segmentation.

    Arguments:
      mask (bool [H,W]): non-empty.
    """
    from scipy import ndimage

    # Pad so that an object touching the frame border still has a boundary there.
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def mask_centroid(mask: np.ndarray) -> torch.Tensor:
    """Centre of mass ``(x, y)`` of a bool [H,W] mask scaled to [-1, 1] (0, 0 if empty): float [2]."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return torch.zeros(2)
    return torch.tensor([xs.mean() / (w - 1), ys.mean() / (h - 1)], dtype=torch.float32) * 2 - 1


def point_code(sam: Sam, xy: torch.Tensor, resized: tuple[int, int]) -> torch.Tensor:
    """SAM's random Fourier features of points given as ``(x, y)`` in [-1, 1] of the frame.

    The positional part of a click's prompt token: SAM's prompt encoder embeds a foreground click as
    this plus ``prompt_encoder.point_embeddings[1]``.

    Arguments:
      xy (float [..., 2]): e.g. :func:`mask_centroid`.
      resized (tuple[int, int]): ``(h', w')`` of the frame inside SAM's padded input square.
    Returns:
      float [..., D]
    """
    encoder = sam.prompt_encoder
    size_h, size_w = encoder.input_image_size
    scale = torch.tensor([resized[1] / size_w, resized[0] / size_h], dtype=torch.float32)
    coords = ((xy.float() + 1) / 2 * scale).reshape(1, -1, 2)
    return encoder.pe_layer._pe_encoding(coords).reshape(*xy.shape[:-1], -1)


def masks_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Binary masks from logits with SAM's threshold (``logits > 0``); bool of the same shape."""
    return logits > Sam.mask_threshold


# ----------------------------------------------------------------------------------------------
# Encoding and decoding
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def encode_frames(
    sam: Sam, frames: np.ndarray | torch.Tensor, batch_size: int = 8, progress: bool = False
) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """Run SAM's (frozen) image encoder on frames, without gradients, as VISA does.

    Args:
        sam (Sam): the model; its device is used.
        frames (uint8 [H,W,3] or [T,H,W,3]): RGB frames of one size.
        batch_size (int): frames per encoder call (memory knob: real ViT-H needs ~3 GB per frame in fp32).
        progress (bool): show a tqdm bar over batches.

    Returns:
        image embeddings (float [T,D,S/16,S/16]), resized ``(h', w')``, original ``(H, W)``.
    """
    frames = _as_uint8_frames(frames, "encode_frames")
    original = (int(frames.shape[1]), int(frames.shape[2]))
    outputs = []
    resized = resized_size(original, sam.image_encoder.img_size)
    starts = range(0, len(frames), batch_size)
    for start in tqdm(starts, desc="SAM image encoder", disable=not progress):
        pixels, resized = preprocess_for_sam(frames[start : start + batch_size], sam.image_encoder.img_size)
        # the encoder's own dtype: VISA runs SAM in bf16 in a bf16 model
        dtype = sam.image_encoder.patch_embed.proj.weight.dtype
        outputs.append(sam.image_encoder(pixels.to(sam.device, dtype)))
    return torch.cat(outputs), resized, original


def dense_positional_encoding(sam: Sam) -> torch.Tensor:
    """SAM's dense positional encoding ``[1,D,h,w]``, computed in the dtype of its Gaussian matrix.

    The same numbers as ``sam.prompt_encoder.get_dense_pe()`` in float32. Stock
    ``segment_anything`` builds the coordinate grid in float32, which fails on a bf16 SAM; the SAM
    copy VISA runs builds it in the matrix's dtype, so in a bf16 model the grid, the product and
    the sines are bf16 -- as here.
    """
    matrix = sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix  # [2, D/2]
    h, w = sam.prompt_encoder.image_embedding_size
    grid = torch.ones((h, w), device=matrix.device, dtype=matrix.dtype)
    y = (grid.cumsum(dim=0) - 0.5) / h
    x = (grid.cumsum(dim=1) - 0.5) / w
    coords = 2 * torch.stack([x, y], dim=-1) - 1
    coords = 2 * np.pi * (coords @ matrix)
    return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1)[None]


def decode_low_res(
    sam: Sam,
    image_embeddings: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run the mask decoder with the single-mask output (``multimask_output=False``).

    Args:
        sam (Sam): the model.
        image_embeddings (float [1,D,h,w]): ONE image's embedding, shared by all N prompts.
        sparse_prompt_embeddings (float [N,P,D]): P prompt tokens per mask.
        dense_prompt_embeddings (float [N,D,h,w] | None): ``None`` = ``no_mask_embed`` broadcast.

    Returns:
        float [N,1,4h,4w] low-resolution logits (gradients flow to the decoder and the prompts).
    """
    if image_embeddings.ndim != 4 or image_embeddings.shape[0] != 1:
        raise ValueError(
            "decode: image_embeddings must be ONE image's embedding [1,D,h,w] (the N prompts share it), "
            f"got {tuple(image_embeddings.shape)}; loop over images yourself"
        )
    dim = sam.prompt_encoder.embed_dim
    if sparse_prompt_embeddings.ndim != 3 or sparse_prompt_embeddings.shape[-1] != dim:
        raise ValueError(
            f"decode: sparse prompts must be [N,P,{dim}] for this SAM, "
            f"got {tuple(sparse_prompt_embeddings.shape)}"
        )
    n = sparse_prompt_embeddings.shape[0]
    if dense_prompt_embeddings is None:
        h, w = image_embeddings.shape[-2:]
        no_mask = sam.prompt_encoder.no_mask_embed.weight  # [1,D]
        dense_prompt_embeddings = no_mask.reshape(1, -1, 1, 1).expand(n, -1, h, w)
    dtype = image_embeddings.dtype
    low_res, _iou = sam.mask_decoder(
        image_embeddings=image_embeddings,
        image_pe=dense_positional_encoding(sam).to(dtype),
        sparse_prompt_embeddings=sparse_prompt_embeddings.to(dtype),
        dense_prompt_embeddings=dense_prompt_embeddings.to(dtype),
        multimask_output=False,
    )
    return low_res


def decode_from_embeddings(
    sam: Sam,
    image_embeddings: torch.Tensor,
    prompt_embeddings: torch.Tensor,
    resized: tuple[int, int],
    original: tuple[int, int],
) -> torch.Tensor:
    """VISA's SAM call: one mask per prompt embedding (e.g. per ``[SEG]``), all on one image.

    sparse = ``prompt_embeddings[:, None, :]`` ``[N,1,D]``; dense = ``no_mask_embed`` broadcast to
    ``[N,D,h,w]``; ``multimask_output=False``; then :func:`postprocess_masks`.

    Args:
        sam (Sam): the model.
        image_embeddings (float [1,D,h,w]): from :func:`encode_frames` (one frame).
        prompt_embeddings (float [N,D]): N prompt embeddings, D = :func:`sam_prompt_dim`. N may be 0.
        resized (tuple[int, int]): ``(h', w')`` of the frame inside the padded square.
        original (tuple[int, int]): ``(H, W)`` of the frame.

    Returns:
        float32 [N,H,W] logits; ``> 0`` is the mask. Differentiable w.r.t. the prompts and the decoder.
    """
    if prompt_embeddings.ndim != 2:
        shape = tuple(prompt_embeddings.shape)
        raise ValueError(f"decode_from_embeddings: prompt_embeddings must be [N,D], got {shape}")
    if prompt_embeddings.shape[0] == 0:
        return torch.zeros((0, int(original[0]), int(original[1])), device=image_embeddings.device)
    low_res = decode_low_res(sam, image_embeddings, prompt_embeddings[:, None, :])
    return postprocess_masks(low_res, resized, original, sam.image_encoder.img_size)


def decode_from_prompts(
    sam: Sam,
    image_embeddings: torch.Tensor,
    resized: tuple[int, int],
    original: tuple[int, int],
    points: tuple[torch.Tensor, torch.Tensor] | None = None,
    boxes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Classic SAM prompting with points and/or boxes given in the frame's pixel coordinates.

    Args:
        sam (Sam): the model.
        image_embeddings (float [1,D,h,w]): one frame's embedding.
        resized (tuple[int, int]), original (tuple[int, int]): as in :func:`decode_from_embeddings`.
        points (tuple(float [N,P,2] xy pixels, int [N,P] labels 1=foreground 0=background) | None).
        boxes (float [N,4] ``x0,y0,x1,y1`` pixels | None).

    Returns:
        float32 [N,H,W] logits.
    """
    if points is None and boxes is None:
        raise ValueError("decode_from_prompts: give points, boxes or both")
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    device = image_embeddings.device
    sam_points = None
    if points is not None:
        coords, labels = points
        coords = transform.apply_coords_torch(coords.to(device).float(), tuple(original))
        sam_points = (coords, labels.to(device))
    sam_boxes = None
    if boxes is not None:
        sam_boxes = transform.apply_boxes_torch(boxes.to(device).float(), tuple(original))
    sparse, dense = sam.prompt_encoder(points=sam_points, boxes=sam_boxes, masks=None)
    low_res = decode_low_res(sam, image_embeddings, sparse, dense)
    return postprocess_masks(low_res, resized, original, sam.image_encoder.img_size)
