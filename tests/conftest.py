import pytest

from pol_core.step import enable_deterministic_mode


@pytest.fixture(scope="session")
def digits():
    from pol_core.tasks import load_task

    enable_deterministic_mode()
    return load_task("digits-cnn")
