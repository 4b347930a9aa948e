"""QPoser's pose tokenizer: a multi-head vector-quantised autoencoder with global-local
integration (MS-VQVAE + GLIF-AE; Li et al., "QPoser: Quantized Explicit Pose Prior Modeling for
Controllable Pose Generation", arXiv 2312.01104, sec. 3.1-3.2).

A body pose (the 21 non-root joints of the canonical body, local rotations in the 6D form of
Zhou et al. 2019; the pelvis orientation is not part of it, as in VPoser) becomes a grid of
discrete codes, ``(21 joints, H heads)``: the "QPoser codes".

* Encoder (GLIF-AE): one token per joint (its 6D rotation plus a learned joint embedding) and one
  learned global token go through a transformer encoder, so attention mixes whole-body (global)
  information into every joint's local feature; that is what keeps a joint's code meaningful
  when the codes of other joints change (editing, mixing body parts).
* Multi-head quantisation (MS-VQVAE): each joint's feature is split into ``H`` heads, each head
  normalised to unit length and snapped to the nearest entry of its own codebook (``K`` unit
  codes).  Codebooks are updated by
  exponential moving averages of the assigned features (van den Oord et al. 2017, appendix A.1),
  with dead codes restarted from random features of the batch; a commitment loss keeps the
  encoder near its codes; gradients pass the quantiser straight through.
* Decoder: the quantised joint tokens (plus joint embeddings and a global token) through a
  transformer encoder, then a linear map to each joint's 6D rotation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..rotations import matrix_to_rot6d, rot6d_to_matrix

#: Joints of a body pose (the canonical body without the pelvis).
NUM_BODY_JOINTS = 21


@dataclass(frozen=True)
class QPoserConfig:
    """Hyper-parameters of :class:`QPoser` (stored in the weights' metadata).

    Attributes:
        width: transformer width of encoder and decoder.
        layers: transformer layers of the encoder and of the decoder (each).
        heads: attention heads.
        code_heads: quantiser heads per joint (H).
        codebook: codes per head codebook (K).
        code_dim: dimension of one head's feature.
        ema_decay: decay of the codebooks' moving averages.
        commitment: weight of the commitment loss.
    """
    width: int = 128
    layers: int = 3
    heads: int = 4
    code_heads: int = 2
    codebook: int = 256
    code_dim: int = 16
    ema_decay: float = 0.99
    commitment: float = 0.25


class MultiHeadQuantizer(nn.Module):
    """``H`` independent codebooks of ``K`` codes of size ``D``, one per head, EMA-updated."""

    def __init__(self, heads: int, codes: int, dim: int, decay: float):
        super().__init__()
        self.heads, self.codes, self.dim, self.decay = heads, codes, dim, decay
        self.register_buffer("codebook", F.normalize(torch.randn(heads, codes, dim), dim=-1))
        self.register_buffer("ema_count", torch.ones(heads, codes))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("usage", torch.zeros(heads, codes))

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., H, D)`` features -> ``(..., H)`` nearest code indices."""
        flat = z.reshape(-1, self.heads, self.dim).transpose(0, 1)                    # (H, N, D)
        d = (flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ self.codebook.transpose(1, 2)
             + self.codebook.pow(2).sum(-1)[:, None])                                 # (H, N, K)
        return d.argmin(-1).transpose(0, 1).reshape(z.shape[:-1])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """``(..., H)`` indices -> ``(..., H, D)`` code vectors."""
        h = torch.arange(self.heads, device=idx.device).expand_as(idx)
        return self.codebook[h, idx]

    def forward(self, z: torch.Tensor):
        """Quantise ``z (..., H, D)`` (expected unit length per head); returns ``(z_q
        straight-through, indices, commitment loss)`` and, in training mode, updates the codebooks."""
        idx = self.indices(z.detach())
        zq = self.lookup(idx)
        commit = F.mse_loss(z, zq.detach())
        if self.training:
            with torch.no_grad():
                flat = z.detach().reshape(-1, self.heads, self.dim)
                fi = idx.reshape(-1, self.heads)
                onehot = F.one_hot(fi, self.codes).to(flat.dtype)                  # (N, H, K)
                count = onehot.sum(0)                                                # (H, K)
                sums = torch.einsum("nhk,nhd->hkd", onehot, flat)
                self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
                self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
                n = self.ema_count.sum(-1, keepdim=True)
                smoothed = (self.ema_count + 1e-5) / (n + self.codes * 1e-5) * n
                self.codebook.copy_(F.normalize(self.ema_sum / smoothed[..., None], dim=-1))
                self.usage.mul_(0.99).add_(count, alpha=0.01)
                dead = self.usage < 1e-3
                if dead.any():                                                       # restart dead codes
                    for h in range(self.heads):
                        nd = int(dead[h].sum())
                        if nd:
                            pick = flat[torch.randint(0, len(flat), (nd,), device=flat.device), h]
                            self.codebook[h, dead[h]] = pick
                            self.ema_sum[h, dead[h]] = pick
                            self.ema_count[h, dead[h]] = 1.0
                            self.usage[h, dead[h]] = 1.0
        return z + (zq - z).detach(), idx, commit


class QPoser(nn.Module):
    """Pose tokenizer (see the module docstring).  ``encode`` / ``decode`` work on rotation
    matrices ``(B, 21, 3, 3)`` of the body joints (local, relative to the canonical T-pose, Y up)."""

    config_class = QPoserConfig

    def __init__(self, config: QPoserConfig = QPoserConfig()):
        super().__init__()
        c = self.config = config
        w = c.width
        self.joint_emb = nn.Parameter(torch.randn(NUM_BODY_JOINTS, w) * 0.5)
        self.enc_global = nn.Parameter(torch.zeros(1, 1, w))
        self.dec_global = nn.Parameter(torch.zeros(1, 1, w))
        self.enc_in = nn.Linear(6, w)

        def stack():
            layer = nn.TransformerEncoderLayer(w, c.heads, 2 * w, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            return nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)

        self.encoder = stack()
        self.enc_out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, c.code_heads * c.code_dim))
        self.quantizer = MultiHeadQuantizer(c.code_heads, c.codebook, c.code_dim, c.ema_decay)
        self.dec_in = nn.Linear(c.code_heads * c.code_dim, w)
        self.decoder = stack()
        self.dec_out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, 6))
        self.register_buffer("rest6d", matrix_to_rot6d(torch.eye(3)).expand(NUM_BODY_JOINTS, 6).clone())

    def features(self, rotmats: torch.Tensor) -> torch.Tensor:
        """``(B, 21, 3, 3)`` -> continuous joint features ``(B, 21, H, D)`` (before quantisation)."""
        if rotmats.shape[-3:] != (NUM_BODY_JOINTS, 3, 3):
            raise ValueError(f"expected (B, {NUM_BODY_JOINTS}, 3, 3) body rotations, got {tuple(rotmats.shape)}")
        # the deviation from the rest pose, so small rotations are not drowned by the constant
        # 6D of the identity (features of all poses would start equal and share one code)
        x = self.enc_in((matrix_to_rot6d(rotmats) - self.rest6d) * 4.0) + self.joint_emb
        g = self.enc_global.expand(len(x), -1, -1)
        h = self.encoder(torch.cat([g, x], 1))[:, 1:]
        # unit length per head: codes and features on the sphere (cosine matching), which keeps
        # the codebooks from collapsing onto a few entries (Yu et al. 2022, ViT-VQGAN sec. 3.2)
        return F.normalize(self.enc_out(h).unflatten(-1, (self.config.code_heads, self.config.code_dim)), dim=-1)

    def encode(self, rotmats: torch.Tensor) -> torch.Tensor:
        """``(B, 21, 3, 3)`` body rotations -> QPoser codes ``(B, 21, H)`` (int64)."""
        return self.quantizer.indices(self.features(rotmats))

    def decode_vectors(self, zq: torch.Tensor) -> torch.Tensor:
        """Quantised features ``(B, 21, H, D)`` -> rotation matrices ``(B, 21, 3, 3)``."""
        x = self.dec_in(zq.flatten(-2)) + self.joint_emb
        g = self.dec_global.expand(len(x), -1, -1)
        h = self.decoder(torch.cat([g, x], 1))[:, 1:]
        return rot6d_to_matrix(self.dec_out(h) + self.rest6d)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """QPoser codes ``(B, 21, H)`` -> body rotations ``(B, 21, 3, 3)``.

        Raises:
            ValueError: a code outside ``[0, K)`` or a wrong shape.
        """
        c = self.config
        if codes.shape[-2:] != (NUM_BODY_JOINTS, c.code_heads):
            raise ValueError(f"expected codes (B, {NUM_BODY_JOINTS}, {c.code_heads}), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= c.codebook):
            raise ValueError(f"codes must be in [0, {c.codebook})")
        return self.decode_vectors(self.quantizer.lookup(codes))

    def forward(self, rotmats: torch.Tensor):
        """Autoencode: returns ``(reconstructed rotations (B, 21, 3, 3), codes (B, 21, H),
        commitment loss)``."""
        zq, idx, commit = self.quantizer(self.features(rotmats))
        return self.decode_vectors(zq), idx, commit
