"""Extension points by name: a plugin package, installed with pip, adds a network, a loss and a trainer variant
through the 'autoseg.plugins' entry point, and `autoseg train --trainer` trains with them with no edit to autoseg;
a duplicate or unknown name is refused in one line."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from autoseg.core.errors import AutosegError
from autoseg.core.registry import Registry
from autoseg.training.config import TrainConfig
from autoseg.training.trainers import apply_trainer, register_trainer

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
import os

import torch

from autoseg.networks import register_network
from autoseg.networks.unet import PlainConvUNet, PlainConvUNetArgs
from autoseg.training.objective.losses import DiceCELoss, register_loss
from autoseg.training.trainers import register_trainer


@register_network("DemoUNet", PlainConvUNetArgs)
class DemoUNet(PlainConvUNet):
    """nnU-Net's plain U-Net with a marker buffer, so its checkpoints show which class was trained."""
    def __init__(self, **kw):
        super().__init__(**kw)
        self.register_buffer("demo_marker", torch.ones(1))


@register_loss("demo_dice_ce")
def demo_loss(spec):
    with open(os.environ["DEMO_LOSS_LOG"], "a") as f:
        f.write(f"{spec.num_outputs} {spec.batch_dice}\\n")
    return DiceCELoss(batch_dice=spec.batch_dice, ignore_label=spec.ignore_label)


register_trainer("demo", "the demo plugin's network and loss, 2 epochs", network="DemoUNet", loss="demo_dice_ce",
                 epochs=2)
'''


def _install(tmp_path: Path, name: str, module: str, source: str) -> Path:
    """pip-install a one-module package declaring the entry point into its own target folder."""
    pkg = tmp_path / f"src_{name}"
    pkg.mkdir()
    (pkg / f"{module}.py").write_text(source)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "0.1"
        [project.entry-points."autoseg.plugins"]
        {module} = "{module}"
        [tool.setuptools]
        py-modules = ["{module}"]
        """))
    target = tmp_path / f"site_{name}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(pkg)], check=True, capture_output=True, text=True)
    return target


def _autoseg(args, site: list[Path], **env) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(s) for s in site] + [str(ROOT)])
    return subprocess.run([sys.executable, "-m", "autoseg.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path, **env}, timeout=300)


@pytest.mark.slow
def test_plugin_package_adds_a_network_and_a_loss_and_trains_with_them(small_run, tmp_path):
    site = _install(tmp_path, "autoseg-demo-plugin", "autoseg_demo_plugin", PLUGIN)
    listed = _autoseg(["plugins"], [site])
    assert listed.returncode == 0, listed.stderr
    rows = {tuple(line.split()[:3]) for line in listed.stdout.splitlines()}
    src = "plugin"
    assert ("network", "DemoUNet", src) in rows and ("loss", "demo_dice_ce", src) in rows
    assert ("trainer", "demo", src) in rows and "autoseg-demo-plugin" in listed.stdout

    log = tmp_path / "loss.log"
    run = _autoseg(["train", str(small_run), "-c", "2d", "-f", "0", "--trainer", "demo", "--iters-per-epoch", "3",
                    "--val-iters", "1", "--num-workers", "0", "--no-validation"], [site], DEMO_LOSS_LOG=str(log))
    assert run.returncode == 0, run.stderr[-2000:]
    fold = small_run / "2d" / "fold_0"
    cfg = json.loads((fold / "config.json").read_text())["train_config"]
    assert (cfg["trainer"], cfg["network"], cfg["loss"], cfg["epochs"]) == ("demo", "DemoUNet", "demo_dice_ce", 2)
    batch_dice = json.loads((small_run / "plans.json").read_text())["configurations"]["2d"]["batch_dice"]
    assert log.read_text().split() == ["4", str(batch_dice)]  # the plugin's loss was built for the 4 outputs
    ck = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ck["architecture"]["network_class_name"] == "DemoUNet" and "demo_marker" in ck["network_weights"]
    # prediction finds the plugin's network by the name in the checkpoint, in a fresh process
    images = Path(json.loads((small_run / "plans.json").read_text())["dataset_dir"]) / "imagesTs"
    pred = _autoseg(["predict", str(small_run), "-i", str(images), "-o", str(tmp_path / "pred"), "-c", "2d", "-f",
                     "0", "--no-tta"], [site])
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert any((tmp_path / "pred").glob("*.nii.gz"))


@pytest.mark.slow
def test_a_plugin_that_takes_a_taken_name_is_refused_in_one_line(tmp_path):
    site = _install(tmp_path, "autoseg-dup-plugin", "autoseg_dup_plugin", textwrap.dedent('''
        from autoseg.training.objective.losses import register_loss

        register_loss("dice_ce")(lambda spec: None)
        '''))
    out = _autoseg(["plugins"], [site])
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()
    assert err == ["autoseg plugins: error: loss 'dice_ce' is already registered (by autoseg); plugin "
                   "'autoseg_dup_plugin' (autoseg-dup-plugin) must choose another name"]


def test_unknown_names_are_refused_with_what_exists():
    for key, value, kind in (("trainer", "nnUNetTrainer", "trainer"), ("loss", "focal", "loss"),
                             ("augmentation", "heavy", "augmentation"), ("network", "UNet", "network")):
        tc = TrainConfig(**{key: value})
        with pytest.raises(AutosegError, match=rf"{kind} '{value}' is not registered; known: .*default|{kind} "):
            apply_trainer(tc, set())


def test_trainer_variant_settings_yield_to_the_users_flags():
    tc, chosen = apply_trainer(TrainConfig(trainer="5epochs", epochs=7), {"epochs"})
    assert tc.epochs == 7
    tc, chosen = apply_trainer(TrainConfig(trainer="adamw"), set())
    assert (tc.optimizer, tc.initial_lr) == ("adamw", 1e-3) and {"optimizer", "initial_lr"} <= chosen
    tc, _ = apply_trainer(TrainConfig(trainer="noDA"), set())
    assert tc.augmentation == "none"
    with pytest.raises(AutosegError, match=r"trainer 'bad': unknown setting\(s\) \['epoch'\]"):
        register_trainer("bad", "typo", epoch=3)


def test_registry_refuses_duplicates_and_odd_names():
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(AutosegError, match="thing 'a' is already registered \\(by autoseg\\)"):
        reg.register("a", 2)
    with pytest.raises(AutosegError, match="thing name 'a b' is not allowed"):
        reg.register("a b", 3)
    assert reg.get("a") == 1 and reg.names() == ["a"]


def test_no_augmentation_pipeline_samples_the_patch_itself(small_run):
    """noDA: patches come out at the network's size, untouched (the default pipeline rotates an enlarged patch)."""
    from autoseg.training.sampling.augmentation import AUGMENTATIONS

    none, default = AUGMENTATIONS.get("none"), AUGMENTATIONS.get("default")
    assert none.sample_size([48, 48], 2, False) == [48, 48] and none.transforms([48, 48], 2, False) is None
    assert default.sample_size([48, 48], 2, False) > [48, 48]
