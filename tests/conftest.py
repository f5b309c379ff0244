import pytest

from synthetic import synthetic_dataset


@pytest.fixture(scope="session")
def synthetic():
    """A 400-item synthetic dataset with victim and attacker spaces and tags."""
    return synthetic_dataset()
