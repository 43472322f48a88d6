"""Blind face restoration: the BFR degradation, the face data layouts, the identity metric, face evaluation."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.trainer.policy_fixtures import seeded_policy
from trainer.config import ConfigError, DataConfig, FaceConfig, TrainConfig, load_config
from trainer.data import DataLayoutError, build_eval_sets, build_train_dataset
from trainer.data.degradations import synthesize
from trainer.data.face import SEVERE, bfr_degradation, draw, jpeg
from trainer.data.sources import real_world_sets
from trainer.demo.report import summarise, write_results
from trainer.demo.run import scored_by
from trainer.evaluate import evaluate
from trainer.evaluate_real_world import evaluate_real_world
from trainer.face_identity import IdentityMetric, IdentityWeightsError
from trainer.model import model_preset

# smooth like a face at this size (a pixel-noise image would lose its colour detail to JPEG's chroma subsampling)
FACE = F.interpolate(0.3 + 0.4 * torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), size=(64, 64), mode="bilinear")[0]


def test_draws_stay_in_the_configured_ranges_and_cover_them():
    ranges = FaceConfig()
    g = torch.Generator().manual_seed(0)
    draws = [draw(ranges, g) for _ in range(2000)]
    for name in ("blur_sigma", "downsample", "noise", "jpeg_quality"):
        values = np.array([getattr(d, name) for d in draws])
        low, high = getattr(ranges, name)
        assert values.min() >= low and values.max() <= high, name
        assert values.min() < low + 0.02 * (high - low) + 0.5 * (name == "jpeg_quality") and values.max() > high - 0.02 * (high - low) - 0.5 * (name == "jpeg_quality"), name
    assert all(isinstance(d.jpeg_quality, int) for d in draws)
    assert ranges.blur_sigma == (0.1, 10.0) and ranges.downsample == (0.8, 8.0) and ranges.noise == (0.0, 20.0) and ranges.jpeg_quality == (60, 100)  # GFPGAN's


def test_degradation_is_deterministic_under_a_seed_and_in_range():
    degrade = bfr_degradation(FaceConfig(size=64))
    a = synthesize(FACE, degrade, 7)
    assert torch.equal(a, synthesize(FACE, degrade, 7))
    assert not torch.equal(a, synthesize(FACE, degrade, 8))
    assert a.shape == FACE.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(synthesize(FACE, bfr_degradation(SEVERE), 7), a)


def test_each_factor_acts_as_its_range_says():
    neutral = dict(blur_sigma=(0.1, 0.1), downsample=(1.0, 1.0), noise=(0.0, 0.0), jpeg_quality=(100, 100))
    flat = torch.full((3, 64, 64), 0.5)
    noisy = synthesize(flat, bfr_degradation(FaceConfig(**neutral | {"noise": (20.0, 20.0)})), 0)
    # sigma 20 on the 0-255 scale per channel; JPEG's 4:2:0 chroma subsampling (as OpenCV's, GFPGAN's encoder) smooths
    # the colour noise, so compare the luma, which it keeps: std 20 * |(0.299, 0.587, 0.114)|
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    assert ((noisy - flat) * luma).sum(0).std().item() * 255 == pytest.approx(20 * luma.norm().item(), rel=0.1)
    near = synthesize(FACE, bfr_degradation(FaceConfig(**neutral)), 0)
    assert (near - FACE).abs().mean() < 0.01  # every factor neutral: the 8-bit JPEG at quality 100 only
    small = synthesize(FACE, bfr_degradation(FaceConfig(**neutral | {"downsample": (8.0, 8.0)})), 0)
    assert (small - FACE).abs().mean() > 5 * (near - FACE).abs().mean()
    assert (jpeg(FACE, 10) - FACE).abs().mean() > (jpeg(FACE, 95) - FACE).abs().mean()


def test_ranges_are_validated():
    with pytest.raises(ValueError, match="blur_sigma"):
        FaceConfig(blur_sigma=(5.0, 1.0))
    with pytest.raises(ValueError, match="JPEG"):
        FaceConfig(jpeg_quality=(60, 120))
    with pytest.raises(ValueError, match="face task only"):
        DataConfig(source="face", tasks=["denoise"])


def _faces(folder, names, size=32):
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(len(names))
    for n in names:
        Image.fromarray(g.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{n}.png")


def _face_cfg(root, **face):
    return TrainConfig(model=model_preset("micro"), data={"source": "face", "root": root, "tasks": ["face"], "crop_size": 32,
                                                          "face": {"size": 32} | face})


def test_face_layouts_load(tmp_path):
    _faces(tmp_path / "train", ["a", "b"])
    _faces(tmp_path / "test", ["c"])
    cfg = _face_cfg(tmp_path, real_world={"web": tmp_path / "web"})
    _faces(tmp_path / "web", ["w1", "w2"])
    train = build_train_dataset(cfg.data)
    assert train.ids == ["face/bfr/a", "face/bfr/b"] and train[0]["degraded"].shape == (3, 32, 32)
    assert list(build_eval_sets(cfg.data)) == ["face"] and build_eval_sets(cfg.data, ood=True)["face"].ids == ["face/severe/c"]
    assert [p.name for p in real_world_sets(cfg.data)["web"]] == ["w1.png", "w2.png"]
    # CelebA-Test style: given pairs instead of synthesised ones
    (tmp_path / "test" / "c.png").unlink()
    _faces(tmp_path / "test" / "input", ["p"])
    _faces(tmp_path / "test" / "target", ["p"])
    pair = build_eval_sets(cfg.data)["face"]
    assert pair.ids == ["face/p"] and pair.specs[0].degraded.parent.name == "input"


def test_training_faces_are_mirrored_never_rotated(tmp_path):
    _faces(tmp_path / "train", ["a"])
    _faces(tmp_path / "test", ["c"])
    train = build_train_dataset(_face_cfg(tmp_path).data)
    target = train.pair(0)[1]
    for epoch in range(12):
        train.set_epoch(epoch)
        out = train[0]["target"]
        assert torch.equal(out, target) or torch.equal(out, target.flip(-1))


@pytest.mark.parametrize("case,match", [
    ("no_train", "folder not found"),
    ("wrong_size", r"40x40, expected an aligned 32x32 face"),
    ("paired_train", "not input/ \\+ target/ pairs"),
    ("input_without_target", "folder not found: .*target"),
    ("stray", "input/ and target/ only"),
    ("empty_real", "no face images"),
    ("paired_real", "real-world set 'web' is a folder of face images"),
])
def test_wrong_face_layouts_are_clear_errors(tmp_path, case, match):
    if case != "no_train":
        _faces(tmp_path / "train", ["a"], size=40 if case == "wrong_size" else 32)
    _faces(tmp_path / "test", ["c"])
    real = {}
    if case == "paired_train":
        _faces(tmp_path / "train" / "input", ["x"])
        _faces(tmp_path / "train" / "target", ["x"])
    if case in ("input_without_target", "stray"):
        (tmp_path / "test" / "c.png").unlink()
        _faces(tmp_path / "test" / "input", ["p"])
        if case == "stray":
            _faces(tmp_path / "test" / "target", ["p"])
            _faces(tmp_path / "test", ["loose"])
    if case == "empty_real":
        (tmp_path / "web").mkdir()
        real = {"web": tmp_path / "web"}
    if case == "paired_real":
        _faces(tmp_path / "web" / "target", ["x"])
        real = {"web": tmp_path / "web"}
    cfg = _face_cfg(tmp_path, real_world=real)
    with pytest.raises(DataLayoutError, match=match):
        if case in ("empty_real", "paired_real"):
            real_world_sets(cfg.data)
        elif case in ("input_without_target", "stray"):
            build_eval_sets(cfg.data)
        else:
            build_train_dataset(cfg.data)


def test_identity_is_the_cosine_of_the_embeddings_computed_by_hand():
    metric = IdentityMetric("r18", seed=3)
    assert metric.random and "RANDOM" in metric.describe()
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    got = metric(a, b)
    with torch.no_grad():
        prep = lambda x: (F.interpolate(x, size=(112, 112), mode="bilinear", antialias=True, align_corners=False) - 0.5) / 0.5  # noqa: E731
        ea, eb = metric.net(prep(a)).double().numpy(), metric.net(prep(b)).double().numpy()
    by_hand = [float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(ea, eb)]
    assert got.tolist() == pytest.approx(by_hand, abs=1e-5)
    assert metric(a, a).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


def test_identity_weights_load_by_arcface_key_names(tmp_path):
    source = IdentityMetric("r18", seed=5)
    state = source.net.state_dict()
    assert {"conv1.weight", "layer1.0.downsample.0.weight", "layer4.1.bn3.running_var", "fc.weight", "features.weight"} <= set(state)
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "backbone.pth")
    loaded = IdentityMetric("r18", tmp_path / "backbone.pth", seed=9)
    assert not loaded.random and "backbone.pth" in loaded.describe()
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    assert torch.equal(loaded(x, y), source(x, y))
    with pytest.raises(IdentityWeightsError, match="not an ArcFace IResNet of this depth"):
        IdentityMetric("r34", tmp_path / "backbone.pth")
    with pytest.raises(IdentityWeightsError, match="not found"):
        IdentityMetric("r18", tmp_path / "missing.pth")


def test_face_evaluation_reports_identity_on_random_weights(tmp_path):
    _faces(tmp_path / "train", ["a"])
    _faces(tmp_path / "test", ["c", "d"])
    cfg = _face_cfg(tmp_path).model_copy(update={"eval": TrainConfig().eval.model_copy(update={"identity_arch": "r18"})})
    res = evaluate(cfg, seeded_policy(0, cfg.model))
    assert "RANDOM" in res["identity_network"]
    rows = res["per_image"]
    assert len(rows) == 2 and all(-1 <= r["identity"] <= 1 and "input_identity" in r for r in rows)
    assert res["average"]["identity"] == pytest.approx(np.mean([r["identity"] for r in rows]))


def test_the_face_presets_load():
    for path in ("configs/paper-lrpo-faces.yaml", "configs/cpu-smoke-faces.yaml"):
        cfg = load_config(path)
        assert cfg.policy.kind == "diffusion" and cfg.data.tasks == ["face"]
        assert cfg.policy.diffusion.rl.gt_likelihood_coef > 0 and cfg.policy.diffusion.rl.noise_level_weighting != "uniform"
        w = cfg.reward.weights
        assert w.hps > 0 and w.clip_iqa > 0 and w.ssim > 0 and w.task == 0 and w.judge == 0
        assert not any(getattr(w, t) for t in ("clip_similarity", "lpips", "aesthetic", "psnr", "brisque", "niqe", "piqe"))
    with pytest.raises(ConfigError, match="face task only"):
        load_config("configs/paper-lrpo-faces.yaml", ["data.tasks=[denoise]"])


def test_face_evaluation_scores_samples_and_measures_by_photo(tmp_path):
    _faces(tmp_path / "train", ["a"])
    _faces(tmp_path / "test", ["c", "d"])
    base = _face_cfg(tmp_path)
    cfg = base.model_copy(update={"eval": base.eval.model_copy(update={"identity_arch": "r18", "samples": 2})})
    calls = []

    def measure(out, target, degraded, task):  # one call per image for all its restorations, as the demo's one request
        calls.append(out.shape[0])
        return [{"reward": float(o.mean()), "lpips": 0.1} for o in out]

    res = evaluate(cfg, seeded_policy(0, cfg.model), measure=measure)
    assert calls == [1, 2, 1, 2]  # the deterministic output, then its 2 samples, per face
    row = res["per_image"][0]
    assert row["photo"] == "c" and {"identity", "identity_sampled", "reward", "reward_sampled", "lpips", "input_identity"} <= set(row)
    assert row["lpips_sampled"] == pytest.approx(0.1)
    assert res["average"]["identity_sampled"] == pytest.approx(np.mean([r["identity_sampled"] for r in res["per_image"]]))


def test_the_report_judges_identity_by_photo_and_shows_the_face_table(tmp_path):
    def ev(shift):
        rows = [{"id": f"face/{p}", "photo": p, "column": "face", "psnr": 20.0 + shift, "ssim": 0.5, "reward": 0.3 + shift,
                 "identity": 0.7 + shift * k, "input_psnr": 18.0, "input_ssim": 0.4} for k, p in zip((1.0, 1.1, 1.2), ["p1", "p2", "p3"])]
        avg = {m: float(np.mean([r[m] for r in rows])) for m in ("psnr", "ssim", "reward", "identity")}
        one = {"convention": "skimage", "ood": False, "columns": {"face": avg | {"n": 3}}, "average": avg, "average_table2": None, "per_image": rows}
        return {"id": one, "ood": one | {"ood": True}}

    evals = {"pretrained": ev(0.0), "sft_control": ev(0.01), "grpo_hard": ev(0.02), "grpo_random": ev(0.0)}
    arms, verdicts = summarise(evals)
    assert arms["grpo_hard"]["id"]["delta_identity_vs_pretrained"] == pytest.approx(0.022)  # mean of 0.02 * (1, 1.1, 1.2) over 3 photos
    assert any("identity similarity improved" in v and "3 photos" in v for v in verdicts)
    text, _ = write_results(evals, {}, tmp_path)
    assert "| grpo_hard | 0.7220 | nan | +0.022 +- " in text and "identity similarity (cosine of ArcFace embeddings" in text


def test_real_world_faces_get_every_no_reference_metric_the_service_returns(tmp_path):
    _faces(tmp_path / "train", ["a"])
    _faces(tmp_path / "test", ["c"])
    _faces(tmp_path / "web", ["w1", "w2"])
    cfg = _face_cfg(tmp_path, real_world={"web": tmp_path / "web"})
    cfg = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"weights": cfg.reward.weights.model_copy(update={"piqe": 1.0})})})

    class Service:  # stands in for the reward service: a no-reference request gets PIQE and CLIP-IQA, as a 64 px face would
        def score_batch(self, images, tasks):
            assert tasks == ["face"] and images.shape[0] == 1
            m = float(images.mean())
            return [SimpleNamespace(metrics={"piqe": 100 * m, "clip_iqa": m}, terms={"piqe": 1 - m, "clip_iqa": m})]

    res = evaluate_real_world(cfg, seeded_policy(0, cfg.model), Service())["web"]
    assert res["n"] == 2 and set(res["metrics"]) == {"piqe", "clip_iqa", "reward_nr"} and set(res["input"]) == set(res["metrics"])
    for r in res["per_image"]:  # R_nr weights the present terms with the trainer's weights, renormalised
        w = cfg.reward.weights
        assert r["reward_nr"] == pytest.approx((w.piqe * (1 - r["clip_iqa"]) + w.clip_iqa * r["clip_iqa"]) / (w.piqe + w.clip_iqa))


def test_the_demo_and_experiment_score_faces_with_r_and_lpips_from_one_request(tmp_path):
    requests = []

    class FakeScorer:  # stands in for trainer.actors.scoring.Scorer
        def score(self, out, target, degraded, tasks, group_size):
            requests.append((tuple(out.shape), tuple(target.shape), tasks, group_size))
            n = out.shape[0]
            return SimpleNamespace(rewards=torch.arange(n, dtype=torch.float32), metrics={"lpips": torch.full((n,), 0.25)})

    out, target = torch.rand(3, 3, 32, 32) * 2, torch.rand(3, 32, 32)
    face = scored_by(_face_cfg(tmp_path), FakeScorer())
    assert list(face) == ["measure"] and face["measure"](out, target, target, "face") == [{"reward": float(k), "lpips": 0.25} for k in range(3)]
    other = scored_by(TrainConfig(), FakeScorer())
    assert list(other) == ["reward"] and other["reward"](out, target, target, "derain") == [0.0, 1.0, 2.0]
    assert requests == [((3, 3, 32, 32), (3, 3, 32, 32), ["face"] * 3, 3), ((3, 3, 32, 32), (3, 3, 32, 32), ["derain"] * 3, 3)]
