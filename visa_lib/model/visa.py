"""The VISA model: a causal LLM reading merged visual tokens, a ``[SEG]`` head, and SAM.

Forward pass of one sample (one video clip, N expressions; docs/prompt.md, docs/sam_and_seg_head.md)::

    frames uint8 [T+1,H,W,3] --vision tower--> [T+1,256,C] --spatial merge--> [T+1,112,C]
                             --projector--> [T+1,112,H]   (frozen up to here)
    prompt ids [N,L] with one -200 per <image> slot --expand--> inputs_embeds [N,L',H]
    LLM --> last hidden states [N,L',H] (post-norm)
    [SEG] at expanded position p  ->  h = hidden[p-1]  ("shift by one": the state that predicts [SEG])
    seg_head: Linear(H,H) - ReLU - Linear(H,D) - Dropout(0)  ->  prompt embeddings [N,D]
    SAM mask decoder on the TARGET frame's image embedding (shared by the N prompts) -> logits [N,H,W]

The position of ``[SEG]`` is found in the expanded sequence built from the real number of visual
tokens per image, not from a hard-coded offset (VISA's ``111 * num_images``). ``build_visa`` (in
:mod:`visa_lib.model.build`) assembles a ready model for either rung.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import nn

from visa_lib.model import sam as sam_glue
from visa_lib.model.configs import VisaConfig
from visa_lib.model.merge import spatial_merge
from visa_lib.model.prompts import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    build_conversation,
    build_prompt,
    build_question,
)
from visa_lib.model.tokenizer import build_labels, tokenize_prompt


class TokenMerger(nn.Module):
    """Chat-UniVi's parameter-free spatial merge as a module: ``[T,N,C] -> [T,sum(cluster_nums),C]``.

    Arguments:
      cluster_nums (Sequence[int]): clusters per level (64, 32, 16 in VISA).
      ks (Sequence[int]): k of each level's DPC-KNN density.
      seed (int | None): seed of the tie-break noise, re-applied on every call so the same frame
        always merges the same way; None leaves it to the global RNG.
      dtype (torch.dtype | None): None merges in the tokens' own dtype, as VISA does (distances in
        float32, cluster means in bf16 for a bf16 model, each level clustering the previous level's
        rounded output); ``torch.float32`` merges in float32 and casts the result back.
    """

    def __init__(
        self,
        cluster_nums: Sequence[int],
        ks: Sequence[int],
        seed: int | None = 0,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.cluster_nums = tuple(int(c) for c in cluster_nums)
        self.ks = tuple(int(k) for k in ks)
        self.seed = seed
        self.dtype = dtype

    @property
    def tokens_per_frame(self) -> int:
        return sum(self.cluster_nums)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Merge patch tokens ``x`` (float ``[T,N,C]``) into ``[T,sum(cluster_nums),C]`` (same dtype)."""
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
        tokens = x if self.dtype is None else x.to(self.dtype)
        merged = spatial_merge(tokens, self.cluster_nums, self.ks, generator=generator)
        return merged.to(x.dtype)


def build_seg_head(hidden_size: int, prompt_dim: int) -> nn.Sequential:
    """VISA's ``text_hidden_fcs[0]``: ``Linear(H,H) - ReLU - Linear(H,D) - Dropout(0.0)``.

    Arguments:
      hidden_size (int): H, the LLM width.
      prompt_dim (int): D, SAM's prompt width (256 real, 64 toy).
    """
    return nn.Sequential(
        nn.Linear(hidden_size, hidden_size),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_size, prompt_dim),
        nn.Dropout(0.0),
    )


@dataclass
class SamImage:
    """SAM's encoding of the target frame, shared by every expression asked about it.

    Attributes:
      embedding (Tensor): float ``[1,D,h,w]`` image embedding.
      resized (tuple[int, int]): ``(h', w')`` of the frame inside SAM's padded square.
      original (tuple[int, int]): ``(H, W)`` of the frame; masks come back at this size.
    """

    embedding: torch.Tensor
    resized: tuple[int, int]
    original: tuple[int, int]


@dataclass
class Conversations:
    """Tokenized conversations of one sample, right-padded.

    Attributes:
      input_ids (Tensor): long ``[N,L]``, ``-200`` at each ``<image>`` slot, pad id after the end.
      attention_mask (Tensor): bool ``[N,L]``.
      labels (Tensor | None): long ``[N,L]``, ``-100`` except on the answer tokens.
      prompts (list[str]): the prompt strings.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    prompts: list[str]


@dataclass
class MultimodalInputs:
    """The LLM's input after every image slot is replaced by its visual tokens.

    Attributes:
      inputs_embeds (Tensor): ``[N,L',H]``.
      attention_mask (Tensor): bool ``[N,L']`` (right padding).
      expanded_ids (Tensor): long ``[N,L']``; text ids, ``-200`` at every visual token, pad id at padding.
      labels (Tensor | None): long ``[N,L']`` with ``-100`` on visual tokens and padding.
      image_spans (list[list[tuple[int, int]]]): per row, ``(start, end)`` of each image's tokens.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    expanded_ids: torch.Tensor
    labels: torch.Tensor | None
    image_spans: list[list[tuple[int, int]]]


@dataclass
class VisaOutput:
    """Everything one forward pass produces (M = number of ``[SEG]`` tokens, usually N).

    Attributes:
      mask_logits (Tensor): float32 ``[M,H,W]`` at the target frame's size; mask = logits > 0.
      seg_embeddings (Tensor): ``[M,D]`` SAM prompt embeddings.
      seg_hidden (Tensor): ``[M,H]`` last-layer hidden states read before each ``[SEG]``.
      seg_rows (Tensor): long ``[M]``, conversation of each ``[SEG]``.
      seg_positions (Tensor): long ``[M]``, expanded position p-1 the hidden state was read at.
      ce_loss (Tensor | None): token cross-entropy on the labels (None without labels).
      inputs (MultimodalInputs): the expanded LLM input (for inspection and drawing).
    """

    mask_logits: torch.Tensor
    seg_embeddings: torch.Tensor
    seg_hidden: torch.Tensor
    seg_rows: torch.Tensor
    seg_positions: torch.Tensor
    ce_loss: torch.Tensor | None
    inputs: MultimodalInputs


@dataclass
class GenerationResult:
    """Free generation: the answer text and, when it holds ``[SEG]``, the masks it points to."""

    text: str
    token_ids: list[int]
    mask_logits: torch.Tensor | None


def _frames_uint8(frames: np.ndarray | torch.Tensor, where: str) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"{where}: frames must be uint8 RGB [T,H,W,3] (or one [H,W,3]), got {frames.dtype} "
            f"{tuple(frames.shape)}; convert with np.asarray(frames, dtype=np.uint8)"
        )
    return frames


def unwrap_causal_lm(llm: nn.Module) -> nn.Module:
    """The ``*ForCausalLM`` inside a PEFT wrapper (or ``llm`` itself); LoRA layers stay injected."""
    get_base = getattr(llm, "get_base_model", None)
    return get_base() if callable(get_base) else llm


class VisaModel(nn.Module):
    """VISA assembled from its parts (composition here, assembly in ``build_visa``).

    Arguments:
      llm (nn.Module): a Hugging Face causal LM (``LlamaForCausalLM``, possibly PEFT-wrapped) whose
        vocabulary already holds ``[SEG]``.
      vision_tower (nn.Module): frozen; ``.preprocess(uint8 [T,H,W,3]) -> [T,3,S,S]``,
        ``forward(pixels) -> [T,P,C]``, ``.hidden_size``.
      merger (TokenMerger): ``[T,P,C] -> [T,n,C]``.
      projector (nn.Linear): C -> H (Chat-UniVi's ``mm_projector``; frozen in VISA).
      seg_head (nn.Sequential): H -> D (VISA's ``text_hidden_fcs[0]``).
      sam (Sam): ``segment_anything`` model; its image encoder is frozen.
      tokenizer: the tokenizer holding ``[SEG]``.
      seg_token_id (int): id of ``[SEG]``.
      config (VisaConfig): the sizes it was built from.
    """

    def __init__(
        self,
        llm: nn.Module,
        vision_tower: nn.Module,
        merger: TokenMerger,
        projector: nn.Linear,
        seg_head: nn.Sequential,
        sam: Sam,
        tokenizer,
        seg_token_id: int,
        config: VisaConfig,
    ) -> None:
        super().__init__()
        self.llm = llm
        self.vision_tower = vision_tower
        self.merger = merger
        self.projector = projector
        self.seg_head = seg_head
        self.sam = sam
        self.tokenizer = tokenizer
        self.seg_token_id = int(seg_token_id)
        self.config = config
        self._check_shapes()

    # ------------------------------------------------------------------ properties and checks
    def _check_shapes(self) -> None:
        hidden = self.hidden_size
        if self.projector.in_features != self.vision_tower.hidden_size:
            raise ValueError(
                f"VisaModel: projector takes {self.projector.in_features} features but the vision tower "
                f"gives {self.vision_tower.hidden_size}; build them from the same VisaConfig"
            )
        if self.projector.out_features != hidden:
            raise ValueError(
                f"VisaModel: projector outputs {self.projector.out_features}, LLM width is {hidden}"
            )
        if self.seg_head[0].in_features != hidden or self.seg_head[2].out_features != self.prompt_dim:
            raise ValueError(
                f"VisaModel: seg_head maps {self.seg_head[0].in_features}->{self.seg_head[2].out_features}, "
                f"expected {hidden}->{self.prompt_dim} (LLM width -> SAM prompt width)"
            )
        vocab = self.causal_lm.get_input_embeddings().num_embeddings
        if not 0 <= self.seg_token_id < vocab:
            raise ValueError(
                f"VisaModel: [SEG] id {self.seg_token_id} is outside the LLM vocabulary ({vocab} rows); "
                "call llm.resize_token_embeddings(len(tokenizer)) after adding [SEG]"
            )

    @property
    def causal_lm(self) -> nn.Module:
        """The ``*ForCausalLM`` (PEFT wrapper removed; LoRA layers still active)."""
        return unwrap_causal_lm(self.llm)

    @property
    def hidden_size(self) -> int:
        """H, the LLM width."""
        return int(self.causal_lm.get_input_embeddings().embedding_dim)

    @property
    def prompt_dim(self) -> int:
        """D, SAM's prompt width."""
        return int(self.sam.prompt_encoder.embed_dim)

    @property
    def tokens_per_frame(self) -> int:
        """Visual tokens per ``<image>`` slot."""
        return self.merger.tokens_per_frame

    @property
    def device(self) -> torch.device:
        return self.projector.weight.device

    def train(self, mode: bool = True) -> VisaModel:
        """Frozen parts (vision tower, SAM image and prompt encoders) stay in eval mode."""
        super().train(mode)
        self.vision_tower.train(False)
        self.sam.image_encoder.train(False)
        self.sam.prompt_encoder.train(False)
        return self

    # ------------------------------------------------------------------ encoders (frozen)
    @torch.no_grad()
    def encode_images(self, frames: np.ndarray | torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Frames -> merged visual tokens (frozen; no gradients).

        Arguments:
          frames (uint8 [T,H,W,3]): RGB frames (references then target, as the prompt orders them).
          batch_size (int): frames per vision-tower call (memory knob).
        Returns:
          Tensor: ``[T, tokens_per_frame, C]`` on the model's device (C = vision width).
        """
        frames = _frames_uint8(frames, "VisaModel.encode_images")
        out = []
        for start in range(0, len(frames), batch_size):
            pixels = self.vision_tower.preprocess(frames[start : start + batch_size])
            patches = self.vision_tower(pixels.to(self.device))
            out.append(self.merger(patches))
        return torch.cat(out)

    @torch.no_grad()
    def encode_sam_image(self, frame: np.ndarray | torch.Tensor) -> SamImage:
        """The target frame through SAM's frozen image encoder.

        Arguments:
          frame (uint8 [H,W,3]): the target frame.
        Returns:
          SamImage: embedding ``[1,D,h,w]`` and the sizes needed to bring masks back to ``(H, W)``.
        """
        frame = _frames_uint8(frame, "VisaModel.encode_sam_image")
        if len(frame) != 1:
            raise ValueError(f"encode_sam_image: give ONE target frame [H,W,3], got {len(frame)} frames")
        embedding, resized, original = sam_glue.encode_frames(self.sam, frame)
        return SamImage(embedding, resized, original)

    # ------------------------------------------------------------------ text side
    def tokenize(
        self,
        expressions: str | Sequence[str],
        num_references: int,
        with_answer: bool = True,
        question_index: int | Sequence[int] = 0,
        answer_index: int | Sequence[int] = 0,
        answers: Sequence[str] | None = None,
    ) -> Conversations:
        """Build and tokenize one conversation per expression (``build_prompt``), right-padded.

        Arguments:
          expressions (str | Sequence[str]): N queries about the same clip.
          num_references (int): T, reference frames in the clip (the target adds one image).
          with_answer (bool): teacher-forced answer with ``[SEG]`` (True) or an open assistant turn.
          question_index, answer_index (int | Sequence[int]): template choice, one or one per expression.
          answers (Sequence[str] | None): free answer texts instead of ``ANSWER_LIST`` (one per
            expression, e.g. for a text-only warm-up of a toy LLM); each is followed by ``</s>``.
        Returns:
          Conversations: ids ``[N,L]``, attention ``[N,L]``, labels ``[N,L]`` (None if not with_answer).
        """
        if isinstance(expressions, str):
            expressions = [expressions]
        n = len(expressions)
        if n == 0:
            raise ValueError("tokenize: give at least one expression")
        q_idx = [question_index] * n if isinstance(question_index, int) else list(question_index)
        a_idx = [answer_index] * n if isinstance(answer_index, int) else list(answer_index)
        if answers is not None:
            if len(answers) != n or not with_answer:
                raise ValueError(f"tokenize: give one answer per expression ({n}), with with_answer=True")
            prompts = [
                build_conversation(build_question(e, num_references, q), a)
                for e, q, a in zip(expressions, q_idx, answers, strict=True)
            ]
        else:
            prompts = [
                build_prompt(e, num_references, with_answer=with_answer, question_index=q, answer_index=a)
                for e, q, a in zip(expressions, q_idx, a_idx, strict=True)
            ]
        rows, label_rows = [], []
        for prompt in prompts:
            if with_answer:
                ids, labels = build_labels(self.tokenizer, prompt)
            else:
                ids, labels = tokenize_prompt(self.tokenizer, prompt), None
            rows.append(ids)
            label_rows.append(labels)
        return self._pad(rows, label_rows if with_answer else None, prompts)

    def _pad(
        self, rows: list[list[int]], label_rows: list[list[int]] | None, prompts: list[str]
    ) -> Conversations:
        pad_id = self.tokenizer.pad_token_id
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.bool)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long) if label_rows else None
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = True
            if labels is not None:
                labels[i, : len(row)] = torch.tensor(label_rows[i])
        return Conversations(ids, attention, labels, prompts)

    # ------------------------------------------------------------------ multimodal sequence
    def embed_multimodal(
        self,
        input_ids: torch.Tensor,
        image_tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> MultimodalInputs:
        """Replace every ``-200`` slot by its image's projected visual tokens, row by row.

        Arguments:
          input_ids (long [N,L]): conversations (``Conversations.input_ids``).
          image_tokens (float [K,n,C]): merged visual tokens of the K images every row refers to,
            in slot order (references, then target); shared by the N rows.
          attention_mask (bool [N,L] | None): real-token mask (default: ids != pad id).
          labels (long [N,L] | None): CE labels.
        Returns:
          MultimodalInputs with ``L' = L + K*(n-1)`` before padding.
        """
        if input_ids.ndim != 2:
            raise ValueError(f"embed_multimodal: input_ids must be [N,L], got {tuple(input_ids.shape)}")
        if image_tokens.ndim != 3:
            raise ValueError(
                f"embed_multimodal: image_tokens must be [K,n,C], got {tuple(image_tokens.shape)}"
            )
        device = self.device
        input_ids = input_ids.to(device)
        if attention_mask is None:
            attention_mask = input_ids != self.tokenizer.pad_token_id
        attention_mask = attention_mask.to(device).bool()
        embed = self.causal_lm.get_input_embeddings()
        visual = self.projector(image_tokens.to(device=device, dtype=self.projector.weight.dtype))
        visual = visual.to(embed.weight.dtype)
        num_images, per_image = visual.shape[:2]
        pad_id = self.tokenizer.pad_token_id
        row_embeds, row_ids, row_labels, spans = [], [], [], []
        for i in range(input_ids.shape[0]):
            ids = input_ids[i][attention_mask[i]]
            slots = (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist()
            if len(slots) != num_images:
                raise ValueError(
                    f"embed_multimodal: conversation {i} has {len(slots)} <image> slots but {num_images} "
                    "images were given; pass one image per slot (references then target)"
                )
            text = embed(ids.clamp(min=0))
            lab = labels[i].to(device)[attention_mask[i]] if labels is not None else None
            pieces, id_pieces, lab_pieces, row_spans = [], [], [], []
            start, pos = 0, 0
            for k, slot in enumerate([*slots, len(ids)]):
                pieces.append(text[start:slot])
                id_pieces.append(ids[start:slot])
                if lab is not None:
                    lab_pieces.append(lab[start:slot])
                pos += slot - start
                if k < num_images:
                    pieces.append(visual[k])
                    id_pieces.append(ids.new_full((per_image,), IMAGE_TOKEN_INDEX))
                    lab_pieces.append(ids.new_full((per_image,), IGNORE_INDEX))
                    row_spans.append((pos, pos + per_image))
                    pos += per_image
                start = slot + 1
            row_embeds.append(torch.cat(pieces))
            row_ids.append(torch.cat(id_pieces))
            row_labels.append(torch.cat(lab_pieces) if lab is not None else None)
            spans.append(row_spans)
        length = max(len(r) for r in row_ids)
        n = len(row_ids)
        embeds = row_embeds[0].new_zeros((n, length, row_embeds[0].shape[-1]))
        expanded = input_ids.new_full((n, length), pad_id)
        mask = torch.zeros((n, length), dtype=torch.bool, device=device)
        out_labels = input_ids.new_full((n, length), IGNORE_INDEX) if labels is not None else None
        for i in range(n):
            size = len(row_ids[i])
            embeds[i, :size] = row_embeds[i]
            expanded[i, :size] = row_ids[i]
            mask[i, :size] = True
            if out_labels is not None:
                out_labels[i, :size] = row_labels[i]
        return MultimodalInputs(embeds, mask, expanded, out_labels, spans)

    def seg_read_positions(self, expanded_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the ``[SEG]`` hidden states are read: one before each ``[SEG]`` in the expanded sequence.

        Arguments:
          expanded_ids (long [N,L']): ``MultimodalInputs.expanded_ids``.
        Returns:
          (rows, positions): long ``[M]`` each, in row-major order; ``positions = p - 1``.
        """
        is_seg = expanded_ids == self.seg_token_id
        if is_seg[:, 0].any():
            raise ValueError("a conversation starts with [SEG]: there is no state before it to read")
        rows, seg_pos = is_seg.nonzero(as_tuple=True)
        return rows, seg_pos - 1

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        image_tokens: torch.Tensor,
        sam_image: SamImage,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> VisaOutput:
        """One sample: N conversations about one clip, masks decoded on its target frame.

        Arguments:
          input_ids (long [N,L]): ``Conversations.input_ids``; every ``[SEG]`` yields one mask.
          image_tokens (float [K,n,C]): ``encode_images(references + [target])``.
          sam_image (SamImage): ``encode_sam_image(target)``, shared by the N prompts.
          attention_mask (bool [N,L] | None), labels (long [N,L] | None): as in ``Conversations``.
        Returns:
          VisaOutput (``ce_loss`` when labels are given).
        """
        inputs = self.embed_multimodal(input_ids, image_tokens, attention_mask, labels)
        decoder = self.causal_lm.model  # the LlamaModel: its last_hidden_state is post-norm
        hidden = decoder(
            inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask.long(), use_cache=False
        ).last_hidden_state  # [N,L',H]
        ce = self._ce_loss(hidden, inputs.labels) if inputs.labels is not None else None
        rows, positions = self.seg_read_positions(inputs.expanded_ids)
        seg_hidden = hidden[rows, positions]  # [M,H]
        seg_embeddings = self.seg_head(seg_hidden.to(self.seg_head[0].weight.dtype))  # [M,D]
        sam_dtype = self.sam.mask_decoder.iou_token.weight.dtype
        logits = sam_glue.decode_from_embeddings(
            self.sam,
            sam_image.embedding.to(device=self.device, dtype=sam_dtype),
            seg_embeddings.to(sam_dtype),
            sam_image.resized,
            sam_image.original,
        )
        return VisaOutput(logits, seg_embeddings, seg_hidden, rows, positions, ce, inputs)

    def _ce_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Shift-by-one cross-entropy, mean over labelled tokens; lm_head only where a label follows."""
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        if not keep.any():
            return hidden.sum() * 0.0
        logits = self.causal_lm.lm_head(hidden[:, :-1][keep])
        return F.cross_entropy(logits.float(), targets[keep])

    # ------------------------------------------------------------------ user-facing inference
    def _clip_inputs(
        self, reference_frames: np.ndarray | torch.Tensor, target_image: np.ndarray | torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        refs = _frames_uint8(reference_frames, "reference_frames")
        target = _frames_uint8(target_image, "target_image")
        if len(target) != 1:
            raise ValueError(f"target_image: give one frame [H,W,3], got {len(target)}")
        return refs, target[0]

    @torch.no_grad()
    def segment(
        self,
        reference_frames: np.ndarray | torch.Tensor,
        target_image: np.ndarray | torch.Tensor,
        expressions: str | Sequence[str],
        normalize: bool = True,
    ) -> torch.Tensor:
        """Teacher-forced inference (VISA's evaluation): masks of N expressions on the target frame.

        The answer "It is [SEG]." is appended to each prompt and the mask is read from one forward
        pass; the clip and the target's SAM embedding are encoded once for all expressions.

        Arguments:
          reference_frames (uint8 [T,H,W,3]): reference frames, in time order.
          target_image (uint8 [H,W,3]): the frame to segment (SAM decodes this one).
          expressions (str | Sequence[str]): the queries.
          normalize (bool): lower-case and collapse whitespace like VISA's evaluation.
        Returns:
          float32 ``[N,H,W]`` logits; ``> 0`` is the mask.
        """
        refs, target = self._clip_inputs(reference_frames, target_image)
        if isinstance(expressions, str):
            expressions = [expressions]
        if normalize:
            expressions = [" ".join(e.lower().split()) for e in expressions]
        image_tokens = self.encode_images(np.concatenate([refs, target[None]]))
        conv = self.tokenize(expressions, len(refs))
        out = self.forward(conv.input_ids, image_tokens, self.encode_sam_image(target), conv.attention_mask)
        if len(out.seg_rows) != len(expressions):
            raise RuntimeError(f"expected one [SEG] per expression, found {len(out.seg_rows)}")
        return out.mask_logits

    @torch.no_grad()
    def generate(
        self,
        reference_frames: np.ndarray | torch.Tensor,
        target_image: np.ndarray | torch.Tensor,
        expression: str,
        max_new_tokens: int = 16,
        do_sample: bool = False,
        **generate_kwargs,
    ) -> GenerationResult:
        """Chat-style use: let the LLM write its answer; decode masks for any ``[SEG]`` it writes.

        Arguments:
          reference_frames (uint8 [T,H,W,3]), target_image (uint8 [H,W,3]): the clip.
          expression (str): the query, put into VISA's question template.
          max_new_tokens (int): answer length limit.
          do_sample (bool): sample (True) or greedy decoding (False).
          **generate_kwargs: passed to Hugging Face ``generate`` (temperature, top_p, ...).
        Returns:
          GenerationResult: text, new token ids, and ``[M,H,W]`` logits if ``[SEG]`` was generated.
        """
        refs, target = self._clip_inputs(reference_frames, target_image)
        image_tokens = self.encode_images(np.concatenate([refs, target[None]]))
        conv = self.tokenize(expression, len(refs), with_answer=False)
        inputs = self.embed_multimodal(conv.input_ids, image_tokens, conv.attention_mask)
        tok = self.tokenizer
        new = self.causal_lm.generate(
            inputs_embeds=inputs.inputs_embeds,
            attention_mask=inputs.attention_mask.long(),
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **generate_kwargs,
        )[0].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id) + 1]
        text = tok.decode(new, skip_special_tokens=True)
        masks = None
        if self.seg_token_id in new:
            full = conv.input_ids[0][conv.attention_mask[0]].tolist() + new
            ids = torch.tensor([full])
            out = self.forward(ids, image_tokens, self.encode_sam_image(target))
            masks = out.mask_logits
        return GenerationResult(text, new, masks)
