"""DPoser model, weights I/O and pose fitting (tiny configs, no data needed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from poseforge.backend.models.dposer import DPoser, DPoserConfig
from poseforge.backend.rotations import axis_angle_to_matrix
from poseforge.backend.skeleton import forward_kinematics
from poseforge.backend.tasks.fit import Cancelled, FitError, fast_forward_kinematics, fit_poses
from poseforge.backend.train.dposer import mirror_body_pose
from poseforge.backend.weights import WeightsError, load_card, load_model, save_model

torch.set_num_threads(1)


def tiny(rep="axis_angle", seed=0) -> DPoser:
    torch.manual_seed(seed)
    m = DPoser(DPoserConfig(representation=rep, hidden=32, blocks=1, time_dim=16, dropout=0.0))
    for p in m.parameters():  # the output layer starts at zero: give it some signal
        torch.nn.init.normal_(p, std=0.05)
    m.set_normalisation(0.3 * torch.randn(256, 21, 3, generator=torch.Generator().manual_seed(seed)))
    return m.eval()


def random_poses(n, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, 22, 3, generator=g)


@pytest.mark.parametrize("rep", ["axis_angle", "rot6d"])
def test_save_load_round_trip_gives_the_same_model(tmp_path, rep):
    m = tiny(rep)
    save_model("dposer", m, m.config, {"licence": "test", "steps": 1}, tmp_path)
    back = load_model("dposer", DPoser, tmp_path)
    assert back.config == m.config
    assert torch.equal(back.data_mean, m.data_mean) and torch.equal(back.data_std, m.data_std)
    x = torch.randn(4, m.config.dim)
    t = torch.full((4,), 0.3)
    assert torch.equal(back.score(x, t), m.score(x, t))
    assert load_card("dposer", tmp_path)["steps"] == 1
    body = random_poses(3)[:, 1:]
    assert torch.equal(back.score_poses(body), m.score_poses(body))


def test_corrupt_or_missing_weights_raise_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="missing"):
        load_model("dposer", DPoser, tmp_path)
    m = tiny()
    path = save_model("dposer", m, m.config, {}, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated download
    with pytest.raises(WeightsError):
        load_model("dposer", DPoser, tmp_path)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError):
        load_model("dposer", DPoser, tmp_path)
    (tmp_path / "dposer.json").write_text("{not json")
    with pytest.raises(WeightsError, match="JSON"):
        load_card("dposer", tmp_path)


def test_weights_of_another_architecture_are_refused(tmp_path):
    m = tiny()
    save_model("dposer", m, m.config, {}, tmp_path)
    f = tmp_path / "dposer.safetensors"
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(f))
    tensors.pop("out.bias")
    save_file(tensors, str(f), metadata={"format": "poseforge-weights-1", "model": "DPoser",
                                         "config": json.dumps(m.config.__dict__)})
    with pytest.raises(WeightsError, match="does not match"):
        load_model("dposer", DPoser, tmp_path)


@pytest.mark.parametrize("rep", ["axis_angle", "rot6d"])
def test_encode_decode_round_trip(rep):
    m = tiny(rep)
    body = random_poses(5)[:, 1:]
    back = m.decode(m.encode(body))
    assert torch.allclose(axis_angle_to_matrix(back), axis_angle_to_matrix(body), atol=1e-5)


def test_energy_is_differentiable_and_score_is_deterministic():
    m = tiny()
    body = random_poses(4)[:, 1:].requires_grad_(True)
    e = m.energy(body, progress=0.5, generator=torch.Generator().manual_seed(0))
    assert e.shape == (4,)
    e.sum().backward()
    assert body.grad is not None and torch.isfinite(body.grad).all() and body.grad.abs().sum() > 0
    s1, s2 = m.score_poses(body.detach()), m.score_poses(body.detach())
    assert s1.shape == (4,) and torch.equal(s1, s2)


def test_truncated_schedule_anneals_and_uniform_draws_in_range():
    m = tiny()
    assert m.timestep(0.0) == pytest.approx(0.30) and m.timestep(1.0) == pytest.approx(0.05)
    assert m.timestep(0.3) > m.timestep(0.6)
    m.schedule = "uniform"
    g = torch.Generator().manual_seed(0)
    ts = [m.timestep(0.5, g) for _ in range(200)]
    assert min(ts) >= m.t_min_uniform and max(ts) <= m.t_max_uniform and np.std(ts) > 0.1


def test_mirroring_a_pose_mirrors_its_joint_positions():
    from poseforge.backend.skeleton import MIRROR
    body = random_poses(6, seed=3)[:, 1:].numpy()
    mir = mirror_body_pose(body)
    assert np.allclose(mirror_body_pose(mir), body)
    pos = lambda b: forward_kinematics(axis_angle_to_matrix(torch.cat([torch.zeros(len(b), 1, 3),
                                                                       torch.from_numpy(b)], 1)))[0]
    p, q = pos(body), pos(mir)
    q_back = q[:, list(MIRROR)] * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(p, q_back, atol=1e-5)


def test_fast_forward_kinematics_matches_the_reference():
    local = axis_angle_to_matrix(random_poses(5))
    root = torch.randn(5, 3)
    p1, g1 = forward_kinematics(local, root)
    p2, g2 = fast_forward_kinematics(local, root)
    assert torch.allclose(p1, p2, atol=1e-6) and torch.allclose(g1, g2, atol=1e-6)


def _pinned_problem(init_scale):
    target_local = axis_angle_to_matrix(random_poses(3, scale=0.25, seed=1))
    root = torch.tensor([[0.0, 0.9, 0.0]]).repeat(3, 1)
    init = target_local.clone()
    if init_scale > 0:
        init[:, 1:] = axis_angle_to_matrix(random_poses(3, scale=init_scale, seed=2))[:, 1:]
    tp, tr = forward_kinematics(target_local, root)
    w = torch.zeros(3, 22)
    pins = [7, 8, 20, 21]  # ankles and wrists
    w[:, pins] = 2e4
    return init, root, tp, tr, w, pins


def test_fit_keeps_pinned_joints_within_a_millimetre_while_the_prior_pulls():
    """Pinned ankles and wrists start on their targets; the prior (strong here) pulls the rest:
    the pinned joints end within 1 mm, the free joints did move, the root did not."""
    init, root, tp, tr, w, pins = _pinned_problem(0.0)
    res = fit_poses(init, root, target_pos=tp, pos_weight=w, target_rot=tr, rot_weight=w / 100,
                    prior=tiny(), prior_weight=5.0, iters=100, lr=0.03, polish_iters=5,
                    generator=torch.Generator().manual_seed(0))
    p, _ = forward_kinematics(res.local, res.root)
    err_mm = (p - tp).norm(dim=-1) * 1000
    assert err_mm[:, pins].max() < 1.0, err_mm[:, pins]
    assert err_mm.max() > 5.0  # the prior did change the pose elsewhere
    assert torch.equal(res.root, root) and torch.equal(res.local[:, 0], init[:, 0])


def test_fit_pulls_far_joints_onto_their_targets():
    init, root, tp, tr, w, pins = _pinned_problem(0.25)
    p0, _ = forward_kinematics(init, root)
    before = (p0 - tp).norm(dim=-1)[:, pins].mean()
    res = fit_poses(init, root, target_pos=tp, pos_weight=w, iters=200, lr=0.05, polish_iters=5)
    p, _ = forward_kinematics(res.local, res.root)
    after = (p - tp).norm(dim=-1)[:, pins]
    assert before > 0.05 and after.max() < 0.01 * before, (before, after)


def test_fit_cancel_raises_cancelled_and_bad_input_raises_fit_error():
    init = axis_angle_to_matrix(random_poses(2))
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        fit_poses(init, torch.zeros(2, 3), prior=tiny(), iters=50, cancelled=cancelled)
    assert len(calls) == 4
    with pytest.raises(FitError, match="shape"):
        fit_poses(init[:, :20], torch.zeros(2, 3), prior=tiny())
    bad = init.clone()
    bad[0, 3, 0, 0] = float("nan")
    with pytest.raises(FitError, match="NaN"):
        fit_poses(bad, torch.zeros(2, 3), prior=tiny())


def _fake_cache(folder):
    """A two-clip canonical cache in the format of poseforge.backend.data.dataset."""
    folder.mkdir()
    g = np.random.default_rng(0)
    clips = {}
    for name, split in (("dataset-2_walk_normal_001", "train"), ("dataset-2_walk_normal_005", "test")):
        aa = torch.from_numpy(0.3 * g.standard_normal((40, 22, 3))).float()
        from poseforge.backend.rotations import axis_angle_to_quat
        np.savez(folder / f"{name}.npz", rotations=axis_angle_to_quat(aa).numpy(),
                 root=np.zeros((40, 3), np.float32), fps=30.0)
        clips[name] = {"file": f"{name}.npz", "source": name + ".bvh", "preset": "bandai", "frames": 40, "split": split}
    (folder / "index.json").write_text(json.dumps({"version": 1, "fps": 30, "data_hash": "abc123", "clips": clips,
                                                   "skipped": {}, "frames": {"train": 40, "test": 40}}))
    return folder


def test_training_command_writes_loadable_weights_and_resumes(tmp_path, monkeypatch, capsys):
    from argparse import Namespace
    from poseforge.backend.train.dposer import cli_main
    cache = _fake_cache(tmp_path / "cache")
    monkeypatch.setenv("POSEFORGE_DPOSER_CONFIG", json.dumps(
        {"hidden": 32, "blocks": 1, "time_dim": 16, "batch": 16, "warmup": 2, "representation": "axis_angle"}))
    args = Namespace(data=[cache], out=tmp_path / "run", steps=6, seed=0, device="cpu", resume=False)
    assert cli_main(args) == 0
    model = load_model("dposer", DPoser, tmp_path / "run")
    card = load_card("dposer", tmp_path / "run")
    assert model.config.hidden == 32 and card["training"]["steps_done"] == 6
    assert card["data"]["data_hash"] == "abc123" and "CC BY-NC 4.0" in card["licence"]
    assert card["metrics"]["heldout_fit"]["poses"] == card["metrics"]["heldout_poses"] == 4  # every 10th test frame
    assert (tmp_path / "run" / "dposer.ckpt.safetensors").is_file()
    assert cli_main(Namespace(**{**vars(args), "steps": 9, "resume": True})) == 0
    assert "resumed" in capsys.readouterr().out
    assert load_card("dposer", tmp_path / "run")["training"]["steps_done"] == 9
    # a folder that is neither a cache nor exists: a clear error, exit code 2
    assert cli_main(Namespace(**{**vars(args), "data": [tmp_path / "nope"]})) == 2
