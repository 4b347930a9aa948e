"""QPoser pose tokenizer: code grids, the multi-head quantiser, and (with shipped weights) the
measured reconstruction against the VAE baseline."""
from __future__ import annotations

import json

import pytest
import torch

from poseforge.backend.models.qposer import NUM_BODY_JOINTS, MultiHeadQuantizer, QPoser, QPoserConfig
from poseforge.backend.rotations import axis_angle_to_matrix
from poseforge.backend.weights import default_weights_dir

SMALL = QPoserConfig(width=32, layers=1, heads=2, code_heads=2, codebook=16, code_dim=4)


def _poses(n, seed=0, scale=0.4):
    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(torch.randn(n, NUM_BODY_JOINTS, 3, generator=g) * scale)


def test_codes_grid_round_trip_and_bad_codes():
    m = QPoser(SMALL).eval()
    x = _poses(5)
    codes = m.encode(x)
    assert codes.shape == (5, NUM_BODY_JOINTS, 2) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    rec, idx, _ = m(x)
    assert torch.equal(idx, codes)
    torch.testing.assert_close(m.decode(codes), rec)          # decoding the codes is the reconstruction
    eye = torch.eye(3)
    torch.testing.assert_close(rec @ rec.transpose(-1, -2), eye.expand_as(rec), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"codes must be in \[0, 16\)"):
        m.decode(codes + 16)
    with pytest.raises(ValueError, match="expected codes"):
        m.decode(codes[:, :5])
    with pytest.raises(ValueError, match="body rotations"):
        m.encode(x[:, :5])


def test_quantizer_snaps_to_nearest_code_and_learns_the_data():
    q = MultiHeadQuantizer(heads=2, codes=4, dim=3, decay=0.5)
    z = torch.randn(64, 2, 3)
    idx = q.indices(z)
    d = ((z[:, :, None] - q.codebook[None]) ** 2).sum(-1)          # (N, H, K)
    assert torch.equal(idx, d.argmin(-1))
    # training pulls the (unit) codes onto clusters of unit features; dead codes restart on data
    centres = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]])
    data = centres[torch.randint(0, 2, (256,))][:, None].expand(256, 2, 3) + 0.01 * torch.randn(256, 2, 3)
    data = torch.nn.functional.normalize(data, dim=-1)
    q.train()
    for _ in range(60):
        zq, _, commit = q(data)
    assert commit < 1e-2
    for h in range(2):
        near = torch.cdist(centres, q.codebook[h]).min(1).values
        assert (near < 0.1).all(), near


def test_straight_through_gradient_reaches_the_encoder():
    m = QPoser(SMALL).train()
    rec, _, commit = m(_poses(8))
    (rec.sum() + commit).backward()
    assert m.enc_in.weight.grad is not None and m.enc_in.weight.grad.abs().sum() > 0


def _shipped():
    if not (default_weights_dir() / "qposer.safetensors").is_file():
        pytest.skip("no shipped QPoser weights (backend/weights/qposer.safetensors)")
    return json.loads((default_weights_dir() / "qposer.json").read_text())


def test_shipped_card_reports_a_usable_tokenizer():
    card = _shipped()
    m = card["metrics"]
    assert m["recon_mpjpe_mm"] < 30.0
    assert all(h["perplexity"] > 0.25 * card["config"]["codebook"] for h in m["codebook"]["per_head"])
    assert "CC BY-NC" in card["licence"]
