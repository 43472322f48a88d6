"""Demo corpus: deterministic split and downscaling; without apt it says it fell back (no network here)."""

from PIL import Image

from trainer.demo import corpus as demo_corpus


def test_fallback_to_skimage_photos_is_announced(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_corpus, "_debian_photos", lambda workdir: ({}, ["apt-get/dpkg-deb not found"]))
    root = tmp_path / "demo"
    assert demo_corpus.main(["--root", str(root), "--short-side", "64"]) == 0
    out = capsys.readouterr()
    assert "4 training + 1 test photos (scikit-image photos only: apt-get/dpkg-deb not found) written" in out.out
    assert "falling back to the scikit-image photos only" in out.err
    test = sorted(p.name for p in (root / "test").iterdir())
    assert test == ["skimage_coffee.png"]  # every 3rd name in sorted order
    for p in (root / "train").iterdir():
        assert min(Image.open(p).size) == 64
    demo_corpus.main(["--root", str(root), "--short-side", "64"])
    assert "already present" in capsys.readouterr().out
    demo_corpus.main(["--root", str(root), "--short-side", "48"])  # other settings: rebuilt
    assert min(Image.open(root / "test" / test[0]).size) == 48
