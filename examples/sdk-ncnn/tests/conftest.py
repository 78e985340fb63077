import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Converted models and deploy-sdk's optimised ones go to a cache of the run's own."""
    with pytest.MonkeyPatch.context() as patch:  # session-scoped, so not the monkeypatch fixture
        patch.setenv("SDK_CACHE_DIR", str(tmp_path_factory.mktemp("sdk-cache")))
        patch.setenv("SDK_TUNE", "0")  # auto by priority unless a test measures on purpose
        yield
