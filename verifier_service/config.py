"""Verifier settings: a frozen dataclass, from flags or a TOML file."""
from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file that cannot be used as it is; the message names the file and the key."""


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
    max_inflight_per_client: int = 2  # proofs one client id may have in flight, within its connection's share
    max_inflight_per_connection: int = 4  # proofs one connection (peer address) may have in flight
    max_uploads: int = 64  # proof uploads the service holds at once; more wait, unread (queue_wait_s)
    max_queued_verifications: int = 16  # uploaded proofs waiting for or in verification, in paper verdicts
    max_waiting_uploads: int = 1024  # uploads waiting, unread, for a place in that queue; more get BUSY
    # Uploads let into that queue per second, service-wide: every upload costs the event loop a call, and
    # this keeps headroom for reads on one core (docs/BENCHMARKS.md); raise it on a faster machine.
    max_uploads_per_s: float = 200.0
    queue_wait_s: float = 10.0  # an upload that waits longer than this for a place, or for the queue: BUSY
    refused_burst: float = 1.0  # proofs one connection may have refused at once ...
    refused_per_s: float = 1.0  # ... and per second beyond that; past it, its next upload waits (unread)
    max_watchers: int = 4096  # WatchTip streams at once
    max_streams_per_connection: int = 256
    upload_idle_s: float = 10.0  # an upload that sends nothing for this long is ended
    upload_total_s: float = 60.0  # an upload must be complete within this
    keepalive_s: float = 30.0  # server pings idle connections, so dead peers free their streams
    keepalive_timeout_s: float = 10.0
    max_connection_idle_s: float = 300.0
    max_connection_age_s: float = 3600.0  # connections are recycled (clients reconnect)
    max_connection_age_grace_s: float = 60.0
    rpc_timeout_s: float = 3.0  # one JSON-RPC request; a hung node is flagged after about this
    max_pending_age_s: float = 120.0  # an accepted block older than this without its receipt: degraded
    min_free_bytes: int = 64 << 20  # less free disk under data_root than this: degraded
    receipt_wait_s: float = 30.0  # how long SubmitProof waits for the receipt (not for a block lost for good)
    chunk_size: int = 1 << 20  # GetModel chunk size
    chain_retry_max_s: float = 5.0  # backoff ceiling while the chain node is unreachable
    checkpoint_every: int = 16  # chain-bound: keep W' of every N-th height; others are rebuilt by replay
    # Test-set evaluation processes: 0 = in-process; None = one per core (in-process where the whole
    # test set is one eval batch, as for digits-cnn: there is nothing to shard).
    eval_workers: int | None = None
    # Verdict processes (verifier_service.verdicts), so the event loop never waits behind a verdict for
    # the interpreter: None = max_concurrent_verifications of them where evaluation is in-process; 0 = off.
    # Off by default: under load on 2 cores they made the honest proof faster but not GetTip's p99
    # (docs/BENCHMARKS.md), and each holds its own torch (about 750 MB).
    verdict_workers: int | None = 0
    ray_address: str | None = None  # evaluate on this Ray cluster instead ([verifier.ray] address)
    ray_actors: int | None = None  # Ray actors; None = one per CPU of the cluster ([verifier.ray] actors)
    # Quorum mode (a deployment with a signer set): the other verifiers' gRPC addresses, HOST:PORT,...
    peers: str | None = None
    cosign_timeout_s: float = 20.0  # one CoSign call to a peer (it verifies the proof before it answers)
    peer_check_s: float = 1.0  # how often each peer's health is checked
    # Test-only fault: sign and co-sign without verifying and without the one-signature guard.
    fault_sign_blindly: bool = False
    # Fault injection for crash tests: pause the attester "before_send" or "after_send".
    fault_pause: str | None = None
    fault_pause_s: float = 0.0


def check_rates(cfg: VerifierConfig) -> None:
    """Rates and budgets that would divide by zero, or make every upload wait, are refused at start-up."""
    for key in ("max_uploads_per_s", "refused_per_s"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"{key} must be positive, got {getattr(cfg, key)!r}")
    if not cfg.refused_burst >= 1:
        raise ConfigError(f"refused_burst must be at least 1 (a first refusal is free), got {cfg.refused_burst!r}")


def parse_peers(text: str | None) -> list[str]:
    """The peers' addresses from `peers` (comma-separated HOST:PORT); ConfigError for a malformed one."""
    out = [p.strip() for p in (text or "").split(",") if p.strip()]
    for p in out:
        host, sep, port = p.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(f"peers: {p!r} is not HOST:PORT")
    return out


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether a TOML value fits a field's annotation (str, int, float, bool, or X | None)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for t in options:
        if t is type(None) and value is None:
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t in (int, str, bool) and type(value) is t:
            return True
    return False


def load_config(path: str | Path | None, **overrides: Any) -> VerifierConfig:
    base = VerifierConfig()
    if path:
        p = Path(path)
        try:
            doc = tomllib.loads(p.read_text()).get("verifier", {})
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p} is not valid TOML: {e}") from e
        doc = dict(doc)
        ray = doc.pop("ray", {})
        # [verifier.ray] names the cluster; only its own two keys mean anything.
        if not isinstance(ray, dict) or set(ray) - {"address", "actors"}:
            raise ConfigError(f"{p}: [verifier.ray] takes only the keys address and actors")
        doc.update({f"ray_{k}": v for k, v in ray.items()})
        hints = typing.get_type_hints(VerifierConfig)
        known = {f.name for f in fields(VerifierConfig)}
        # A misspelt key would silently keep its default.
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(f"{p}: unknown [verifier] key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
        for key, value in doc.items():
            # A value of the wrong type would fail much later, far from the file.
            if not _accepts(hints[key], value):
                raise ConfigError(f"{p}: [verifier] {key} = {value!r} is not of type {hints[key]}")
        base = replace(base, **doc)
    cfg = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    check_rates(cfg)
    return cfg
