"""Suite-wide settings: one torch thread (small tensors run faster without thread hand-offs, and
the suite shares two cores), and the Agg matplotlib backend (no display)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
