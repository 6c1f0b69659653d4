"""Suite-wide settings: one torch thread (small tensors run faster without thread hand-offs, and
the suite shares two cores), and the Agg matplotlib backend (no display)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """A full default estimate of synthetic-longtail (2,000 models), shared by the tests that need one."""
    from memadv.estimate.config import EstimateConfig
    from memadv.estimate.run import estimate

    run = tmp_path_factory.mktemp("synthetic-longtail")
    scores = estimate(EstimateConfig(dataset="synthetic-longtail"), run, progress=False)
    return run, scores
