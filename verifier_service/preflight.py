"""Start-up checks of `pol verifier serve`: every setting that cannot work is refused before the
task loads or a port opens, with one line naming the setting and what to do about it."""
from __future__ import annotations

import errno
import os
import shutil
import socket
from pathlib import Path

from pol_chain.client import ChainClient, ChainError, ChainUnavailable
from pol_chain.deploy import Deployment, load_abi

from .config import ConfigError, VerifierConfig, parse_peers


class PreflightError(Exception):
    """A setting that cannot work; the message names it and says what to do."""


def split_host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    try:
        return host.strip("[]") or "0.0.0.0", int(port)
    except ValueError:
        raise PreflightError(f"listen = {addr!r} is not host:port") from None


def check_port_free(setting: str, host: str, port: int) -> None:
    """Bind and release the port as the server will (no SO_REUSEPORT): a second verifier on the same
    port fails here instead of sharing it."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does: TIME_WAIT is no clash
        try:
            s.bind((host, port))
        except OSError as e:
            what = "is in use (is another verifier or service running there?)" if e.errno == errno.EADDRINUSE \
                else f"cannot be bound: {e.strerror}"
            raise PreflightError(f"{setting} {host}:{port} {what}; pick another port") from None


def check_key(private_key: str) -> str:
    """The key's address; PreflightError for a value that is not a private key."""
    from eth_account import Account

    try:
        return str(Account.from_key(private_key).address)
    except (ValueError, TypeError) as e:
        raise PreflightError(f"the attester key (--key-env/--keystore) is not a valid private key: {e}") from None


def check_chain(dep: Deployment, rpc_url: str, address: str, timeout: float) -> None:
    """The node answers, is the deployment's chain, has the contract, and the key is its attester."""
    chain = ChainClient(rpc_url, dep.address, load_abi(), request_timeout=timeout)
    try:
        chain_id = int(chain.w3.eth.chain_id)
    except Exception as e:  # noqa: BLE001 - translated below; anything here means no usable node
        raise PreflightError(f"rpc_url {rpc_url} does not answer within {timeout:g} s "
                             f"({type(e).__name__}); start the chain (`pol chain up`) or fix rpc_url") from None
    if chain_id != dep.chain_id:
        raise PreflightError(f"rpc_url {rpc_url} is chain {chain_id}, but the deployment is on chain "
                             f"{dep.chain_id}; fix rpc_url or the deployment file")
    try:
        if chain.get_code_size() == 0:
            raise PreflightError(f"deployment: no contract code at {dep.address} on {rpc_url} (was the chain "
                                 f"restarted without its state?); redeploy with `pol chain up` or `pol chain deploy`")
        if dep.quorum is not None:
            members = chain.get_signer_set().signer_set
            # Quorum mode: the key signs as a member (there is no single attester).
            if bytes.fromhex(address[2:]) not in members.signers:
                raise PreflightError(f"the key's address {address} is not a member of the contract's signer set "
                                     f"({members.threshold} of {len(members.signers)}); use a member's key "
                                     f"(--key-env/--keystore)")
        elif not chain.is_attester(address):
            raise PreflightError(f"the key's address {address} is not the contract's attester; use the attester's "
                                 f"key (--key-env/--keystore) or rotate the attester (setAttester)")
    except ChainUnavailable as e:
        raise PreflightError(f"rpc_url: {e}") from None
    except ChainError as e:
        raise PreflightError(f"deployment: the contract at {dep.address} does not answer as PoLChain ({e})") from None


def check_disk(data_root: str, min_free: int) -> None:
    root = Path(data_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except OSError as e:
        raise PreflightError(f"data_root {root} cannot be written ({e.strerror}); free space or pick another "
                             f"--data-root") from None
    free = shutil.disk_usage(root).free
    if free < min_free:
        raise PreflightError(f"data_root {root} has {free >> 20} MiB free, less than min_free_bytes "
                             f"({min_free >> 20} MiB); free space or pick another --data-root")


def run_preflight(cfg: VerifierConfig, dep: Deployment, private_key: str) -> None:
    """Every check, cheapest first; raises PreflightError at the first that fails."""
    host, port = split_host_port(cfg.listen)
    check_port_free("listen", host, port)
    if cfg.metrics_port:
        check_port_free("metrics_port", "127.0.0.1", cfg.metrics_port)
    try:
        peers = parse_peers(cfg.peers)
    except ConfigError as e:
        raise PreflightError(str(e)) from None
    # Peers only mean something to a signer set; a quorum member without peers could never reach t > 1.
    if peers and dep.quorum is None:
        raise PreflightError("peers are set, but the deployment has a single attester (no signer set); drop --peers")
    if dep.quorum is not None and len(peers) < dep.quorum.threshold - 1:
        raise PreflightError(f"the deployment needs {dep.quorum.threshold} of {len(dep.quorum.signers)} signatures: "
                             f"give the other verifiers' addresses with --peers HOST:PORT,...")
    address = check_key(private_key)
    check_disk(cfg.data_root, cfg.min_free_bytes)
    check_chain(dep, cfg.rpc_url or dep.rpc_url, address, cfg.rpc_timeout_s)
