"""The demo's pre-training cache (trainer/demo/cache.py): reused while its inputs are unchanged, redone when one changes."""

from __future__ import annotations

from trainer.config import load_config
from trainer.demo.cache import cached_pretrain
from trainer.demo.corpus import write_standin_corpus


def test_pretrained_weights_are_reused_until_a_setting_changes(tmp_path, capsys):
    data = write_standin_corpus(tmp_path / "data", n_train=2, n_test=1)
    sets = [f"data.root={data}", "data.tasks=[denoise]", "data.crop_size=32", "pretrain.steps=2", "pretrain.crop_size=32",
            f"pretrain.output={tmp_path / 'pre.safetensors'}"]
    cfg = load_config("configs/cpu-demo.yaml", sets)
    first, reused = cached_pretrain(cfg, None)
    assert not reused and first.is_file()
    written = first.read_bytes()
    again, reused = cached_pretrain(cfg, None)
    assert reused and again == first and again.read_bytes() == written
    assert "[pretrain] reusing" in capsys.readouterr().out
    # one more step changes the weights: the cache must not answer for it
    _, reused = cached_pretrain(load_config("configs/cpu-demo.yaml", sets + ["pretrain.steps=3"]), None)
    assert not reused
    corpus = {"short_side": 512, "files": ["a.png"]}
    _, reused = cached_pretrain(load_config("configs/cpu-demo.yaml", sets + ["pretrain.steps=3"]), corpus)
    assert not reused  # another corpus, another key
