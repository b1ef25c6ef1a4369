"""Reference statistics files: EDM2 pickle and ADM npz round trips, safety, no silent overwrite."""
import pickle

import numpy as np
import pytest

from dmf.eval.reference.files import load_reference, save_reference


def stats(d, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    return {"mu": rng.normal(size=d), "sigma": a @ a.T}


def test_pickle_round_trip_and_edm2_layout(tmp_path):
    ref = {"fid": stats(6), "fd_dinov2": stats(4, 1), "pr": {"features": np.ones((5, 6), np.float32)}}
    path = save_reference(ref, tmp_path / "ref.pkl")
    back = load_reference(str(path))
    assert set(back) == {"fid", "fd_dinov2", "pr"}
    np.testing.assert_array_equal(back["fid"]["sigma"], ref["fid"]["sigma"])
    np.testing.assert_array_equal(back["pr"]["features"], ref["pr"]["features"])
    # a file written the way EDM2's calculate_metrics writes it (plain pickle.dump of the dict)
    with open(tmp_path / "edm2.pkl", "wb") as f:
        pickle.dump({"fid": stats(3), "fd_dinov2": stats(2)}, f)
    assert load_reference(str(tmp_path / "edm2.pkl"))["fd_dinov2"]["mu"].shape == (2,)


def test_npz_round_trip_and_adm_extra_keys(tmp_path):
    ref = {"fid": stats(5)}
    back = load_reference(str(save_reference(ref, tmp_path / "ref.npz")))
    np.testing.assert_array_equal(back["fid"]["mu"], ref["fid"]["mu"])
    # ADM reference batches also hold spatial statistics and images: only mu/sigma are read
    np.savez(tmp_path / "adm.npz", mu=ref["fid"]["mu"], sigma=ref["fid"]["sigma"], mu_s=np.zeros(2),
             arr_0=np.zeros((1, 4, 4, 3), np.uint8))
    assert set(load_reference(str(tmp_path / "adm.npz"))) == {"fid"}
    with pytest.raises(ValueError, match="mu"):
        np.savez(tmp_path / "bad.npz", foo=np.zeros(2))
        load_reference(str(tmp_path / "bad.npz"))


def test_never_overwrites_and_npz_only_holds_fid(tmp_path):
    path = save_reference({"fid": stats(3)}, tmp_path / "ref.pkl")
    with pytest.raises(FileExistsError, match="eval.overwrite=true"):
        save_reference({"fid": stats(3)}, path)
    save_reference({"fid": stats(3, 7)}, path, overwrite=True)
    with pytest.raises(ValueError, match="only Inception"):
        save_reference({"fid": stats(3), "fd_dinov2": stats(2)}, tmp_path / "x.npz")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_with_code_is_refused(tmp_path):
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"fid": {"mu": Evil()}}, f)
    with pytest.raises(ValueError, match="builtins.print"):
        load_reference(str(tmp_path / "evil.pkl"))
