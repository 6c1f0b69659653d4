"""``memadv import-fz FILE --dataset NAME --out RUN``: released Feldman & Zhang estimates -> memadv scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from memadv.cli.common import add_config_arguments, add_config_file, check_config_file, config_from_args
from memadv.data.registry import load_dataset
from memadv.interop.fz import ImportFzConfig, import_fz

DESCRIPTION = """\
Import estimates released by Feldman & Zhang (pluskid.github.io/influence-memorization) into memadv's score
schema, written to OUT/scores/ (all or nothing). Recognised layouts (NumPy .npz):
  cifar100_infl_matrix.npz        tr_mem, tr_labels, tt_labels, infl_matrix_class{K}, tr_classidx_{K}, tt_classidx_{K}
  *_high_infl_pairs_infl0.15_mem0.25.npz   tr_idx, tt_idx, infl, mem (high-influence pairs only)
  imagenet_index.npz              tr_filenames, tr_labels, tt_filenames, tt_labels, tr_mem
                                  (file names may be object arrays: only strings are unpickled, anything else
                                  is refused)
  FOLDER of raw per-model files   <ratio>/<run>/aux_arrays.npz: index_/correctness_ train, removed, test
                                  (google-research/heldout-influence-estimation); mem, its standard error and
                                  test accuracy are computed as memadv's estimator does (no influence)
The released score files carry no standard errors: imported scores have source "feldman-zhang", se_known false and
NaN standard errors and test accuracies. The fingerprint is computed from the labels in the file; with
--data-root the labels are also checked against the local copy of the dataset. A file with missing or misshapen
keys, or labels that disagree with --data-root, is refused and nothing is written."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-fz", help="import released Feldman & Zhang estimates (.npz) as memadv scores",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, help="released .npz file, or a folder of raw per-model aux_arrays.npz")
    p.add_argument("--out", type=Path, required=True, help="run directory to create; scores go to OUT/scores/")
    add_config_file(p)
    add_config_arguments(p, ImportFzConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_config_file(args.config, ("import-fz",))
    cfg = config_from_args(ImportFzConfig, args, "import-fz")
    dataset = load_dataset(cfg.dataset, data_root=cfg.data_root) if cfg.data_root is not None else None
    target = import_fz(args.file, args.out, cfg.dataset, dataset=dataset, overwrite=cfg.overwrite)
    print(f"wrote {target}")
    return 0
