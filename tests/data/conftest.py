import pytest

from sympformer.data import DataConfig, prepare


@pytest.fixture(scope="session")
def bible_bpe(tmp_path_factory):
    """The default corpus (King James Bible, 4,096-token BPE), prepared once for the session."""
    return prepare(DataConfig(cache_dir=str(tmp_path_factory.mktemp("cache"))))
