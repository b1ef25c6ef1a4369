"""Resolve weight and statistics locations: local paths, or hf://[datasets/]<owner>/<repo>[@<revision>]/<file>
through the huggingface_hub cache.

The cache is consulted first (no network call for a file already there), and DMF_OFFLINE / HF_HUB_OFFLINE / HF_HOME /
HF_HUB_CACHE are read at call time (huggingface_hub reads them once at import), so an offline miss fails in
milliseconds with the fix instead of ~20 s of retries.
"""
import os
from pathlib import Path

from dmf.core.errors import ConfigError, MissingFileError
from dmf.core.offline import downloads_off, offline_variable

HF_PREFIX = "hf://"
REPO_TYPES = {"datasets": "dataset", "spaces": "space", "models": "model"}


def parse_hf_uri(uri: str) -> tuple[str, str, str | None, str | None]:
    """'hf://owner/repo@rev/dir/file' -> ('owner/repo', 'dir/file', 'rev', None); a 'datasets/' or 'spaces/'
    prefix sets the repo type."""
    rest = uri[len(HF_PREFIX):]
    repo_type = None
    head = rest.split("/", 1)[0]
    if head in REPO_TYPES:
        repo_type, rest = REPO_TYPES[head], rest.split("/", 1)[1] if "/" in rest else ""
    parts = rest.split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{uri!r} is not hf://[datasets/]<owner>/<repo>[@<revision>]/<file>")
    owner, repo, filename = parts
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    return f"{owner}/{repo}", filename, revision or None, repo_type


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def resolve_path(uri: str | os.PathLike, key: str | None = None, download: bool = True) -> Path:
    """A local file for `uri`; hf:// URIs are downloaded once into the huggingface_hub cache (`download=False`: read
    from the cache only). `key`: the config key that named it, put at the front of the error, a usage error run.py
    prints as one line (MissingFileError, a FileNotFoundError; or ConfigError, a ValueError, for a malformed hf://
    URI)."""
    try:
        return _resolve(str(uri), download)
    except (FileNotFoundError, ValueError) as err:
        if key is None:
            raise
        usage = MissingFileError if isinstance(err, FileNotFoundError) else ConfigError  # run.py: one line, no traceback
        raise usage(f"{key}: {err}") from None


def _resolve(uri: str, download: bool) -> Path:
    if not uri.startswith(HF_PREFIX):
        path = Path(uri).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist (expected a local file or an hf://<owner>/<repo>/<file> URI)")
        if path.is_dir():
            raise FileNotFoundError(f"{path} is a folder; expected a file in it (e.g. <run_dir>/checkpoints/last.ckpt)")
        return path
    repo_id, filename, revision, repo_type = parse_hf_uri(uri)
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cache = hf_cache_dir()
    hit = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision, repo_type=repo_type)
    if isinstance(hit, str):
        return Path(hit)
    fix = (f"run `hf download {repo_id} {filename}"
           f"{' --repo-type ' + repo_type if repo_type else ''}{' --revision ' + revision if revision else ''}` "
           f"on a connected machine and copy its cache to {cache} (HF_HOME / HF_HUB_CACHE), or pass a local path")
    if downloads_off() or not download:
        why = f"{offline_variable()} is set" if downloads_off() else "downloads are off for it"
        raise FileNotFoundError(f"{uri} is not in the huggingface_hub cache {cache} and {why}. Fix: {fix}.")
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision, repo_type=repo_type,
                                    cache_dir=cache))
    except Exception as err:  # no network, missing file, no access: one message that says what to do
        raise FileNotFoundError(f"could not fetch {uri} ({type(err).__name__}: {err}). Fix: {fix}. Without network, "
                                f"DMF_OFFLINE=1 makes a missing file fail at once instead of after the retries") from err
