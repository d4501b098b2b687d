"""Images into the model: every unreadable input is named, folders and missing files included."""

from __future__ import annotations

from PIL import Image


def test_verify_names_every_unreadable_input(tiny_index, cli, tmp_path):
    """Two unreadable images named only the first; a folder was "image not found"."""
    ckpt = tiny_index["ckpt"]
    a, b = tmp_path / "a.jpg", tmp_path / "b.png"
    a.write_bytes(b"not an image")
    b.write_bytes(b"")
    code, _, err = cli("verify", a, b, "--checkpoint", ckpt, "--device", "cpu")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and str(a) in lines[0] and str(b) in lines[0]
    assert lines[0].count("unreadable image") == 2
    folder = tmp_path / "crops"
    folder.mkdir()
    code, _, err = cli("verify", folder, tmp_path / "gone.jpg", "--checkpoint", ckpt)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{folder}: is a folder, not an image" in err
    assert f"{tmp_path / 'gone.jpg'}: image not found" in err
    good = tiny_index["query"]
    code, _, err = cli("verify", good, folder, "--checkpoint", ckpt)
    assert code == 2 and "is a folder, not an image" in err and str(good) not in err
    Image.new("RGB", (8, 16)).save(tmp_path / "ok.png")
    code, out, _ = cli("verify", good, tmp_path / "ok.png", "--checkpoint", ckpt)
    assert code == 0 and out.startswith("similarity ")
