"""ACDC's whole-image budget candidates (256x224, 16 features) at batch 4 and 8: the step's compute in fp32 and bf16
(alternating medians of 6 rounds) and the mean augmentation time, as the planner times them; why a 20-minute ACDC
plan takes batch 4 on this machine.

    python benchmarks/acdc_batch_cost.py      # about 2 minutes on 2 cores; run it on an idle machine

2026-12-06 15:51 (idle): batch 8 fp32 1.411 s, bf16 0.708 s, augmentation 0.088 s; batch 4 fp32 0.557 s, bf16
0.385 s, augmentation 0.038 s.
"""
import torch

from autoseg.core.cpu_share import use_free_cores
from autoseg.planner import budget as B
from autoseg.training.step_timing import alternating_medians, time_augmentation, training_step


def main() -> None:
    use_free_cores()
    print("threads", torch.get_num_threads())
    cands = B.candidates([1.5625, 1.5625], [256, 216], plan_batch=35, num_channels=1, num_classes=4,
                         coarsen_all=True)
    dev = torch.device("cpu")
    for patch, batch in (((256, 224), 8), ((256, 224), 4)):
        c = next(x for x in cands if x.patch_size == patch and x.batch_size == batch and x.base_features == 16)
        fns = []
        for dt in (None, torch.bfloat16):
            torch.manual_seed(0)
            fns.append(training_step(c, dev, autocast_dtype=dt))
        fp32, bf16 = alternating_medians(fns, 6, dev)
        aug = time_augmentation(c)
        print(f"{c.describe()}: fp32 {fp32:.3f}s, bf16 {bf16:.3f}s (x{bf16 / fp32:.2f}), augmentation {aug:.3f}s",
              flush=True)


if __name__ == "__main__":
    main()
