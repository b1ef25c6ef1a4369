"""Reference statistics written by any Python (pickle protocols 2-5) and numpy (1.x: numpy.core, 2.x: numpy._core)
load; anything else in the pickle is refused."""
import io
import pickle

import numpy as np
import pytest

from dmf.eval.reference.files import load_reference

STATS = {"fid": {"mu": np.arange(4, dtype=np.float64), "sigma": np.eye(4, dtype=np.float32), "n": np.int64(7)}}


class RenamingPickler(pickle._Pickler):
    """Writes global names with a module prefix swapped: the file another numpy version would have written."""

    def __init__(self, file, protocol, rename: dict):
        super().__init__(file, protocol)
        self.rename = rename

    def save_global(self, obj, name=None):
        name = name or obj.__qualname__
        module = pickle.whichmodule(obj, name)
        for old, new in self.rename.items():
            if module == old or module.startswith(old + "."):
                module = new + module[len(old):]
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def dumps(obj, protocol, rename):
    buf = io.BytesIO()
    RenamingPickler(buf, protocol, rename).dump(obj)
    return buf.getvalue()


NUMPY_PATHS = {"numpy 2.x": {"numpy.core": "numpy._core"}, "numpy 1.x": {"numpy._core": "numpy.core"}}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("numpy_paths", sorted(NUMPY_PATHS))
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_protocol_and_numpy_path_loads(tmp_path, protocol, numpy_paths):
    data = dumps(STATS, protocol, NUMPY_PATHS[numpy_paths])
    prefix = "numpy.core" if numpy_paths == "numpy 1.x" else "numpy._core"
    assert prefix.encode() in data
    if protocol == 5:
        assert b"_frombuffer" in data
    path = tmp_path / "ref.pkl"
    path.write_bytes(data)
    ref = load_reference(str(path))
    np.testing.assert_array_equal(ref["fid"]["mu"], STATS["fid"]["mu"])
    np.testing.assert_array_equal(ref["fid"]["sigma"], STATS["fid"]["sigma"])
    assert ref["fid"]["sigma"].dtype == np.float32 and int(ref["fid"]["n"]) == 7


def test_codecs_other_than_latin1_and_other_globals_are_refused(tmp_path):
    path = tmp_path / "ref.pkl"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(ValueError, match="rot13"):
        load_reference(str(path))
    path.write_bytes(pickle.dumps({"fid": {"mu": np.zeros(2)}, "x": print}, protocol=4))
    with pytest.raises(ValueError, match="builtins.print"):
        load_reference(str(path))


@pytest.mark.parametrize("content", [b"", b"mu sigma\n1 2 3\n"])
def test_a_file_that_is_no_statistics_is_one_usage_error(tmp_path, content):
    """An empty .pkl or a text file raised EOFError / ValueError from inside the unpickler, as a traceback."""
    from dmf.core.errors import UsageError

    path = tmp_path / "ref.pkl"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="is not a reference-statistics file"):
        load_reference(str(path))
