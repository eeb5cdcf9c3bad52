"""Stock strategies that exist only for the tests (registered in ``tests/conftest.py``)."""
