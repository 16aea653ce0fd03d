"""Verifier settings: a frozen dataclass, from flags or a TOML file."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path


@dataclass(frozen=True)
class VerifierConfig:
    deployment: str = ".pol/deployment.json"
    data_root: str = ".pol/verifier"  # journal.sqlite and models/ live here
    listen: str = "127.0.0.1:50051"
    rpc_url: str | None = None  # overrides the deployment's
    data_dir: str | None = None  # CIFAR-10 directory, for cifar10-resnet18
    test_limit: int | None = None
    metrics_port: int | None = None  # Prometheus endpoint; None = off
    max_concurrent_verifications: int = 2  # recomputations at once; the rest wait their turn
    max_inflight_per_client: int = 2  # proofs one client may have in the service at once
    receipt_wait_s: float = 30.0  # how long SubmitProof waits for the attestation receipt
    chunk_size: int = 1 << 20  # GetModel chunk size
    chain_retry_max_s: float = 5.0  # backoff ceiling while the chain node is unreachable
    # Test-set evaluation processes: 0 = in-process; None = one per core (in-process where the whole
    # test set is one eval batch, as for digits-cnn: there is nothing to shard).
    eval_workers: int | None = None
    ray_address: str | None = None  # evaluate on this Ray cluster instead ([verifier.ray] address)
    ray_actors: int | None = None  # Ray actors; None = one per CPU of the cluster ([verifier.ray] actors)
    # Fault injection for crash tests: pause the attester "before_send" or "after_send".
    fault_pause: str | None = None
    fault_pause_s: float = 0.0


def load_config(path: str | Path | None, **overrides) -> VerifierConfig:
    base = VerifierConfig()
    if path:
        doc = dict(tomllib.loads(Path(path).read_text()).get("verifier", {}))
        ray = doc.pop("ray", {})
        # [verifier.ray] names the cluster; only its own two keys mean anything.
        if not isinstance(ray, dict) or set(ray) - {"address", "actors"}:
            raise ValueError(f"{path}: [verifier.ray] takes only address and actors")
        doc.update({f"ray_{k}": v for k, v in ray.items()})
        known = {f.name for f in fields(VerifierConfig)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"{path}: unknown [verifier] keys {unknown}")
        base = replace(base, **doc)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
