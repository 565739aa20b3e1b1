"""Shared fixtures: real data from the data directory, a small tokenizer and model, one thread."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # 2 cores: one thread is as fast and leaves room


@pytest.fixture(scope="session")
def ewt_dev():
    from sasutils.treebank import load_treebank

    return load_treebank("ewt-dev")


@pytest.fixture(scope="session")
def small_tokenizer(ewt_dev):
    """WordPiece (vocab 2000) trained on real EWT dev text."""
    from sasutils.tokenizer import train_wordpiece

    return train_wordpiece((" ".join(s.words) for s in ewt_dev), vocab_size=2000)


@pytest.fixture(scope="session")
def tiny_model(small_tokenizer):
    from sasutils.model import build_model, preset

    cfg = preset("cpu-tiny", hidden_size=64, intermediate_size=128, seq_len=64)
    return build_model(cfg, len(small_tokenizer), small_tokenizer.pad_token_id, seed=0).eval()
