"""VAE posterior moments -> training latents. Stored moments are [mean (C), std (C)] along dim 0."""
import io

import numpy as np
import torch

from dmf.data.errors import DataError


def expected_shape(latent_channels: int | None, latent_size: int | None) -> tuple[int, int, int] | None:
    """(2C, s, s) when the data config gives both; None means 'learn the shape from the first file'."""
    if latent_channels is None or latent_size is None:
        return None
    return (2 * int(latent_channels), int(latent_size), int(latent_size))


_HEADERS: dict[bytes, tuple] = {}  # npy header bytes -> (dtype, shape, fortran): all our files share a few


def _parse_npy(data: bytes) -> np.ndarray:
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        raise ValueError("not an .npy file (bad magic)")
    start = 10 if data[6] == 1 else 12
    size = int.from_bytes(data[8:start], "little")
    header = bytes(data[start:start + size])
    info = _HEADERS.get(header)
    if info is None:  # numpy's own (slow, literal_eval) parser, once per distinct header
        fp = io.BytesIO(data)
        version = np.lib.format.read_magic(fp)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fp)
        if dtype.hasobject:
            raise ValueError("object arrays are not moments")
        info = _HEADERS.setdefault(header, (dtype, shape, fortran))
    dtype, shape, fortran = info
    count = int(np.prod(shape))
    offset = start + size
    if len(data) - offset < count * dtype.itemsize:
        raise ValueError(f"{len(data) - offset} data bytes for {count} values of {dtype}: truncated")
    arr = np.frombuffer(data, dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C").copy()


def load_npy(data: bytes | str, name: str) -> np.ndarray:
    """An .npy from bytes or a path; any failure becomes a DataError naming `name`."""
    try:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            with open(data, "rb") as f:
                data = f.read()
        return _parse_npy(data)
    except FileNotFoundError as err:
        raise DataError(f"{name}: the file is missing (listed in the index but not on disk); re-run "
                        f"preprocessing, or set data.on_error=skip") from err
    except Exception as err:  # truncated header, bad magic, short data: all mean a corrupt file
        raise DataError(f"{name}: cannot read the .npy ({type(err).__name__}: {err}); the file is corrupt or "
                        f"truncated: re-run preprocessing for it, or set data.on_error=skip") from err


def check_moments(arr: np.ndarray, shape: tuple[int, int, int] | None, name: str) -> np.ndarray:
    """Validate one moments array; returns it as float32. Never lets a wrong sample through silently."""
    if arr.ndim != 3 or arr.shape[0] % 2:
        raise DataError(f"{name}: moments have shape {arr.shape}, expected (2*C, H, W) = [mean; std]")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise DataError(
            f"{name}: moments have shape {tuple(arr.shape)} but the data config expects {tuple(shape)} "
            f"(2*latent_channels, latent_size, latent_size): these latents were made at another resolution "
            f"or with another VAE; pick the matching data config (e.g. data=imagenet512_latents)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{name}: moments have dtype {arr.dtype}, expected a float type")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise DataError(f"{name}: moments contain NaN or inf")
    if (arr[arr.shape[0] // 2:] < 0).any():
        raise DataError(f"{name}: the std half of the moments has negative values (not [mean; std] moments)")
    return arr


def sample_latent(moments, scale: float, generator: torch.Generator | None = None, flip: bool = False) -> torch.Tensor:
    """(mean + std * e) * scale with fresh e ~ N(0, I); `flip` mirrors along W (a flip of the image).

    The noise comes from torch's RNG (seeded per worker / per generator); the arithmetic runs in numpy,
    which on arrays this small costs a fraction of torch's per-op overhead."""
    m = np.asarray(moments)
    c = m.shape[0] // 2
    noise = torch.randn((c, *m.shape[1:]), generator=generator).numpy()
    x = m[c:] * noise
    x += m[:c]
    x *= np.float32(scale)
    if flip:
        x = x[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
