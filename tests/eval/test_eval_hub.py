"""hf:// URIs resolve through a huggingface_hub cache (made here); offline misses fail fast and say what to do."""
import time

import pytest

from dmf.models.hub import parse_hf_uri, resolve_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_cache(root, repo="kyungmnlee/DMF", files=("dmf_xl_2_256.pt",), repo_type="models"):
    repo_dir = root / f"{repo_type}--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / COMMIT
    for name in files:
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_bytes(b"weights:" + name.encode())
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return snap


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def test_resolves_from_local_cache(hf_cache):
    snap = make_cache(hf_cache, files=("dmf_xl_2_256.pt", "stats/imgnet256.pkl"))
    path = resolve_path("hf://kyungmnlee/DMF/dmf_xl_2_256.pt")
    assert path == snap / "dmf_xl_2_256.pt" and path.read_bytes() == b"weights:dmf_xl_2_256.pt"
    assert resolve_path("hf://kyungmnlee/DMF/stats/imgnet256.pkl").name == "imgnet256.pkl"
    assert resolve_path(f"hf://kyungmnlee/DMF@{COMMIT}/dmf_xl_2_256.pt") == path
    make_cache(hf_cache, repo="someone/refs", files=("ref.npz",), repo_type="datasets")
    assert resolve_path("hf://datasets/someone/refs/ref.npz").read_bytes() == b"weights:ref.npz"


def test_offline_miss_is_fast_and_clear(hf_cache):
    make_cache(hf_cache)
    t = time.time()
    with pytest.raises(FileNotFoundError) as err:
        resolve_path("hf://kyungmnlee/DMF/dmf_xl_2_512.pt")
    assert time.time() - t < 0.5
    msg = str(err.value)
    assert "hf://kyungmnlee/DMF/dmf_xl_2_512.pt" in msg and "HF_HUB_OFFLINE" in msg
    assert "hf download kyungmnlee/DMF dmf_xl_2_512.pt" in msg and str(hf_cache) in msg


def test_local_paths_and_bad_uris(tmp_path):
    f = tmp_path / "w.pt"
    f.write_bytes(b"x")
    assert resolve_path(str(f)) == f
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_path(str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="hf://"):
        resolve_path("hf://only-owner/file.pt")
    assert parse_hf_uri("hf://a/b@v1/c/d.pt") == ("a/b", "c/d.pt", "v1", None)


def test_errors_name_the_config_key(tmp_path):
    """Every caller passes the key the user typed; the error starts with it and keeps its type."""
    with pytest.raises(FileNotFoundError, match=r"^guidance\.teacher\.ckpt: .*missing\.pt does not exist"):
        resolve_path(str(tmp_path / "missing.pt"), key="guidance.teacher.ckpt")
    with pytest.raises(ValueError, match=r"^ckpt: 'hf://only-owner/file\.pt' is not hf://"):
        resolve_path("hf://only-owner/file.pt", key="ckpt")


def test_feature_weights_by_hf_uri_do_not_download_with_download_weights_false(tmp_path, monkeypatch):
    """eval.download_weights=false reaches hf:// weights too: a cache hit is used, a miss fails without a call."""
    import huggingface_hub

    from dmf.eval.scoring.features.weights import locate_weights

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("DMF_OFFLINE", raising=False)
    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kw: calls.append(kw))
    snap = make_cache(tmp_path / "hub", repo="timm/dino", files=("model.safetensors",))
    found = locate_weights("hf://timm/dino/model.safetensors", "x.pth", None, "DINOv2", "eval.dinov2_weights",
                           download=False)
    assert found == snap / "model.safetensors"
    with pytest.raises(FileNotFoundError, match="eval.dinov2_weights .*downloads are off for it"):
        locate_weights("hf://timm/dino/other.safetensors", "x.pth", None, "DINOv2", "eval.dinov2_weights",
                       download=False)
    assert calls == []


def test_a_folder_where_a_file_belongs_is_named_as_such(tmp_path):
    """ckpt=<run_dir> (the folder, not its checkpoint) said "does not exist" or failed hashing it."""
    with pytest.raises(FileNotFoundError, match="is a folder; expected a file in it"):
        resolve_path(str(tmp_path), key="ckpt")
