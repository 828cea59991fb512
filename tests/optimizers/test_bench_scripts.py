"""The optimizer step benches run, on tiny inputs, and print the rows they promise.

Their numbers are for people to read; here only that the scripts still work and
compare what they say they compare (the native kernels against the compiled path,
the default path against a trial's).
"""

from __future__ import annotations

import re

import pytest

from bench import optimizer_step, trial_optimizer_step


def test_optimizer_step_prints_fused_and_compiled_rows(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--params", "40000", "--tensors", "6", "--repeat", "2", "--warmup", "1"]
    assert optimizer_step.main([*args, "--only", "lamb"]) == 0
    out = capsys.readouterr().out
    paths = re.findall(r"^lamb\s+(\w+)\s+[\d.]+\s+[\d.]+\s+[\d.]+x", out, re.MULTILINE)
    assert paths == ["reference", "foreach", "fused", "compiled"], out


def test_trial_optimizer_step_prints_a_row_per_model_and_optimizer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--only", "logreg,mlp", "--optimizers", "lamb,sgd", "--repeat", "2"]
    assert trial_optimizer_step.main(argv) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^(\w+)\s+\d+\s+\d+\s+(\w+)\s+\d+\s+\d+\s+[\d.]+x$", out, re.MULTILINE)
    assert rows == [("logreg", "lamb"), ("logreg", "sgd"), ("mlp", "lamb"), ("mlp", "sgd")], out
