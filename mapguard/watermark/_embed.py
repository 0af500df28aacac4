"""``embed``: learn a watermark mask, then write the protected model, watermark and commitment."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from torch import nn

from mapguard._device import default_device
from mapguard._errors import ConfigError, DataError, ModelFileError
from mapguard.checkpoint import ModelMeta, file_sha256, load_checkpoint, save_checkpoint
from mapguard.masking import (
    BatchSource,
    MaskConfig,
    MaskResult,
    TensorSource,
    learn_mask,
    maskable_weights,
)
from mapguard.training import predict_logits
from mapguard.watermark import _files as files
from mapguard.watermark._config import EmbedConfig
from mapguard.watermark._sources import (
    AnticipatedTargetTerm,
    AugmentedSource,
    FeatureTargetTerm,
    NegativeKeySource,
    SecretTriggerSource,
    TargetTerm,
    class_feature_means,
    stack_triggers,
    stamp,
)
from protocols import canonical, keys, statements
from protocols.errors import InputError
from verification import _stats_targeted  # noqa: F401  (registers targeted_patch)
from verification.backends import ModuleBackend
from verification.triggers import Trigger, get_trigger_family, psnr, random_secret
from verification.verify import VerificationResult, VerifyConfig, WatermarkSpec, verify
from verification.watermark_file import encode_verification_set, seal_watermark

__all__ = ["EmbedResult", "embed"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmbedResult:
    """What an embedding produced (public figures only; the secrets stay in ``owner.wm``).

    Attributes:
        out: The output folder.
        files: Path of each written file, by name.
        fingerprint: The owner key's fingerprint.
        commitment_digest: SHA-256 of the signed commitment statement.
        model_sha256: SHA-256 of ``protected.pt``.
        psnr_db: Visibility of the secret triggers (PSNR of triggered vs clean images, dB).
        clean_accuracy_before: Original model on the held-out split.
        clean_accuracy_after: Protected model on the held-out split.
        secret_trigger_accuracy: Protected model on held-out images with each secret trigger.
        target_rate: Fraction of those sent to the secret's target class (targeted families).
        random_key_accuracy: Protected model under random keys of the family (mean).
        random_key_accuracy_before: The original model under the same random keys.
        pruned_fraction: Fraction of weights the mask removed.
        self_check: Public summary of verifying the protected model itself (labels only).
        seconds: Wall time.
    """

    out: Path
    files: Mapping[str, Path]
    fingerprint: str
    commitment_digest: str
    model_sha256: str
    psnr_db: float
    clean_accuracy_before: float
    clean_accuracy_after: float
    secret_trigger_accuracy: tuple[float, ...]
    target_rate: tuple[float, ...] | None
    random_key_accuracy: float
    random_key_accuracy_before: float
    pruned_fraction: float
    self_check: Mapping[str, Any]
    seconds: float

    @property
    def accuracy_drop(self) -> float:
        """Clean accuracy lost by embedding (points of accuracy as a fraction)."""
        return self.clean_accuracy_before - self.clean_accuracy_after

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (safe to publish)."""
        out = dataclasses.asdict(self)
        out["out"] = str(self.out)
        out["files"] = {k: str(v) for k, v in self.files.items()}
        out["accuracy_drop"] = self.accuracy_drop
        return out


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class _Inputs:
    model: nn.Module
    meta: ModelMeta
    source_sha256: str | None
    train: Any
    holdout: Any
    reference: str


def _load_inputs(model: Any, data: Any, meta: ModelMeta | None) -> _Inputs:
    if isinstance(model, str | os.PathLike):
        module, meta = load_checkpoint(model)
        source = file_sha256(model)
    elif isinstance(model, nn.Module):
        if meta is None:
            raise ConfigError("embedding an in-memory model needs meta=ModelMeta(...)")
        module, source = model.eval(), None
    else:
        raise ModelFileError(f"model must be a checkpoint path or a torch module, got {model!r}")
    if isinstance(data, str):
        from mapguard.data import load_data

        train = load_data(data, split="train", progress=False)
        holdout = load_data(data, split="test", progress=False)
        reference = f"{data}#test"
    elif isinstance(data, tuple) and len(data) == 2:
        train, holdout = data
        reference = f"{holdout.name}#{holdout.split}"
    else:
        raise DataError(
            f"data must be a spec such as 'builtin:mnist' or (train, holdout), got {data!r}"
        )
    for part in (train, holdout):
        if part.num_classes != meta.num_classes:
            raise DataError(
                f"data '{part.name}' has {part.num_classes} classes, the model {meta.num_classes}"
            )
    return _Inputs(
        model=module,
        meta=meta,
        source_sha256=source,
        train=train,
        holdout=holdout,
        reference=reference,
    )


def _shared_target(cfg: EmbedConfig, num_classes: int) -> int:
    """The shared target class: uniform, from the config seed (drawn before any secret)."""
    if not cfg.shared_target:
        return -1
    return int(np.random.default_rng([cfg.seed, 0x7A]).integers(num_classes))


def _draw_triggers(
    cfg: EmbedConfig, params: Mapping[str, Any], rng: np.random.Generator | None
) -> tuple[list[bytes], list[Trigger]]:
    """Fresh iid secrets (OS CSPRNG unless a test passes ``rng``) and their triggers."""
    family = get_trigger_family(cfg.family)
    secrets = [random_secret(rng) for _ in range(cfg.n_secrets)]
    return secrets, [family.derive(s, params=params) for s in secrets]


def _learn(
    inp: _Inputs,
    triggers: list[Trigger],
    params: Mapping[str, Any],
    cfg: EmbedConfig,
    device: torch.device,
    progress: bool,
) -> MaskResult:
    x, y = inp.train.floats(), inp.train.labels
    family = get_trigger_family(cfg.family)
    seed = cfg.mask.seed
    negatives: BatchSource = NegativeKeySource(
        x,
        family,
        params,
        seed=seed + 1,
        clean_teacher=cfg.negative_teacher == "clean",
        hard=triggers,
        hard_fraction=cfg.hard_negatives,
    )
    if cfg.augment > 0:
        negatives = AugmentedSource(negatives, cfg.augment, seed=seed + 5)
    keep = [TensorSource(x, seed=seed, name="source"), negatives]
    degrade = SecretTriggerSource(
        x, y, triggers, seed=seed + 2, placeholder=cfg.mask.degrade_weight == 0
    )
    extra: list[Any] = []
    if cfg.targeted() and (cfg.target_weight > 0 or cfg.feature_weight > 0):
        targets = [int(t.details["target"]) for t in triggers]
        src = SecretTriggerSource(x, y, triggers, seed=seed + 3, targets=targets, name="targets")
        term = TargetTerm(cfg.target_weight, src)
        if cfg.augment > 0:
            term.source = AugmentedSource(src, cfg.augment, seed=seed + 6)
        extra.append(term)
    if cfg.feature_weight > 0:
        means = class_feature_means(inp.model, x, y, inp.meta.num_classes)
        extra.append(FeatureTargetTerm(cfg.feature_weight, means))
    if cfg.finetune_step > 0:  # same weight as the targeted term, after a simulated FT step
        extra.append(
            AnticipatedTargetTerm(
                cfg.target_weight, x, y, step=cfg.finetune_step, seed=seed + 4,
                batch_size=cfg.mask.batch_size,
            )
        )  # fmt: skip
    return learn_mask(
        inp.model,
        keep=keep,
        degrade=degrade,
        config=_mask_config(cfg, inp.model),
        extra_terms=extra,
        device=device,
        progress=progress,
    )


def _mask_config(cfg: EmbedConfig, model: nn.Module) -> MaskConfig:
    """The mask options with ``prune_weight`` set from the per-weight ``prune_cost``."""
    if cfg.prune_cost is None:
        return cfg.mask
    n = sum(
        model.get_parameter(name).numel()
        for name in maskable_weights(model, exclude=cfg.mask.exclude)
    )
    return cfg.mask.replace(prune_weight=cfg.prune_cost * n)


def _verification_set(inp: _Inputs, cfg: EmbedConfig) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``n`` held-out images drawn uniformly at random (independently of the secrets)."""
    n = cfg.n_verification
    total = len(inp.holdout)
    if n > total:
        raise ConfigError(f"n_verification={n} exceeds the {total} held-out images")
    rng = np.random.default_rng([cfg.seed, 0x5E7])
    idx = np.sort(rng.choice(total, size=n, replace=False))
    images = inp.holdout.images[torch.from_numpy(idx)].numpy()
    labels = inp.holdout.labels[torch.from_numpy(idx)].numpy()
    return images, labels, [int(i) for i in idx]


@torch.no_grad()
def _labels(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return predict_logits(model, x, device=device).argmax(1)


def _evaluate(
    inp: _Inputs,
    protected: nn.Module,
    triggers: list[Trigger],
    params: Mapping[str, Any],
    cfg: EmbedConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Clean accuracy before/after, accuracy under the secret and under random triggers."""
    x, y = inp.holdout.floats(), inp.holdout.labels
    before = float((_labels(inp.model, x, device) == y).float().mean())
    after = float((_labels(protected, x, device) == y).float().mean())
    secret_acc, target_rate, psnrs = [], [], []
    for t in triggers:
        xt = t.apply(x)
        pred = _labels(protected, xt, device)
        secret_acc.append(float((pred == y).float().mean()))
        if "target" in t.details:
            other = y != t.details["target"]
            target_rate.append(float((pred[other] == t.details["target"]).float().mean()))
        psnrs.append(psnr(x, xt))
    family = get_trigger_family(cfg.family)
    rng = np.random.default_rng([cfg.seed, 0xA11])
    alpha, pattern = stack_triggers(
        [family.derive(random_secret(rng), params=params) for _ in range(x.shape[0])]
    )
    xr = stamp(x, alpha, pattern)
    random_acc = float((_labels(protected, xr, device) == y).float().mean())
    random_before = float((_labels(inp.model, xr, device) == y).float().mean())
    return {
        "clean_accuracy_before": before,
        "clean_accuracy_after": after,
        "secret_trigger_accuracy": tuple(secret_acc),
        "target_rate": tuple(target_rate) if target_rate else None,
        "random_key_accuracy": random_acc,
        "random_key_accuracy_before": random_before,
        "psnr_db": float(np.mean(psnrs)),
    }


def _self_check(
    protected: nn.Module, spec: WatermarkSpec, model_sha256: str, cfg: EmbedConfig
) -> VerificationResult:
    backend = ModuleBackend(protected, labels_only=True, digest="sha256:" + model_sha256)
    config = VerifyConfig(null_keys_per_secret=cfg.null_keys_per_secret, alpha=cfg.alpha)
    return verify(backend, spec, config)


def _self_check_summary(res: VerificationResult) -> dict[str, Any]:
    return {
        "mode": res.mode,
        "pvalue": res.pvalue,
        "pvalue_floor": res.pvalue_floor,
        "evidenced": res.evidenced,
        "ranks": list(res.ranks),
        "queries": res.queries,
        "n_images": res.n_images,
        "secret_statistics": list(res.secret_stats),
        "null_max": res.null_summary.max,
        "null_median": res.null_summary.median,
        "seconds": res.wall_time_s,
    }


def _export(model: nn.Module, path: Path) -> None:
    example = torch.rand(2, 3, 32, 32)
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(model.cpu().eval(), (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def _save_models(
    inp: _Inputs, protected: nn.Module, mask: MaskResult, stage: Path, cfg: EmbedConfig
) -> list[tuple[str, str]]:
    extra = dict(inp.meta.extra)
    extra.update(protection="map-watermark", pruned_fraction=f"{mask.pruned_fraction:.6f}")
    meta = dataclasses.replace(inp.meta, extra=extra)
    save_checkpoint(protected.cpu(), meta, stage / files.MODEL_FILE)
    subjects = [(files.MODEL_FILE, file_sha256(stage / files.MODEL_FILE))]
    if cfg.export:
        _export(protected, stage / files.EXPORT_FILE)
        subjects.append((files.EXPORT_FILE, file_sha256(stage / files.EXPORT_FILE)))
    return subjects


def _core(
    cfg: EmbedConfig,
    params: Mapping[str, Any],
    secrets: list[bytes],
    triggers: list[Trigger],
    vs: dict[str, Any],
) -> dict[str, Any]:
    return {
        "trigger_family": {"name": cfg.family, "parameters": dict(params)},
        "secrets": [
            {
                "secret": s.hex(),
                "trigger": {"details": dict(t.details), "fingerprint": t.fingerprint()},
            }
            for s, t in zip(secrets, triggers, strict=True)
        ],
        "verification_set": vs,
    }


def _method(cfg: EmbedConfig, inp: _Inputs) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mask": {k: v for k, v in cfg.mask.to_dict().items() if k != "seed"},
        "negative_keys": "fresh random key of the family per image and step, held to the "
        f"original model's outputs on the {cfg.negative_teacher} image",
        "hard_negatives": cfg.hard_negatives,
        "prune_cost": cfg.prune_cost,
        "target_weight": cfg.target_weight if cfg.targeted() else 0.0,
        "arch": inp.meta.arch,
    }
    if inp.source_sha256 is not None:
        params["source_model_sha256"] = inp.source_sha256
    return {"name": files.METHOD_NAME, "parameters": params}


def embed(
    model: str | os.PathLike[str] | nn.Module,
    data: str | tuple[Any, Any],
    key: Ed25519PrivateKey,
    config: EmbedConfig | None = None,
    *,
    out: str | os.PathLike[str],
    passphrase: bytes | None = None,
    force: bool = False,
    meta: ModelMeta | None = None,
    device: str | None = None,
    progress: bool = True,
    secret_rng: np.random.Generator | None = None,
) -> EmbedResult:
    """Embed an ownership watermark into ``model`` and write the output folder ``out``.

    Draws ``k`` fresh 256-bit secrets, derives their triggers, learns a MAP mask that keeps the
    source data (clean and stamped with random keys of the family) and breaks the secret
    triggers, reserves held-out verification images, signs a commitment to all of it, checks the
    result by verifying the protected model, and writes, atomically (all files or none):
    ``protected.pt`` (+ ``protected.pt2``), ``owner.wm`` (private, mode 0600, signed, encrypted
    with ``passphrase`` if given), ``commitment.dsse.json``, ``embed-config.json`` and
    ``metrics.json``.

    Args:
        model: A mapguard checkpoint path, or a module together with ``meta``.
        data: ``"builtin:NAME"`` / folder spec (train split: mask learning; test split:
            evaluation and verification images), or ``(train, holdout)`` image sets.
        key: The owner's Ed25519 private key.
        config: Options (defaults: :class:`EmbedConfig`).
        out: Output folder (must not exist unless ``force``).
        passphrase: Encrypt ``owner.wm`` with it.
        force: Replace an existing ``out``.
        meta: Checkpoint metadata of an in-memory ``model``.
        device: Torch device for mask learning.
        progress: Show progress bars.
        secret_rng: Tests only: a seeded generator for the secrets (never in production).

    Raises:
        InputError: bad inputs (typed subclasses: ConfigError, DataError, ModelFileError, ...).
    """
    t0 = time.perf_counter()
    cfg = config or EmbedConfig()
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"key must be an Ed25519 private key, got {type(key).__name__}")
    files.check_output_dir(Path(out), force=force)
    inp = _load_inputs(model, data, meta)
    dev = default_device(device)
    params = cfg.family_params(inp.meta.num_classes, _shared_target(cfg, inp.meta.num_classes))
    secrets, triggers = _draw_triggers(cfg, params, secret_rng)
    images, labels, indices = _verification_set(inp, cfg)  # before learning: independent of it
    mask = _learn(inp, triggers, params, cfg, dev, progress)
    protected = mask.apply(inp.model).to(dev).eval()
    figures = _evaluate(inp, protected, triggers, params, cfg, dev)
    vs = encode_verification_set(images, labels, reference=inp.reference, indices=indices)
    core = _core(cfg, params, secrets, triggers, vs)
    with files.output_dir(Path(out), force=force) as stage:
        subjects = _save_models(inp, protected, mask, stage, cfg)
        result = _write_documents(stage, inp, cfg, key, core, subjects, figures, mask, passphrase)
    out_path = Path(out)
    return EmbedResult(
        out=out_path,
        files={name: out_path / name for name in files.FILES if (out_path / name).exists()},
        fingerprint=keys.fingerprint(key.public_key()),
        commitment_digest=result["commitment_digest"],
        model_sha256=subjects[0][1],
        pruned_fraction=mask.pruned_fraction,
        self_check=result["self_check"],
        seconds=time.perf_counter() - t0,
        **figures,
    )


def _write_documents(
    stage: Path,
    inp: _Inputs,
    cfg: EmbedConfig,
    key: Ed25519PrivateKey,
    core: dict[str, Any],
    subjects: list[tuple[str, str]],
    figures: dict[str, Any],
    mask: MaskResult,
    passphrase: bytes | None,
) -> dict[str, Any]:
    public, opened = files.make_openings(core)
    model_sha = subjects[0][1]
    model_info = {
        "sha256": model_sha,
        "name": files.MODEL_FILE,
        "format": "mapguard-checkpoint",
        "num_classes": inp.meta.num_classes,
    }
    verification = {
        "n_secrets": cfg.n_secrets,
        "null_keys_per_secret": cfg.null_keys_per_secret,
        "queries_per_key": cfg.n_verification,
        "test": files.TEST_NAME,
    }
    statement = files.commitment_statement(
        core=core,
        public=public,
        private_key=key,
        model=model_info,
        subjects=subjects,
        method=_method(cfg, inp),
        verification=verification,
        created=files.now_rfc3339(),
    )
    digest = statements.statement_digest(statement)
    spec = _spec(core, cfg, inp, digest)
    protected_model, _ = load_checkpoint(stage / files.MODEL_FILE)
    check = _self_check_summary(_self_check(protected_model, spec, model_sha, cfg))
    calibration = {**figures, "pruned_fraction": mask.pruned_fraction, "self_check": check}
    doc = files.watermark_document(
        core=core,
        opened=opened,
        statement=statement,
        private_key=key,
        calibration=_jsonable(calibration),
    )
    files.write_private(
        stage / files.WATERMARK_FILE, seal_watermark(doc, key, passphrase=passphrase)
    )
    envelope = statements.sign_statement(statement, key)
    files.write_public_json(stage / files.COMMITMENT_FILE, envelope)
    files.write_public_json(stage / files.CONFIG_FILE, _jsonable(cfg.to_dict()))
    public_metrics = {**figures, "pruned_fraction": mask.pruned_fraction, "self_check": check}
    files.write_public_json(stage / files.METRICS_FILE, _jsonable(public_metrics))
    return {"commitment_digest": digest, "self_check": check}


def _spec(core: Mapping[str, Any], cfg: EmbedConfig, inp: _Inputs, digest: str) -> WatermarkSpec:
    from verification.watermark_file import decode_verification_set

    images, labels = decode_verification_set(core["verification_set"])
    return WatermarkSpec(
        family=cfg.family,
        family_params=dict(core["trigger_family"]["parameters"]),
        secrets=tuple(bytes.fromhex(e["secret"]) for e in core["secrets"]),
        images=images,
        labels=labels,
        num_classes=inp.meta.num_classes,
        commitment_digest=digest,
    )


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON: tuples to lists, non-finite floats refused by canonical JSON."""
    return canonical.loads(json.dumps(obj, allow_nan=False))
