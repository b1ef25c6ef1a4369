"""What a checkpoint's weights were trained with (the config it records) against the config that samples or exports
them: the keys such a mode reads that the weights fix (the network, the interpolation path) can only take the values
they were trained with."""
from omegaconf import DictConfig, OmegaConf

from dmf.core.launch import leads_launch
from dmf.core.options import flatten, under
from dmf.models.checkpoint import recorded_config
from dmf.models.hub import resolve_path

# keys a sampling mode reads whose one right value is the training's; sampler.path is the sampler's copy of time.path
TRAINED_WITH = ("model", "time.path", "data.resolution", "data.latent_downsample", "data.latent_channels",
                "data.num_classes")
SAME_AS = {"sampler.path": "time.path"}
RUNTIME = ("model.attention", "model.compile")  # how the network runs, not what it is
# taken from the checkpoint when the config says otherwise: a single value nothing else checks (the network's keys
# are checked as the weights load, against the architecture the checkpoint records and every tensor's shape)
FOLLOWED = ("time.path",)
UNSET = object()


def checkpoint_record(cfg: DictConfig) -> dict | None:
    """The config cfg.ckpt records; None without a ckpt or a record (published weights, exports)."""
    return recorded_config(resolve_path(cfg.ckpt, key="ckpt")) if cfg.get("ckpt") else None


def recorded(record: dict | None, key: str):
    """record's value at a dotted key, or UNSET."""
    node = record
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return UNSET
        node = node[part]
    return node


def trained_key(key: str) -> str | None:
    """The recorded key whose value `key` must have, or None for a key the weights do not fix."""
    key = SAME_AS.get(key, key)
    return key if under(key, TRAINED_WITH) and not under(key, RUNTIME) else None


def trained_differences(cfg: DictConfig, key: str, record: dict) -> list[tuple[str, object, object]]:
    """(key, this config's value, the checkpoint's) for each value at or under `key` that the weights fix and the
    checkpoint records otherwise."""
    node = OmegaConf.select(cfg, key, default=None)
    values = flatten(OmegaConf.to_container(node, resolve=True), key + ".") if isinstance(node, DictConfig) \
        else {key: node}
    out = []
    for leaf, value in values.items():
        fixed = trained_key(leaf)
        was = recorded(record, fixed) if fixed else UNSET
        if was is not UNSET and was != value:
            out.append((leaf, value, was))
    return out


def follow_checkpoint(cfg: DictConfig) -> None:
    """mode=eval and mode=sample: FOLLOWED keys the config sets otherwise than the checkpoint's training take the
    checkpoint's value, said once (a key typed otherwise was refused by validate_typed already)."""
    record = checkpoint_record(cfg)
    for key in FOLLOWED:
        was = recorded(record, key)
        if was is not UNSET and was != OmegaConf.select(cfg, key):
            if leads_launch():
                print(f"[dmf] {key}={was}: the checkpoint was trained with it (the config says "
                      f"{OmegaConf.select(cfg, key)}), and its weights sample only that", flush=True)
            OmegaConf.update(cfg, key, was)
