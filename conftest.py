"""Fixtures shared by tests/ and parity_tests/."""

import pytest


@pytest.fixture(scope="session")
def transformers_reference():
    """The independent transformers reference (tests/transformers_reference.py): `.outputs`, `.load`."""
    import transformers_reference

    return transformers_reference
