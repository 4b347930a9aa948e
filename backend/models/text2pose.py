"""Text to QPoser codes: a masked code model conditioned on a sentence embedding, and a
text-pose matching model that ranks candidates.

Masked code modelling (QPoser, arXiv 2312.01104 sec. 3.3, with the bidirectional masked
transformer and iterative decoding of MaskGIT, Chang et al. 2022, arXiv 2202.04200 sec. 3):

* Input: the QPoser codes of a pose, ``(B, 21 joints, H heads)``; a joint is either known (its
  ``H`` codes given) or masked.  One token per joint: the sum of its heads' code embeddings (a
  masked head uses the extra "mask" entry) plus a learned joint embedding, plus the projected
  text embedding.  A text token leads the sequence.
* A pre-norm transformer encoder predicts, for every joint, logits over each head's codebook.
  Training masks a random share of joints (cosine schedule, sec. 3.2; sometimes whole body parts,
  as edits do) and minimises the cross-entropy of the masked joints' codes.  The text is replaced
  by a learned null embedding for 10 % of the samples, for classifier-free guidance (Ho &
  Salimans 2022): ``logits = l_null + g (l_text - l_null)``.
* Because any subset of joints can be masked, one model generates from nothing, re-predicts a
  body part of an encoded pose (edit) or a random share of its joints (variations).

The matching model (in the spirit of PoseScript's text-to-pose retrieval, Delmas et al. 2022,
arXiv 2210.11795 sec. 4.1): a pose encoder (MLP on the body's 6D rotations) and a linear map of
the text embedding into one unit-length space, trained with a symmetric InfoNCE loss on the same
caption pairs.  Its cosine similarity ranks sampled candidates ("best N of M").

Poses are canonical rotations (local, relative to the rest T-pose, Y up).  The QPoser codes
cover the 21 body joints; a 22nd token carries the pelvis **tilt** (its orientation with the
heading removed: intrinsic Y-X-Z Euler angles, yaw dropped, pitch and roll each binned into the
codebook size), because leaning, bending over and lying down are mostly the pelvis's work in
mocap and the tokenizer, like VPoser, leaves the pelvis out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..rotations import matrix_to_rot6d
from .qposer import NUM_BODY_JOINTS

#: Tokens of the masked code model: the 21 body joints, then the pelvis tilt.
NUM_TOKENS = NUM_BODY_JOINTS + 1
ROOT_TOKEN = NUM_BODY_JOINTS


def tilt_angles(rotmats: torch.Tensor) -> torch.Tensor:
    """Pelvis orientations ``(..., 3, 3)`` (Y up) -> ``(..., 2)`` (pitch, roll) radians, heading
    removed: ``R = R_y(yaw) R_x(pitch) R_z(roll)`` (intrinsic Y-X-Z), pitch in [-pi/2, pi/2]
    (positive tips the body forward, towards +Z), roll in (-pi, pi]."""
    pitch = torch.asin((-rotmats[..., 1, 2]).clamp(-1.0, 1.0))
    roll = torch.atan2(rotmats[..., 1, 0], rotmats[..., 1, 1])
    return torch.stack([pitch, roll], -1)


def tilt_matrix(angles: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` (pitch, roll) radians -> ``R_x(pitch) R_z(roll)`` ``(..., 3, 3)``."""
    b, c = angles[..., 0], angles[..., 1]
    cb, sb, cc, sc = torch.cos(b), torch.sin(b), torch.cos(c), torch.sin(c)
    z = torch.zeros_like(b)
    return torch.stack([torch.stack([cc, -sc, z], -1),
                        torch.stack([cb * sc, cb * cc, -sb], -1),
                        torch.stack([sb * sc, sb * cc, cb], -1)], -2)


def heading_matrix(rotmats: torch.Tensor) -> torch.Tensor:
    """The heading (yaw) part ``R_y(yaw)`` of pelvis orientations ``(..., 3, 3)``."""
    yaw = torch.atan2(rotmats[..., 0, 2], rotmats[..., 2, 2])
    c, s = torch.cos(yaw), torch.sin(yaw)
    z, o = torch.zeros_like(yaw), torch.ones_like(yaw)
    return torch.stack([torch.stack([c, z, s], -1), torch.stack([z, o, z], -1),
                        torch.stack([-s, z, c], -1)], -2)


def tilt_codes(rotmats: torch.Tensor, bins: int) -> torch.Tensor:
    """Pelvis orientations ``(..., 3, 3)`` -> ``(..., 2)`` int64 codes: pitch binned over
    [-pi/2, pi/2], roll over [-pi, pi), ``bins`` bins each."""
    a = tilt_angles(rotmats)
    p = ((a[..., 0] + math.pi / 2) / math.pi * bins).floor().clamp(0, bins - 1)
    r = ((a[..., 1] + math.pi) / (2 * math.pi) * bins).floor().remainder(bins)
    return torch.stack([p, r], -1).long()


def tilt_from_codes(codes: torch.Tensor, bins: int) -> torch.Tensor:
    """``(..., 2)`` tilt codes -> ``(..., 3, 3)`` pelvis tilt at the bin centres."""
    c = codes.to(torch.float32) + 0.5
    return tilt_matrix(torch.stack([c[..., 0] / bins * math.pi - math.pi / 2,
                                    c[..., 1] / bins * 2 * math.pi - math.pi], -1))


@dataclass(frozen=True)
class Text2PoseConfig:
    """Hyper-parameters of :class:`Text2Pose` (stored in the weights' metadata).

    Attributes:
        width / layers / heads: the masked transformer.
        text_dim: size of the sentence embeddings (384 for all-MiniLM-L6-v2).
        code_heads / codebook: the QPoser code grid (must match the tokenizer's).
        match_dim / match_hidden: the matching model's joint space and pose-MLP width.
        text_model: the sentence encoder the weights were trained with (informative).
    """
    width: int = 192
    layers: int = 4
    heads: int = 4
    text_dim: int = 384
    code_heads: int = 2
    codebook: int = 256
    match_dim: int = 256
    match_hidden: int = 512
    text_model: str = "sentence-transformers/all-MiniLM-L6-v2"


class PoseTextMatcher(nn.Module):
    """Pose and text into one unit-length space; ``similarity`` is their cosine."""

    def __init__(self, c: Text2PoseConfig):
        super().__init__()
        self.pose = nn.Sequential(nn.Linear(NUM_TOKENS * 6, c.match_hidden), nn.GELU(),
                                  nn.Linear(c.match_hidden, c.match_hidden), nn.GELU(),
                                  nn.Linear(c.match_hidden, c.match_dim))
        self.text = nn.Sequential(nn.Linear(c.text_dim, c.match_hidden), nn.GELU(),
                                  nn.Linear(c.match_hidden, c.match_dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.register_buffer("rest6d", matrix_to_rot6d(torch.eye(3)).expand(NUM_TOKENS, 6).clone())

    def embed_pose(self, rotmats: torch.Tensor) -> torch.Tensor:
        """``(B, 22, 3, 3)`` canonical local rotations (the pelvis's heading is ignored) ->
        ``(B, match_dim)`` unit vectors."""
        tilt = tilt_matrix(tilt_angles(rotmats[:, 0]))
        x = torch.cat([rotmats[:, 1:], tilt[:, None]], 1)
        return F.normalize(self.pose((matrix_to_rot6d(x) - self.rest6d).flatten(1)), dim=-1)

    def embed_text(self, text: torch.Tensor) -> torch.Tensor:
        """``(B, text_dim)`` sentence embeddings -> ``(B, match_dim)`` unit vectors."""
        return F.normalize(self.text(text), dim=-1)

    def similarity(self, rotmats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Cosine of each pose with its text: ``(B, 22, 3, 3)``, ``(B, text_dim)`` -> ``(B,)``."""
        return (self.embed_pose(rotmats) * self.embed_text(text)).sum(-1)

    def loss(self, rotmats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE over the batch (the other pairs are the negatives)."""
        logits = self.log_scale.exp() * self.embed_pose(rotmats) @ self.embed_text(text).T
        target = torch.arange(len(logits), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class Text2Pose(nn.Module):
    """Masked code model over QPoser codes conditioned on text, plus the matching model."""

    config_class = Text2PoseConfig

    def __init__(self, config: Text2PoseConfig = Text2PoseConfig()):
        super().__init__()
        c = self.config = config
        if c.code_heads != 2:
            raise ValueError("the pelvis-tilt token needs code_heads = 2 (pitch and roll)")
        w = c.width
        self.mask_id = c.codebook
        self.code_emb = nn.ModuleList(nn.Embedding(c.codebook + 1, w) for _ in range(c.code_heads))
        self.joint_emb = nn.Parameter(torch.randn(NUM_TOKENS, w) * 0.02)
        self.text_in = nn.Linear(c.text_dim, w)
        self.null_text = nn.Parameter(torch.zeros(c.text_dim))
        self.text_pos = nn.Parameter(torch.zeros(1, 1, w))
        layer = nn.TransformerEncoderLayer(w, c.heads, 4 * w, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, c.code_heads * c.codebook))
        self.matcher = PoseTextMatcher(c)

    def check_text(self, text: torch.Tensor) -> None:
        if text.ndim != 2 or text.shape[1] != self.config.text_dim:
            raise ValueError(f"text embeddings must be (B, {self.config.text_dim}), got {tuple(text.shape)} "
                             f"(the weights were trained with {self.config.text_model})")

    def forward(self, codes: torch.Tensor, masked: torch.Tensor, text: torch.Tensor | None,
                drop_text: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of every joint's codes.

        Args:
            codes: ``(B, 22, H)`` int64: the QPoser codes of the 21 body joints and the pelvis
                tilt codes (:func:`tilt_codes`) as the 22nd token (values of masked tokens are
                ignored).
            masked: ``(B, 22)`` bool, True where the token's codes are to be predicted.
            text: ``(B, text_dim)`` sentence embeddings, or None for the unconditional model.
            drop_text: ``(B,)`` bool, True to use the null text for that sample.
        Returns:
            ``(B, 22, H, K)`` logits.
        """
        b = codes.shape[0]
        if text is None:
            text = self.null_text.expand(b, -1)
        else:
            self.check_text(text)
            if drop_text is not None:
                text = torch.where(drop_text[:, None], self.null_text.expand(b, -1), text)
        ids = torch.where(masked[..., None], torch.full_like(codes, self.mask_id), codes)
        tok = sum(emb(ids[..., h]) for h, emb in enumerate(self.code_emb)) + self.joint_emb
        t = self.text_in(text)[:, None]
        h = self.transformer(torch.cat([t + self.text_pos, tok + t], 1))[:, 1:]
        return self.out(h).unflatten(-1, (self.config.code_heads, self.config.codebook))

    def loss(self, codes: torch.Tensor, masked: torch.Tensor, text: torch.Tensor,
             drop_text: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the masked joints' codes (mean over masked joints and heads)."""
        logits = self(codes, masked, text, drop_text)
        ce = F.cross_entropy(logits.flatten(0, 2), codes.flatten(), reduction="none").view(codes.shape)
        w = masked[..., None].expand_as(ce).float()
        return (ce * w).sum() / w.sum().clamp_min(1.0)

    @torch.no_grad()
    def sample(self, text: torch.Tensor | None, codes: torch.Tensor | None = None,
               known: torch.Tensor | None = None, *, steps: int = 8, guidance: float = 2.0,
               temperature: float = 1.0, choice_temperature: float = 2.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Fill the unknown joints' codes by MaskGIT iterative decoding (arXiv 2202.04200 sec. 3.2).

        Each step samples codes for all still-masked joints (temperature ``temperature``, with
        classifier-free guidance ``guidance``), then keeps the most confident ones (log-probability
        plus Gumbel noise scaled by ``choice_temperature`` and annealed to 0) so that the number of
        masked joints follows the cosine schedule; the last step keeps all.

        Args:
            text: ``(B, text_dim)`` sentence embeddings, or None (unconditional).
            codes: ``(B, 22, H)`` codes of the known tokens (None: nothing known).
            known: ``(B, 22)`` bool, the tokens whose codes are kept (None: none).
            generator: random source (the same seed gives the same codes).
        Returns:
            ``(B, 22, H)`` int64 codes; the known tokens' codes unchanged.
        Raises:
            ValueError: shape mismatches or ``steps < 1``.
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        dev = self.joint_emb.device
        b = next((x.shape[0] for x in (text, codes, known) if x is not None), 1)
        c = self.config
        if codes is None:
            codes = torch.zeros(b, NUM_TOKENS, c.code_heads, dtype=torch.long, device=dev)
        if known is None:
            known = torch.zeros(b, NUM_TOKENS, dtype=torch.bool, device=dev)
        if codes.shape != (b, NUM_TOKENS, c.code_heads) or known.shape != (b, NUM_TOKENS):
            raise ValueError(f"codes must be ({b}, {NUM_TOKENS}, {c.code_heads}) and known ({b}, "
                             f"{NUM_TOKENS}); got {tuple(codes.shape)} and {tuple(known.shape)}")
        codes = codes.clone()
        masked = ~known.clone()
        n_unknown = masked.sum(1)                                            # (B,)
        use_cfg = text is not None and guidance != 1.0
        for s in range(steps):
            if not masked.any():
                break
            if use_cfg:
                both = self(torch.cat([codes, codes]), torch.cat([masked, masked]), torch.cat([text, text]),
                            torch.cat([torch.zeros(b, dtype=torch.bool, device=dev),
                                       torch.ones(b, dtype=torch.bool, device=dev)]))
                cond, uncond = both[:b], both[b:]
                logits = uncond + guidance * (cond - uncond)
            else:
                logits = self(codes, masked, text)
            logp = F.log_softmax(logits / max(temperature, 1e-4), -1)         # (B, 21, H, K)
            if temperature <= 1e-4:
                pick = logp.argmax(-1)
            else:
                pick = torch.multinomial(logp.exp().flatten(0, 2), 1, generator=generator).view(logp.shape[:-1])
            conf = logp.gather(-1, pick[..., None])[..., 0].sum(-1)            # (B, 21)
            ratio = (s + 1) / steps
            remain = torch.floor(n_unknown.float() * math.cos(math.pi / 2 * ratio)).long()   # still masked after
            if choice_temperature > 0 and s < steps - 1:
                u = torch.rand(conf.shape, generator=generator, device=conf.device).clamp(1e-9, 1 - 1e-9)
                conf = conf + choice_temperature * (1 - ratio) * -torch.log(-torch.log(u))
            conf = conf.masked_fill(~masked, float("inf"))
            # reveal every masked joint except the `remain` least confident ones
            order = conf.argsort(1)                                            # ascending
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(NUM_TOKENS, device=dev).expand(b, -1))
            keep_masked = masked & (rank < remain[:, None])
            reveal = masked & ~keep_masked
            codes = torch.where(reveal[..., None], pick, codes)
            masked = keep_masked
        return codes
