"""flarelens.train: the cases mutation testing found unguarded (see docs/mutation-notes/train.md).

Mostly unit tests of the pure parts (settings checks, amp and worker choices, the optimizer,
the schedules, EpochCounts, BatchStep, one epoch, the log lines) and a few runs of one or two
epochs on 12 toy images of 32 px. Expected values come from the documented rules and the
formulas, computed here, never copied from what the code returns.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import write_toy_dataset

from flarelens import distributed
from flarelens import train as T
from flarelens.checkpoint import load_checkpoint, rng_state
from flarelens.data import MagnetogramDataset
from flarelens.errors import FlareLensError
from flarelens.folds import row_roles
from flarelens.weighting import FORMULAS


class _Stop(Exception):
    """Raised by a test's stand-in to end a run once what it checks has happened."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(image root, labels, labels.csv) of 12 toy 32² images every 30 days of 2011: fold 1
    (held out) has 3 rows, one flaring; the other quarters 9 rows, 3 flaring."""
    base = tmp_path_factory.mktemp("tiny")
    labels = write_toy_dataset(base / "images", n=12, size=32, cadence="30D")
    path = base / "labels.csv"
    labels.to_csv(path, index=False)
    return base / "images", labels, path


def _config(root, labels_path, out, **kw) -> dict:
    base = dict(labels=str(labels_path), images=str(root), fold=1, model="simplecnn", image_size=32, epochs=1,
                batch_size=8, optimizer="adam", lr=1e-3, out=str(out), progress=False, threads=1, inner=0,
                select="last", amp="off")
    base.update(kw)
    return base


def _instances(targets) -> int:
    """Instances per epoch of the study's augmentation: flaring rows x4, non-flaring x2."""
    t = pd.Series(targets)
    return int(4 * (t == 1).sum() + 2 * (t == 0).sum())


# --------------------------------------------------------------------------- settings


CHOICES = [
    ("model", "lenet", "--model must be one of alexnet, resnet18, simplecnn, vgg16, got 'lenet'"),
    ("optimizer", "rmsprop", "--optimizer must be one of sgd, adam, adamw, got 'rmsprop'"),
    ("schedule", "cosine", "--schedule must be one of step, plateau, none, got 'cosine'"),
    ("augment", "heavy", "--augment must be one of study, none, got 'heavy'"),
    ("class_weight", "inverse", "--class-weight must be one of study, balanced, none, got 'inverse'"),
    ("init", "zeros", "--init must be one of kaiming-normal, kaiming-uniform, xavier-normal, xavier-uniform, got 'zeros'"),
    ("amp", "fp8", "--amp must be one of auto, bf16, fp16, off, got 'fp8'"),
    ("channels_last", "yes", "--channels-last must be one of auto, on, off, got 'yes'"),
    ("cache", "disk", "--cache must be one of auto, on, off, got 'disk'"),
    ("select", "first", "--select must be one of best, last, got 'first'"),
    ("fold", 5, "--fold must be one of 1, 2, 3, 4, got 5"),
    ("fold", 0, "--fold must be one of 1, 2, 3, 4, got 0"),
    ("recipe", "paper", "--recipe must be one of study, got 'paper'"),
]


@pytest.mark.parametrize("name,bad,message", CHOICES)
def test_a_setting_outside_its_choices_names_the_flag_and_every_choice(name, bad, message):
    """The user's only guide to a mistyped option: the flag as typed and the valid values."""
    with pytest.raises(FlareLensError, match="^" + re.escape(message) + "$"):
        T.check_config(dataclasses.replace(T.TrainConfig(), **{name: bad}))


def test_every_fold_and_choice_listed_is_accepted():
    for fold in (1, 2, 3, 4):
        T.check_config(T.TrainConfig(fold=fold))
    T.check_config(T.TrainConfig(recipe="study"))
    for name, values in [("optimizer", ("sgd", "adam", "adamw")), ("schedule", ("step", "plateau", "none")),
                         ("amp", ("auto", "bf16", "fp16", "off")), ("channels_last", ("auto", "on", "off")),
                         ("cache", ("auto", "on", "off")), ("class_weight", ("study", "balanced", "none"))]:
        for value in values:
            T.check_config(T.TrainConfig(**{name: value}))


NUMBERS = [
    # (setting, bad value, message); the counts are whole numbers, the rates positive.
    ("epochs", 2.5, "--epochs must be an integer at least 1, got 2.5"),
    ("epochs", 0, "--epochs must be an integer at least 1, got 0"),
    ("epochs", True, "--epochs must be an integer at least 1, got True"),
    ("batch_size", 16.0, "--batch-size must be an integer at least 1, got 16.0"),
    ("image_size", 31.5, "--image-size must be an integer at least 1, got 31.5"),
    ("step_size", 0, "--step-size must be an integer at least 1, got 0"),
    ("step_size", 2.5, "--step-size must be an integer at least 1, got 2.5"),
    ("patience", -1, "--patience must be an integer at least 0, got -1"),
    ("patience", 1.5, "--patience must be an integer at least 0, got 1.5"),
    ("seed", 1.5, "--seed must be an integer at least 0, got 1.5"),
    ("seed", -1, "--seed must be an integer at least 0, got -1"),
    ("threads", 0, "--threads must be an integer at least 1, got 0"),
    ("threads", 2.0, "--threads must be an integer at least 1, got 2.0"),
    ("workers", -1, "--workers must be an integer at least 0, got -1"),
    ("workers", 1.5, "--workers must be an integer at least 0, got 1.5"),
    ("lr", 0, "--lr must be a number above 0, got 0"),
    ("lr", 0.0, "--lr must be a number above 0, got 0.0"),
    ("lr", -1e-3, "--lr must be a number above 0, got -0.001"),
    ("lr", math.inf, "--lr must be a number above 0, got inf"),
    ("lr", math.nan, "--lr must be a number above 0, got nan"),
    ("lr", "0.1", "--lr must be a number above 0, got '0.1'"),
    ("lr", False, "--lr must be a number above 0, got False"),
    ("momentum", -0.1, "--momentum must be a number at least 0, got -0.1"),
    ("weight_decay", -1e-3, "--weight-decay must be a number at least 0, got -0.001"),
    ("factor", 0, "--factor must be a number in (0, 1), got 0"),
    ("factor", 1, "--factor must be a number in (0, 1), got 1"),
    ("threshold", 0, "--threshold must be a number in (0, 1), got 0"),
    ("threshold", 0.0, "--threshold must be a number in (0, 1), got 0.0"),
    ("threshold", 1.0, "--threshold must be a number in (0, 1), got 1.0"),
    ("threshold", -0.5, "--threshold must be a number in (0, 1), got -0.5"),
]


@pytest.mark.parametrize("name,bad,message", NUMBERS)
def test_a_number_out_of_range_or_of_the_wrong_kind_is_refused_in_one_line(name, bad, message):
    with pytest.raises(FlareLensError, match="^" + re.escape(message) + "$"):
        T.check_config(dataclasses.replace(T.TrainConfig(), **{name: bad}))


def test_numbers_at_their_bounds_are_accepted():
    """The lowest allowed values, and values just inside the open intervals."""
    ok = dict(epochs=1, batch_size=1, image_size=1, step_size=1, patience=0, seed=0, threads=1, workers=0,
              lr=1e-12, momentum=0.0, weight_decay=0.0, factor=1e-9, threshold=1e-9)
    T.check_config(T.TrainConfig(**ok))
    T.check_config(T.TrainConfig(factor=0.999999, threshold=0.999999, threads=None, workers=None))
    T.check_config(T.TrainConfig(seed=12345, lr=10, momentum=0.9, weight_decay=1))


def test_settings_that_contradict_each_other_are_refused_with_what_to_do():
    with pytest.raises(FlareLensError, match=r"^--momentum applies to --optimizer sgd only \(got --optimizer adamw\)$"):
        T.check_config(T.TrainConfig(optimizer="adamw", momentum=0.9))
    T.check_config(T.TrainConfig(optimizer="sgd", momentum=0.9))
    T.check_config(T.TrainConfig(optimizer="adam", momentum=0.0))
    with pytest.raises(FlareLensError, match="^give either --pretrained or --weights FILE, not both$"):
        T.check_config(T.TrainConfig(pretrained=True, weights="w.pth"))
    message = ("--select best chooses the epoch on the inner validation block, and --inner 0 leaves none: "
               "give --inner > 0 (e.g. 0.1) or --select last")
    with pytest.raises(FlareLensError, match="^" + re.escape(message) + "$"):
        T.check_config(T.TrainConfig(select="best", inner=0))
    T.check_config(T.TrainConfig(select="last", inner=0))


def test_durations_inner_fraction_and_device_are_checked_under_their_flags():
    with pytest.raises(FlareLensError, match="--window"):
        T.check_config(T.TrainConfig(window="soon"))
    with pytest.raises(FlareLensError, match="--gap"):
        T.check_config(T.TrainConfig(gap="later"))
    T.check_config(T.TrainConfig(gap="48h"))
    with pytest.raises(FlareLensError, match="--inner"):
        T.check_config(T.TrainConfig(inner=1.0))
    with pytest.raises(FlareLensError, match="--device gpu"):
        T.check_config(T.TrainConfig(device="gpu"))


def test_make_config_recipes_and_their_errors():
    with pytest.raises(FlareLensError, match=r"^unknown training setting\(s\): learning_rate, nepochs$"):
        T.make_config({"nepochs": 3, "learning_rate": 1})
    with pytest.raises(FlareLensError, match=r"^unknown training setting\(s\): colour$"):
        T.make_config(None, {"colour": "red"})
    message = "a recipe applies to settings given one by one (a dict or keywords), not to a TrainConfig"
    with pytest.raises(FlareLensError, match="^" + re.escape(message) + "$"):
        T.make_config(T.TrainConfig(), {"recipe": "study"})
    with pytest.raises(FlareLensError, match=r"^--recipe must be one of study, got 'paper'$"):
        T.recipe_config("paper")
    with pytest.raises(FlareLensError, match=r"^--recipe must be one of study, got 'paper'$"):
        T.make_config({"recipe": "paper"})
    # keywords alone may name a recipe; explicit settings win over it
    cfg = T.make_config(None, {"recipe": "study", "epochs": 2})
    assert (cfg.recipe, cfg.epochs, cfg.select, cfg.inner, cfg.amp) == ("study", 2, "last", 0.0, "off")
    # a TrainConfig with overrides: replaced field by field, the rest kept
    cfg = T.make_config(T.TrainConfig(epochs=7, lr=0.5), {"lr": 0.25})
    assert (cfg.epochs, cfg.lr, cfg.recipe) == (7, 0.25, None)
    assert T.make_config() == T.TrainConfig()


def test_a_recipe_drops_its_imagenet_download_where_it_cannot_or_need_not_apply():
    assert T.recipe_config("study").pretrained is True
    assert T.recipe_config("study", model="alexnet").pretrained is True  # alexnet has ImageNet weights
    assert T.recipe_config("study", model="simplecnn").pretrained is False  # it has none
    local = T.recipe_config("study", weights="vgg.pth")
    assert local.pretrained is False and local.weights == "vgg.pth"
    assert T.recipe_overrides(local) == ["weights"]
    assert T.recipe_overrides(T.recipe_config("study", model="simplecnn", epochs=3)) == ["epochs", "model", "pretrained"]
    assert T.recipe_overrides(T.recipe_config("study")) == []
    assert T.recipe_overrides(T.TrainConfig(epochs=3)) == []  # no recipe, nothing to differ from


# --------------------------------------------------------------------------- set-up choices


def test_amp_auto_takes_bf16_where_supported_else_fp16_on_cuda_and_off_elsewhere(monkeypatch):
    cuda, cpu, mps = torch.device("cuda"), torch.device("cpu"), torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert T.resolve_amp("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert T.resolve_amp("auto", cuda) == "fp16"  # e.g. a V100: fp16 with a gradient scaler
    assert T.resolve_amp("fp16", cuda) == "fp16" and T.resolve_amp("bf16", cuda) == "bf16"
    assert T.resolve_amp("off", cuda) == "off"
    monkeypatch.setattr(T, "cpu_has_bf16", lambda: True)
    assert T.resolve_amp("auto", cpu) == "bf16"
    assert T.resolve_amp("auto", mps) == "off"
    monkeypatch.setattr(T, "cpu_has_bf16", lambda: False)
    assert T.resolve_amp("auto", cpu) == "off"
    with pytest.raises(FlareLensError, match=r"^--amp fp16 needs a GPU; on a CPU use --amp bf16 or off$"):
        T.resolve_amp("fp16", cpu)


@pytest.mark.parametrize("cpus,world,device,cached,expected", [
    # On a GPU: every core but one (the main process's) decodes, at most 8 workers.
    (4, 1, "cuda", False, 3), (4, 1, "cuda", True, 3), (16, 1, "cuda", False, 8), (9, 1, "cuda", False, 8),
    (16, 2, "cuda", False, 7), (2, 1, "cuda", False, 1), (1, 1, "cuda", False, 1), (4, 8, "cuda", False, 1),
    # On a CPU the model needs the cores: none when cached or with 2 cores or fewer, else half, at most 4.
    (16, 1, "cpu", True, 0), (2, 1, "cpu", False, 0), (3, 1, "cpu", False, 1), (6, 1, "cpu", False, 3),
    (16, 1, "cpu", False, 4), (10, 1, "cpu", False, 4), (16, 4, "cpu", False, 2), (16, 8, "cpu", False, 0),
])
def test_default_workers_per_process(monkeypatch, cpus, world, device, cached, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert T._default_workers(torch.device(device), cached, world) == expected


def test_default_workers_without_sched_getaffinity_count_the_cpus(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert T._default_workers(torch.device("cuda"), False, 1) == 5
    assert T._default_workers(torch.device("cpu"), False, 1) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one CPU
    assert T._default_workers(torch.device("cuda"), False, 1) == 1


def _params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_the_optimizer_has_the_settings_and_a_fused_step(name, cls):
    """'Fused optimizer steps everywhere' (the module's docstring), with lr and weight decay as set."""
    c = T.TrainConfig(optimizer=name, lr=0.03, weight_decay=0.002, momentum=0.9 if name == "sgd" else 0.0)
    params = _params()
    opt = T._make_optimizer(c, iter(params), torch.device("cpu"))  # a generator, as model.parameters() gives
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.03 and group["weight_decay"] == 0.002 and len(group["params"]) == 2
    assert group["fused"] is True
    if name == "sgd":
        assert group["momentum"] == 0.9


def test_the_optimizer_falls_back_to_an_unfused_step_with_the_same_settings(monkeypatch):
    real = torch.optim.SGD

    class NoFused(real):
        def __init__(self, params, **kw):
            if kw.get("fused"):
                raise RuntimeError("fused not supported for these parameters")
            super().__init__(params, **kw)

    monkeypatch.setattr(torch.optim, "SGD", NoFused)
    c = T.TrainConfig(optimizer="sgd", lr=0.03, weight_decay=0.002, momentum=0.5)
    params = _params()
    opt = T._make_optimizer(c, iter(params), torch.device("cpu"))
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.03, 0.002, 0.5)
    assert not group["fused"] and len(group["params"]) == 2  # the generator was not used up by the first try


def _lrs(c, losses):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=c.lr)
    sched = T._make_scheduler(c, opt)
    out = []
    for loss in losses:
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(loss) if c.schedule == "plateau" else sched.step()
    return out


def test_the_three_schedules():
    # step: epoch e (1-based) at lr * factor ** (e // step_size)
    c = T.TrainConfig(schedule="step", lr=1.0, step_size=2, factor=0.1)
    assert _lrs(c, [0] * 6) == pytest.approx([0.1 ** (e // 2) for e in range(1, 7)])
    # plateau: the rate times factor after more than `patience` epochs without improvement
    c = T.TrainConfig(schedule="plateau", lr=1.0, factor=0.5, patience=1)
    assert _lrs(c, [1.0, 0.5, 0.6, 0.7, 0.8, 0.9]) == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.5, 0.5])
    # none: constant
    c = T.TrainConfig(schedule="none", lr=0.3, step_size=1, factor=0.1)
    assert _lrs(c, [0] * 4) == pytest.approx([0.3] * 4)


# --------------------------------------------------------------------------- counts and one batch


def _hss(tp, fp, tn, fn):
    return 2 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def test_epoch_counts_sum_over_batches():
    """A forecast is a flare when its probability reaches the threshold (>=). Two batches add up."""
    counts = T.EpochCounts()
    assert math.isnan(counts.loss) and math.isnan(counts.tss) and counts["n"] == 0
    # batch 1: probs 0.9 (FL) tp, 0.5 (NF) fp (at the threshold), 0.1 (NF) tn, 0.2 (FL) fn
    counts.add(torch.tensor([0.5, 1.0, 2.0, 4.0]), torch.tensor([2.0, 1.0, 1.0, 2.0]),
               torch.tensor([0.9, 0.5, 0.1, 0.2]), torch.tensor([1, 0, 0, 1]), 0.5)
    # batch 2: 0.7 (FL) tp, 0.3 (NF) tn, 0.4 (NF) tn
    counts.add(torch.tensor([1.0, 0.5, 0.5]), torch.tensor([2.0, 1.0, 1.0]),
               torch.tensor([0.7, 0.3, 0.4]), torch.tensor([1, 0, 0]), 0.5)
    tp, fp, tn, fn = 2, 1, 3, 1
    assert [counts[k] for k in ("tp", "fp", "tn", "fn", "n")] == [tp, fp, tn, fn, 7]
    assert counts.loss == pytest.approx((7.5 + 2.0) / (6.0 + 4.0))  # class-weighted mean over both batches
    assert counts.positives == 3
    assert counts.tss == pytest.approx(tp / (tp + fn) - fp / (fp + tn))
    assert counts.hss == pytest.approx(_hss(tp, fp, tn, fn))
    assert counts.confusion.tp == tp and counts.confusion.fn == fn
    assert counts.all_reduce(distributed.Processes()) is counts and counts["n"] == 7  # alone: unchanged
    # another threshold moves the 0.5 and 0.7 forecasts
    high = T.EpochCounts()
    high.add(torch.zeros(3), torch.ones(3), torch.tensor([0.5, 0.7, 0.9]), torch.tensor([0, 1, 1]), 0.8)
    assert [high[k] for k in ("tp", "fp", "tn", "fn")] == [1, 0, 1, 1]


def test_epoch_counts_without_flaring_instance_have_no_tss_but_an_hss():
    counts = T.EpochCounts()
    counts.add(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.6, 0.1]), torch.tensor([0, 0]), 0.5)
    assert counts.positives == 0 and math.isnan(counts.tss)  # undefined, not -FPR
    assert counts.loss == pytest.approx(2.0)
    assert counts.hss == 0.0


class _Tiny(torch.nn.Module):
    """A fixed linear model on 2x2 images: logits = W · pixels + b."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1, bias=False)
        self.linear = torch.nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.linear.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0], [-1.0, 2.0, 1.5, 3.0]]))
            self.linear.bias.copy_(torch.tensor([0.1, -0.2]))

    def forward(self, x):
        return self.linear(self.conv(x).flatten(1))


def test_batch_step_gives_the_class_weighted_losses_of_uint8_images():
    x = torch.tensor([[[[0, 255], [51, 102]]], [[[255, 255], [0, 0]]], [[[10, 20], [30, 40]]]], dtype=torch.uint8)
    y = torch.tensor([1, 0, 1])
    weights = torch.tensor([1.0, 2.5])
    model = _Tiny()
    unit = x.double() / 255
    W, b = model.linear.weight.double().detach(), model.linear.bias.double().detach()
    logits = unit.flatten(1) @ W.T + b
    per = -torch.log_softmax(logits, dim=1)[torch.arange(3), y]
    for channels_last in (False, True):
        step = T.BatchStep(model, torch.device("cpu"), "off", channels_last, weights)
        weighted, w, prob, target = step(x, y)
        assert w.tolist() == [2.5, 1.0, 2.5] and target.tolist() == [1, 0, 1]
        assert weighted.detach().double().tolist() == pytest.approx((torch.tensor([2.5, 1.0, 2.5]).double() * per).tolist(), rel=1e-5)
        assert prob.double().tolist() == pytest.approx(torch.softmax(logits, 1)[:, 1].tolist(), rel=1e-5)
    # With bf16 autocast, mixed=False (validation) is still the exact fp32 computation.
    step = T.BatchStep(model, torch.device("cpu"), "bf16", False, weights)
    exact, _, _, _ = step(x, y, mixed=False)
    assert exact.detach().double().tolist() == pytest.approx((torch.tensor([2.5, 1.0, 2.5]).double() * per).tolist(), rel=1e-5)
    mixed, _, _, _ = step(x, y)
    assert mixed.dtype == torch.float32 and mixed.detach().double().tolist() == pytest.approx(exact.detach().double().tolist(), rel=0.05)


def _batch_mode_loader(tiny, batch_size):
    root, labels, _ = tiny
    rows = labels[labels["fold"] != 1]
    ds = MagnetogramDataset(rows, root, 32, augment="none", cache=True, as_uint8=True, batch_augment=True)
    assert len(ds[0]) == 4  # batch mode: (image, target, code, angle), finished per batch
    return rows, ds, torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)


def _reference_loss(model, rows, root, weights):
    ds = MagnetogramDataset(rows, root, 32, augment="none", cache=False)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor(rows["target"].to_numpy())
    per = F.cross_entropy(model(x), y, reduction="none")
    return (weights[y] * per).sum() / weights[y].sum()


def test_one_epoch_on_a_batch_mode_dataset_is_one_class_weighted_sgd_step(tiny):
    """A dataset that finishes its batches itself (batch mode, as on CUDA) works on a CPU too:
    one batch holding every row gives one SGD step on the class-weighted mean cross-entropy."""
    root, _, _ = tiny
    rows, ds, loader = _batch_mode_loader(tiny, batch_size=64)
    weights = torch.tensor([1.0, 3.0])
    torch.manual_seed(1)
    from flarelens.models import build_model

    model = build_model("simplecnn", image_size=32)
    reference = _reference_loss(model, rows, root, weights)
    reference.backward()
    lr = 0.1
    expected = {k: (p - lr * p.grad).detach() for k, p in model.named_parameters()}
    model.zero_grad()
    step = T.BatchStep(model, torch.device("cpu"), "off", False, weights)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model.eval()
    counts, seconds = T.train_one_epoch(model, loader, step, opt, scaler, distributed.Processes(), 0.5)
    assert model.training and seconds > 0
    assert counts["n"] == len(rows) and counts.positives == int(rows["target"].sum())
    assert counts.loss == pytest.approx(reference.item(), rel=1e-5)
    for key, value in model.named_parameters():
        assert torch.allclose(value, expected[key], atol=1e-6, rtol=1e-5), key
    # evaluation: no step, eval mode, the loss of the updated model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluated, _ = T.evaluate_epoch(model, loader, step, distributed.Processes(), 0.5)
    assert not model.training
    assert evaluated.loss == pytest.approx(_reference_loss(model, rows, root, weights).item(), rel=1e-5)
    assert evaluated["n"] == len(rows)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_epoch_bar_shows_its_description_and_is_removed_after_the_epoch(tiny, monkeypatch, capsys):
    """The per-batch bar names the epoch and leaves no line behind (the log line follows it)."""
    import flarelens.progress

    monkeypatch.setattr(flarelens.progress, "enabled", lambda requested=True: bool(requested))
    _, ds, loader = _batch_mode_loader(tiny, batch_size=4)
    model = _TinyImage()
    step = T.BatchStep(model, torch.device("cpu"), "off", False, torch.tensor([1.0, 1.0]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    capsys.readouterr()
    T.train_one_epoch(model, loader, step, opt, scaler, distributed.Processes(), progress=True, desc="epoch 3/7")
    err = capsys.readouterr().err
    assert "epoch 3/7: " in err and "batch" in err
    assert not err.endswith("\n")  # cleared, not left on the screen
    # not the main process: no bar at all
    T.train_one_epoch(model, loader, step, opt, scaler, distributed.Processes(rank=1, world=1), progress=True,
                      desc="epoch 4/7")
    assert "epoch 4/7: " not in capsys.readouterr().err


class _TinyImage(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 2)

    def forward(self, x):
        return self.linear(x.mean(dim=(1, 2, 3)).unsqueeze(1))


# --------------------------------------------------------------------------- log lines and records


def _row(inner_loss):
    return {"epoch": 3, "lr": 0.0005, "train_loss": 0.125, "train_tss": 0.5, "train_hss": 0.25,
            "inner_loss": inner_loss, "inner_tss": 0.375, "inner_hss": 0.3125,
            "val_loss": 0.25, "val_tss": 0.625, "val_hss": 0.0625,
            "train_time_s": 2.0, "inner_time_s": 0.5, "val_time_s": 0.5, "train_images_per_s": 48.0}


def test_an_epochs_log_line_shows_the_inner_block_only_when_there_is_one():
    assert T._format_row(_row(0.5), 10) == (
        "epoch 3/10  lr 0.0005  train loss 0.1250 TSS 0.500 HSS 0.250  |  inner loss 0.5000 TSS 0.375 HSS 0.312  |  "
        "held-out loss 0.2500 TSS 0.625 HSS 0.062  (2.0+1.0 s, 48.0 img/s)"
    )
    assert T._format_row(_row(math.nan), 10) == (
        "epoch 3/10  lr 0.0005  train loss 0.1250 TSS 0.500 HSS 0.250  |  "
        "held-out loss 0.2500 TSS 0.625 HSS 0.062  (2.0+1.0 s, 48.0 img/s)"
    )


def test_is_better_takes_the_first_highest_finite_inner_tss():
    assert T.is_better({"inner_tss": -0.5}, {"epoch": 0})  # the first epoch with a TSS is selected
    assert not T.is_better({"inner_tss": math.nan}, {"epoch": 0})
    assert T.is_better({"inner_tss": 0.5}, {"epoch": 2, "inner_tss": 0.4})
    assert not T.is_better({"inner_tss": 0.4}, {"epoch": 2, "inner_tss": 0.4})  # a tie keeps the earlier
    assert not T.is_better({"inner_tss": 0.3}, {"epoch": 2, "inner_tss": 0.4})
    assert not T.is_better({"inner_tss": math.nan}, {"epoch": 2, "inner_tss": 0.4})


def _frame(targets):
    return pd.DataFrame({"target": targets})


def _setup_line(caplog, cfg, rows, overrides, device="cpu", world=1, amp="off", workers=0):
    config = {"rows": rows, "recipe_overrides": overrides, "class_weights": [1.0, 2.25]}
    caplog.clear()
    with caplog.at_level("INFO", logger="flarelens"):
        T._log_setup(cfg, config, _frame([1, 0, 0, 1, 0]), _frame([0, 1]), _frame([1, 0, 0]), 14, torch.device(device),
                     distributed.Processes(world=world), amp, workers)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "flarelens.train"]
    return line


def test_the_setup_log_line(caplog):
    tail = ("held-out rows 3 (1 flaring); class weights NF 1.000 FL 2.250 (study: " + FORMULAS["study"] + "); ")
    cfg = T.TrainConfig(model="simplecnn", image_size=32, inner=0.1, window="24h", gap="48h")
    assert _setup_line(caplog, cfg, {"purged": 4}, []) == (
        "fold 1: training rows 5 (2 flaring) -> 14 augmented instances per epoch; inner validation rows 2 (1 flaring), "
        "the last 0.1 of each training quarter, 4 rows purged (window 24h, gap 48h); " + tail
        + "selection: highest inner TSS; simplecnn at 32 px on cpu x1, amp off, workers 0"
    )
    cfg = T.recipe_config("study", fold=3, model="simplecnn", image_size=32)
    assert _setup_line(caplog, cfg, {"purged": 0}, ["image_size", "model"], "cuda:1", 2, "bf16", 7) == (
        "recipe study (changed: image_size, model); fold 3: training rows 5 (2 flaring) -> 14 augmented instances "
        "per epoch; no inner block, 0 rows purged; " + tail
        + "selection: last epoch; simplecnn at 32 px on cuda:1 x2, amp bf16, workers 7"
    )
    cfg = T.recipe_config("study")
    assert _setup_line(caplog, cfg, {"purged": 0}, []).startswith("recipe study; fold 1: training rows 5")


def test_run_config_records_the_runs_facts():
    labels = pd.DataFrame({"target": [1, 0, 0, 0, 1, 0]})
    roles = pd.Series(["train", "train", "inner", "heldout", "train", "purged"])
    cfg = T.recipe_config("study", epochs=3)
    config = T.run_config(cfg, torch.tensor([1.0, 1.75]), roles, labels)
    assert {k: config[k] for k in cfg.to_dict()} == cfg.to_dict()
    assert config["class_weights"] == [1.0, 1.75] and all(type(w) is float for w in config["class_weights"])
    assert config["train_base_rate"] == pytest.approx(2 / 3)
    assert config["rows"] == {"train": 3, "inner": 1, "heldout": 1, "purged": 1}
    assert config["recipe_overrides"] == ["epochs"]
    from flarelens import __version__

    assert config["flarelens_version"] == __version__
    none = T.run_config(T.TrainConfig(), torch.tensor([1.0, 1.0]), pd.Series(["heldout"] * 6), labels)
    assert math.isnan(none["train_base_rate"]) and none["recipe_overrides"] == []


def test_resuming_with_other_settings_names_each_one_as_its_flag(tmp_path):
    path = tmp_path / "last.pt"
    saved = {"batch_size": 16, "lr": 0.001, "epochs": 5, "out": "a", "class_weights": [1, 2], "fold": 1}
    T._check_resumable(saved, dict(saved, epochs=9, out="b", device="cpu", class_weights=[1, 3]), path)  # may change
    message = (f"{path} was trained with different settings: --batch-size 16 (now 8); --lr 0.001 (now 0.01); "
               "--step-size None (now 5). Resume with the same settings or choose another --out")
    with pytest.raises(FlareLensError, match="^" + re.escape(message) + "$"):
        T._check_resumable(saved, dict(saved, batch_size=8, lr=0.01, step_size=5), path)


def test_initial_model_uses_the_configured_initialisation():
    from flarelens.models import build_model

    for init in ("kaiming-normal", "kaiming-uniform", "xavier-normal", "xavier-uniform"):
        cfg = T.TrainConfig(model="simplecnn", image_size=32, init=init, seed=4)
        got = T.initial_model(cfg).state_dict()
        torch.manual_seed(4)
        want = build_model("simplecnn", image_size=32, init=init).state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), init
    a = T.initial_model(T.TrainConfig(model="simplecnn", image_size=32, init="xavier-uniform")).state_dict()
    b = T.initial_model(T.TrainConfig(model="simplecnn", image_size=32, init="kaiming-normal")).state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point() and a[k].dim() > 1)


# --------------------------------------------------------------------------- the split and the run


def test_split_errors_name_the_missing_rows(tiny, tmp_path):
    root, labels, _ = tiny

    def split(frame, **kw):
        path = tmp_path / "labels.csv"
        frame.to_csv(path, index=False)
        return T._split(T.TrainConfig(**_config(root, path, tmp_path / "run", **kw)))

    path = tmp_path / "labels.csv"
    with pytest.raises(FlareLensError, match=re.escape(f"{path}: no rows of fold 1 (the held-out quarter) to report on")):
        split(labels[labels["fold"] != 1])
    one = labels[(labels["fold"] != 1) | (labels.index == 0)]
    _, roles = split(one)  # a single held-out row is enough
    assert (roles == "heldout").sum() == 1 and (roles == "train").sum() == 9
    with pytest.raises(FlareLensError, match=re.escape(f"{path}: no training rows for fold 2")):
        split(labels[labels["fold"] == 2], fold=2)
    with pytest.raises(FlareLensError, match=r"the inner validation block \(the last 0\.001 of each training quarter\) "
                                             r"holds no row; give a larger --inner, or --inner 0 --select last"):
        split(labels, inner=0.001, select="best")
    with pytest.raises(FlareLensError, match=re.escape(f"--images {tmp_path / 'none'}: no such directory")):
        T._split(T.TrainConfig(**_config(tmp_path / "none", path, tmp_path / "run")))


@pytest.fixture(scope="module")
def dense_labels(tmp_path_factory):
    """A labels table of 183 rows every 2 days over 2011 whose inner block has no flaring row
    (no images are needed: these runs stop before reading any)."""
    base = tmp_path_factory.mktemp("dense-labels")
    labels = write_toy_dataset(base / "images", n=183, size=16, cadence="2D")
    inner = row_roles(labels, 1, inner=0.1, window="24h") == "inner"
    assert inner.sum() > 0 and labels.loc[inner, "target"].sum() > 0
    labels.loc[inner, "target"] = 0
    path = base / "labels.csv"
    labels.to_csv(path, index=False)
    return base / "images", int(inner.sum()), path


def test_an_inner_block_without_flares_stops_select_best_and_warns_select_last(dense_labels, tmp_path, monkeypatch,
                                                                             caplog):
    root, n_inner, path = dense_labels
    message = (f"the inner validation block holds {n_inner} rows but no flaring one, so TSS cannot choose an epoch "
               "there: give a larger --inner, or --select last")
    with pytest.raises(FlareLensError, match="^" + re.escape(message) + "$"):
        T.train(_config(root, path, tmp_path / "best", inner=0.1, select="best"))

    def stop(cfg):
        raise _Stop

    monkeypatch.setattr(T, "initial_model", stop)
    with caplog.at_level("WARNING", logger="flarelens"), pytest.raises(_Stop):
        T.train(_config(root, path, tmp_path / "last", inner=0.1, select="last"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"the inner validation rows ({n_inner}) hold no flaring row: their TSS is undefined and history.csv shows " \
           "it as nan" in warnings


def test_threads_are_set_for_the_run_and_restored_after(monkeypatch):
    seen = []

    def run(cfg, procs):
        seen.append(torch.get_num_threads())
        return pd.DataFrame()

    monkeypatch.setattr(T, "_run", run)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        T.train(threads=1, device="cpu")
        assert torch.get_num_threads() == 2
        T.train(threads=None, device="cpu")  # not given: left as it is
        assert torch.get_num_threads() == 2
        assert seen == [1, 2]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("amp,channels_last,expected", [
    ("off", "auto", False), ("bf16", "auto", True), ("off", "on", True), ("bf16", "off", False),
])
def test_channels_last_on_a_cpu_is_automatic_with_bf16_only(tiny, tmp_path, monkeypatch, amp, channels_last, expected):
    """'On a CPU with native bf16 ...: bf16 autocast and channels-last' (the module's docstring)."""
    root, _, labels_path = tiny
    seen = {}

    class Recording(T.BatchStep):
        def __init__(self, model, device, amp_used, channels_last_used, weights):
            seen.update(amp=amp_used, channels_last=channels_last_used,
                        weights_layout=model.features[3].weight.is_contiguous(memory_format=torch.channels_last))
            raise _Stop

    monkeypatch.setattr(T, "BatchStep", Recording)
    with pytest.raises(_Stop):
        T.train(_config(root, labels_path, tmp_path / "run", amp=amp, channels_last=channels_last))
    assert seen == {"amp": amp, "channels_last": expected, "weights_layout": expected}


def test_a_run_logs_its_setup_and_epochs_and_a_resume_says_where_it_resumed(tiny, tmp_path, monkeypatch, capsys):
    import flarelens.progress

    monkeypatch.setattr(flarelens.progress, "enabled", lambda requested=True: bool(requested))
    root, labels, labels_path = tiny
    out = tmp_path / "run"
    capsys.readouterr()
    T.train(_config(root, labels_path, out, epochs=2, progress=True))
    err = capsys.readouterr().err
    # the bars name the epochs ("epoch 1/2: 50%|..."; the log lines read "epoch 1/2  lr ...")
    assert "epoch 1/2: " in err and "epoch 2/2: " in err and "epoch 3/2: " not in err
    log = (out / "train.log").read_text()
    trained = labels[labels["fold"] != 1]
    assert f"-> {_instances(trained['target'])} augmented instances" in log
    assert "selection: last epoch; simplecnn at 32 px on cpu x1, amp off, workers 0" in log
    assert "resumed from" not in log and "* best" not in log
    best = load_checkpoint(out / "best.pt")["best"]
    assert best.keys() == {"epoch", "inner_tss", "select"}  # the layout flarelens.checkpoint documents
    assert best["epoch"] == 2 and best["select"] == "last" and math.isnan(best["inner_tss"])

    history = T.train(_config(root, labels_path, out, epochs=3, progress=True, resume=True))
    err = capsys.readouterr().err
    assert "epoch 3/3: " in err and "epoch 1/3: " not in err and "epoch 4/3: " not in err
    log = (out / "train.log").read_text()
    assert sum(line.endswith(f" resumed from {out / 'last.pt'} after epoch 2") for line in log.splitlines()) == 1
    assert history["epoch"].tolist() == [1, 2, 3]


def test_images_per_second_are_instances_over_seconds_and_nan_without_time(tiny, tmp_path, monkeypatch):
    root, labels, labels_path = tiny
    real = T.train_one_epoch
    seconds = iter([2.0, 0.0])

    def timed(*args, **kwargs):
        counts, _ = real(*args, **kwargs)
        return counts, next(seconds)

    monkeypatch.setattr(T, "train_one_epoch", timed)
    history = T.train(_config(root, labels_path, tmp_path / "run", epochs=2))
    n = _instances(labels.loc[labels["fold"] != 1, "target"])
    assert history["train_images_per_s"][0] == pytest.approx(n / 2.0)
    assert math.isnan(history["train_images_per_s"][1])  # a clock too coarse to see the epoch: unknown
    assert "nan img/s" in (tmp_path / "run" / "train.log").read_text()


def test_select_best_marks_the_selected_epochs_in_the_log(tmp_path):
    """A learning rate too small to change any forecast: every epoch has the same inner TSS, so
    only the first is selected ('* best') and best.pt holds it."""
    root = tmp_path / "images"
    labels = write_toy_dataset(root, n=40, size=16, cadence="9D")
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    out = tmp_path / "run"
    history = T.train(_config(root, path, out, epochs=2, image_size=16, inner=0.2, window="1h", select="best",
                              optimizer="sgd", lr=1e-12, weight_decay=0.0, augment="none"))
    assert history["inner_tss"].notna().all() and history["inner_tss"].nunique() == 1
    lines = [ln for ln in (out / "train.log").read_text().splitlines() if " epoch " in ln]
    assert [ln.endswith("  * best") for ln in lines] == [True, False]
    best = load_checkpoint(out / "best.pt")["best"]
    assert best == {"epoch": 1, "inner_tss": history["inner_tss"][0], "select": "best"}


# --------------------------------------------------------------------------- processes other than one


def test_a_rank_that_is_not_rank_0_stops_when_rank_0_cannot_take_the_directory(tmp_path, monkeypatch):
    """Seen from rank 1 of 2 (the agreement between processes stood in for): its own error is
    none, so it says why it stops and where to look."""
    monkeypatch.setattr(distributed, "agree", lambda ok, procs: False)
    cfg = T.make_config(_config("images", "labels.csv", tmp_path / "run"))
    message = f"{tmp_path / 'run'}: rank 0 could not take the run directory (see its message)"
    with pytest.raises(FlareLensError, match="^" + re.escape(message) + "$"):
        T._run(cfg, distributed.Processes(rank=1, world=2))


def test_two_processes_wrap_the_model_in_ddp_and_each_rank_resumes_its_own_generators(tiny, tmp_path, monkeypatch):
    """One process plays rank 0 (then rank 1) of two, with the collectives stood in for: the
    model goes into DistributedDataParallel (no device ids on a CPU), the checkpoint keeps
    every rank's generator states, and a resumed rank restores its own, not rank 0's."""
    root, _, labels_path = tiny
    out = tmp_path / "run"
    torch.manual_seed(123)
    other = rng_state()  # stands for rank 1's generators
    wrapped = []

    class FakeDDP(torch.nn.Module):
        def __init__(self, module, device_ids=None):
            super().__init__()
            wrapped.append((module, device_ids))
            self.module = module

        def forward(self, x):
            return self.module(x)

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", FakeDDP)
    monkeypatch.setattr(distributed, "agree", lambda ok, procs: bool(ok))
    monkeypatch.setattr(distributed, "all_reduce", lambda values, procs: values)
    monkeypatch.setattr(distributed, "barrier", lambda procs: None)
    monkeypatch.setattr(distributed, "gather_object", lambda obj, procs: [obj, other] if procs.main else None)
    cfg = T.make_config(_config(root, labels_path, out, epochs=1))
    T._run(cfg, distributed.Processes(rank=0, world=2))
    assert len(wrapped) == 1 and wrapped[0][1] is None
    ckpt = load_checkpoint(out / "last.pt")
    ranks = ckpt["rng_ranks"]
    assert len(ranks) == 2 and torch.equal(ranks[0]["torch"], ckpt["rng"]["torch"])
    assert torch.equal(ranks[1]["torch"], other["torch"]) and not torch.equal(other["torch"], ckpt["rng"]["torch"])

    restored = []

    def record(state):
        restored.append(state)
        raise _Stop

    monkeypatch.setattr(T, "set_rng_state", record)
    resume = dataclasses.replace(cfg, epochs=2, resume=True)
    with pytest.raises(_Stop):
        T._run(resume, distributed.Processes(rank=1, world=2))
    assert torch.equal(restored[-1]["torch"], other["torch"])
    with pytest.raises(_Stop):  # one process now: the saved states are not one per process, so "rng"
        T._run(resume, distributed.Processes())
    assert torch.equal(restored[-1]["torch"], ckpt["rng"]["torch"])
