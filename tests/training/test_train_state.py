"""The typed records of a run's resumable state: round trips, old files still resume, newer refused."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

from resnet_deploy.artifacts.naming import STATE_FILE
from resnet_deploy.artifacts.train_state import (
    FORMAT,
    EpochRecord,
    RunSetup,
    history_records,
    plan_fields,
    read_format,
)
from resnet_deploy.errors import ArtifactError, TrainingError
from resnet_deploy.models.checkpoint import load_checkpoint
from resnet_deploy.training.recipes import RECIPES, Plan, make_plan
from resnet_deploy.training.run_state import TrainState, load_state
from resnet_deploy.training.trainer import Trainer, TrainOptions
from tests.cli_helpers import assert_one_line_error, invoke
from tests.factories import write_tiny_cifar

ROW = {
    "epoch": 3,
    "lr": 0.1,
    "train_loss": 0.5,
    "train_top1_error": 10.0,
    "test_loss": 0.7,
    "test_top1_error": 12.0,
    "test_top5_error": 1.0,
    "images_per_second": 100.0,
    "epoch_seconds": 2.0,
    "skipped_images": 2,
    "skipped_paths": ["/d/a.png", "/d/b.png"],
    "processes": 2,
}


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"), train=40, test=20)


def options(cifar_dir, **kw) -> TrainOptions:
    return TrainOptions.of(**{"depth": 20, "data": f"cifar10:{cifar_dir}", "epochs": 2, "batch_size": 16, **kw})


@pytest.fixture(scope="module")
def one_epoch_run(cifar_dir, tmp_path_factory):
    """A run of 2 planned epochs stopped after its first, as Ctrl-C leaves it."""

    def stop(row: EpochRecord) -> None:
        raise KeyboardInterrupt

    run_dir = tmp_path_factory.mktemp("cut") / "run"
    with pytest.raises(KeyboardInterrupt):
        Trainer(options(cifar_dir), run_dir, on_epoch=stop).run()
    return run_dir


def copy_of(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"


# ---- the records ----------------------------------------------------------------------------------------


def test_epoch_record_round_trips_through_its_row() -> None:
    record = EpochRecord.from_dict(ROW)
    assert record.to_dict() == ROW and list(record.to_dict()) == list(ROW)  # log.json keeps its key order
    assert record.skipped_paths == ("/d/a.png", "/d/b.png") and record.epoch == 3 and record.processes == 2


def test_epoch_rows_of_older_runs_are_read() -> None:
    old = {k: v for k, v in ROW.items() if k not in ("skipped_paths", "processes")}  # logged before either was kept
    assert EpochRecord.from_dict(old).skipped_paths == () and EpochRecord.from_dict(old).processes == 1
    bare = {k: v for k, v in old.items() if k != "skipped_images"}
    assert EpochRecord.from_dict(bare).skipped_images == 0
    assert math.isnan(EpochRecord.from_dict({**bare, "test_loss": math.nan}).test_loss)


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({**ROW, "epoch": "3"}, "'epoch' is a str, not a int"),
        ({**ROW, "lr": None}, "'lr' is a NoneType"),
        ({**ROW, "skipped_paths": [1]}, "'skipped_paths' must be a list of str"),
        ({k: v for k, v in ROW.items() if k != "epoch"}, "has no 'epoch'"),
    ],
)
def test_a_damaged_epoch_row_is_named(row, needle) -> None:
    with pytest.raises(ArtifactError, match=needle):
        history_records([ROW, row])
    with pytest.raises(ArtifactError, match="row 2 of the run's history"):
        history_records([ROW, row])


def test_run_setup_round_trips() -> None:
    setup = RunSetup("cifar10:/d", 7, "channel", (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), ("cat", "dog"), "/w/init.pt")
    data = setup.to_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-able
    assert RunSetup.from_dict(data) == setup
    with pytest.raises(ArtifactError, match="'seed' is a str"):
        RunSetup.from_dict({**data, "seed": "7"})


def test_plan_fields_are_checked_and_round_trip() -> None:
    plan = make_plan(RECIPES["paper-cifar"], train_images=1000, depth=110, epochs=4, on_digits=False)
    assert Plan.from_dict(plan_fields(plan.to_dict())) == plan
    assert Plan.from_dict(plan_fields(json.loads(json.dumps(plan.to_dict())))) == plan  # lists for tuples
    damaged = json.loads(json.dumps(plan.to_dict()))
    del damaged["recipe"]["momentum"]
    with pytest.raises(ArtifactError, match="the run's plan's recipe has no 'momentum'"):
        plan_fields(damaged)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"format": FORMAT}, None),
        ({"format": "resnet-deploy-train-state/0"}, None),
        ({"format": "resnet-deploy-train-state/2"}, "newer than this resnet-deploy"),
        ({"format": "resnet-deploy-engine/1"}, "is not a resnet-deploy training state"),
        ({}, "is not a resnet-deploy training state"),
        ([1, 2], "is not a resnet-deploy training state"),
    ],
)
def test_state_format_reads_older_refuses_newer(payload, needle) -> None:
    if needle is None:
        assert read_format(payload, "s.pt") in (0, 1)
    else:
        with pytest.raises(ArtifactError, match=needle):
            read_format(payload, "s.pt")


# ---- train_state.pt --------------------------------------------------------------------------------------


def test_saved_state_is_typed(one_epoch_run) -> None:
    state = load_state(one_epoch_run)
    assert state.config.name == "resnet20" and state.plan.epochs == 2 and state.setup.seed == 0
    assert [row.epoch for row in state.history] == [1] and state.epoch == 1
    payload = torch.load(one_epoch_run / STATE_FILE, weights_only=True)
    assert payload["format"] == FORMAT
    assert list(payload) == ["format", "model", "optimizer", "epoch", "step", "config", "plan", "setup", "history"]
    again = TrainState.from_payload(payload, one_epoch_run / STATE_FILE)
    records = (again.config, again.plan, again.setup, again.history, again.epoch, again.step)
    assert records == (state.config, state.plan, state.setup, state.history, state.epoch, state.step)


def old_style_payload(state: TrainState) -> dict:
    """``train_state.pt`` as the code before the typed records wrote it: ``{"format", **TrainState.__dict__}``
    with config/plan/setup as dicts (plan via ``dataclasses.asdict``) and history rows as dicts, the
    first without ``skipped_paths`` (an even older row)."""
    setup = state.setup
    rows = [row.to_dict() for row in state.history]
    del rows[0]["skipped_paths"]
    return {
        "format": "resnet-deploy-train-state/1",
        "model": state.model,
        "optimizer": state.optimizer,
        "epoch": state.epoch,
        "step": state.step,
        "config": state.config.to_dict(),
        "plan": dataclasses.asdict(state.plan),
        "setup": {
            "data": setup.data,
            "seed": setup.seed,
            "normalize": setup.normalize,
            "mean": list(setup.mean),
            "std": list(setup.std),
            "class_names": list(setup.class_names),
            "init_checkpoint": setup.init_checkpoint,
        },
        "history": rows,
    }


def test_a_state_written_before_the_typed_records_still_resumes_bit_for_bit(cifar_dir, one_epoch_run, tmp_path):
    straight = Trainer(options(cifar_dir), tmp_path / "straight").run()
    run_dir = copy_of(one_epoch_run, tmp_path)
    torch.save(old_style_payload(load_state(run_dir)), run_dir / STATE_FILE)
    resumed = Trainer(TrainOptions.of(), run_dir, resume=run_dir).run()
    assert resumed.resumed_from == 1 and [row.epoch for row in resumed.history] == [1, 2]
    a = load_checkpoint(straight.checkpoint).state_dict
    b = load_checkpoint(resumed.checkpoint).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history[-1].test_loss == straight.history[-1].test_loss
    assert resumed.history[0].skipped_paths == ()  # the old row, read as it was
    assert json.loads((run_dir / "log.json").read_text())[0]["skipped_paths"] == []


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda s: s["plan"].pop("steps_per_epoch"), "damaged training state: the run's plan has no 'steps_per_epoch'"),
        (lambda s: s["setup"].__setitem__("mean", "0.5"), "damaged training state: the run's setup: 'mean' must be"),
        (lambda s: s["history"][0].__setitem__("lr", "x"), r"row 1 of the run's history: 'lr' is a str"),
        (lambda s: s["config"].__setitem__("depth", 21), "damaged training state: unknown depth 21"),
        (lambda s: s.pop("setup"), "incomplete training state \\(no setup\\)"),
        (lambda s: s.__setitem__("format", "resnet-deploy-train-state/9"), "newer than this resnet-deploy"),
        (lambda s: s.__setitem__("format", "something-else/1"), "not a resnet-deploy training state"),
    ],
)
def test_a_damaged_or_newer_state_is_refused_in_one_line(one_epoch_run, tmp_path, damage, needle) -> None:
    run_dir = copy_of(one_epoch_run, tmp_path)
    payload = torch.load(run_dir / STATE_FILE, weights_only=True)
    damage(payload)
    torch.save(payload, run_dir / STATE_FILE)
    with pytest.raises(TrainingError, match=needle) as caught:
        Trainer(TrainOptions.of(), run_dir, resume=run_dir)
    assert "\n" not in str(caught.value)


# ---- options ---------------------------------------------------------------------------------------------


def test_the_callers_options_are_left_as_they_were(one_epoch_run) -> None:
    given = TrainOptions.of()
    trainer = Trainer(given, one_epoch_run, resume=one_epoch_run)
    assert given == TrainOptions.of() and given.data is None  # not filled in with the run's data
    assert trainer.options.data == trainer.data == load_state(one_epoch_run).setup.data
    assert Trainer(TrainOptions.of(depth=20), one_epoch_run.parent / "new").data == "digits"  # the default


def test_data_given_on_resume_is_checked_even_when_it_is_digits(cifar_dir, one_epoch_run) -> None:
    with pytest.raises(TrainingError, match=r"was trained on cifar10:.*, not digits; drop `data`"):
        Trainer(TrainOptions.of(data="digits"), one_epoch_run, resume=one_epoch_run)
    moved = Trainer(TrainOptions.of(data=f"cifar10:{cifar_dir}"), one_epoch_run, resume=one_epoch_run)
    assert moved.data == f"cifar10:{cifar_dir}"  # the same kind of data, from where it is now


# ---- an optimizer state that does not fit, a state that pickles objects -----------------------------------


def _extra_group(optimizer: dict) -> None:
    optimizer["param_groups"].append({**optimizer["param_groups"][0], "params": []})


def _one_parameter_fewer(optimizer: dict) -> None:
    optimizer["param_groups"][0]["params"].pop()


def _wrong_momentum_shape(optimizer: dict) -> None:
    first = optimizer["param_groups"][0]["params"][0]
    optimizer["state"][first]["momentum_buffer"] = torch.zeros(3, 3)


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (_extra_group, "it has 2 parameter groups, where training uses 1"),
        (_one_parameter_fewer, "parameters, the model has"),
        (_wrong_momentum_shape, "its momentum_buffer for conv1.weight is 3x3, the parameter 16x3x3x3"),
    ],
)
def test_an_optimizer_state_that_does_not_fit_the_model_is_refused_in_one_line(
    one_epoch_run, tmp_path, damage, needle
) -> None:
    run_dir = copy_of(one_epoch_run, tmp_path)
    payload = torch.load(run_dir / STATE_FILE, weights_only=True)
    damage(payload["optimizer"])
    torch.save(payload, run_dir / STATE_FILE)
    log = (run_dir / "log.json").read_text()
    result = invoke("train", "--resume", str(run_dir), "--no-progress")
    assert_one_line_error(result, needle)
    assert "does not fit its model (resnet20)" in result.stderr
    assert "start a new run" in result.stderr and "resume the run this state came from" in result.stderr
    assert (run_dir / "log.json").read_text() == log  # nothing trained


def test_an_optimizer_state_that_does_not_fit_is_one_line_from_rank_0_under_nproc(one_epoch_run, tmp_path) -> None:
    run_dir = copy_of(one_epoch_run, tmp_path)
    payload = torch.load(run_dir / STATE_FILE, weights_only=True)
    _extra_group(payload["optimizer"])
    torch.save(payload, run_dir / STATE_FILE)
    done = subprocess.run(
        [sys.executable, "-m", "resnet_deploy", "train", "--resume", str(run_dir), "--nproc", "2", "--no-progress"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr[-3000:]
    assert "it has 2 parameter groups" in lines[0] and "continue with" not in lines[0]


class RunsCode:
    """A pickle payload: unpickling it would create ``marker``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("where", ["whole file", "inside the setup"])
def test_a_state_that_pickles_objects_is_refused_unrun_in_resnet_deploys_words(one_epoch_run, tmp_path, where) -> None:
    run_dir = copy_of(one_epoch_run, tmp_path)
    marker = tmp_path / "payload-ran"
    if where == "whole file":
        torch.save(RunsCode(marker), run_dir / STATE_FILE)
    else:
        payload = torch.load(run_dir / STATE_FILE, weights_only=True)
        payload["setup"] = RunsCode(marker)
        torch.save(payload, run_dir / STATE_FILE)
    result = invoke("train", "--resume", str(run_dir), "--no-progress")
    assert_one_line_error(result, "holds objects other than tensors (it pickles ")
    assert "never does" in result.stderr and "torch.save(model.state_dict(), path)" in result.stderr
    assert "weights_only" not in result.output and "will likely succeed" not in result.output
    assert not marker.exists()


def test_a_state_that_is_no_pickle_of_tensors_never_relays_torchs_advice(one_epoch_run, tmp_path) -> None:
    run_dir = copy_of(one_epoch_run, tmp_path)
    with open(run_dir / STATE_FILE, "wb") as fh:
        pickle.dump({"format": FORMAT}, fh, protocol=4)  # a plain pickle, not torch.save's
    result = invoke("train", "--resume", str(run_dir), "--no-progress")
    assert_one_line_error(result, "is not a readable training state (it does not unpickle)")
    assert "weights_only" not in result.output and "will likely succeed" not in result.output
    assert "warning" not in result.output.lower()


def test_an_optimizer_state_torch_refuses_is_one_line_not_torchs_error(tmp_path) -> None:
    from resnet_deploy.models import build_model
    from resnet_deploy.training.trainer import _restore_optimizer

    model = build_model(20)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    saved = {"state": {}, "param_groups": [{**optimizer.state_dict()["param_groups"][0], "params": [0]}]}
    with pytest.raises(TrainingError, match=r"does not fit the model .*start a new run") as caught:
        _restore_optimizer(optimizer, saved, tmp_path)
    assert "\n" not in str(caught.value) and "ValueError" in str(caught.value)
