import pytest

from dmf.core.offline import downloads_off, offline_variable
from dmf.models.hub import resolve_path


@pytest.mark.parametrize("name", ["DMF_OFFLINE", "HF_HUB_OFFLINE"])
def test_either_variable_turns_downloads_off_and_is_named_in_the_error(monkeypatch, tmp_path, name):
    for var in ("DMF_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert not downloads_off()
    monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert offline_variable() == name
    with pytest.raises(FileNotFoundError, match=f"{name} is set. Fix: run `hf download owner/repo w.pt`"):
        resolve_path("hf://owner/repo/w.pt")
