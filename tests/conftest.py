import pytest

from pol_core.portable import pin_cpu_dispatch
from pol_core.step import enable_deterministic_mode

pin_cpu_dispatch()  # before any test runs a kernel: the suite checks consensus values


@pytest.fixture(scope="session")
def digits():
    """digits-cnn under the paper rules: what the verifier service, miners and demo implement today."""
    from pol_core.tasks import load_task

    enable_deterministic_mode()
    return load_task("digits-cnn", rules="paper")


@pytest.fixture(scope="session")
def digits_cb(digits):
    """digits-cnn under the chain-bound rules (the task's default): the same data, another spec hash."""
    return digits.with_rules("chain-bound")


@pytest.fixture(scope="session")
def anvil():
    from pol_chain import AnvilProcess

    with AnvilProcess() as a:
        yield a


DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's first dev key


@pytest.fixture(scope="session")
def deployed(anvil, digits):
    """One deployment per session; each test runs inside an evm_snapshot it reverts afterwards."""
    from eth_account import Account

    from pol.genesis import Genesis
    from pol_chain import deploy_chain
    from pol_core.verify import compute_genesis_correct

    attester = Account.from_key(DEV_KEY).address
    genesis = Genesis.for_task(digits, compute_genesis_correct(digits), attester, attester, difficulty=4,
                               target_block_time=10, half_life=40, max_difficulty=16)
    return deploy_chain(anvil.url, DEV_KEY, "digits-cnn", genesis)


@pytest.fixture()
def chain(deployed):
    client = deployed.client(DEV_KEY)
    snap = client.rpc("evm_snapshot")
    yield client
    client.rpc("evm_revert", [snap])
