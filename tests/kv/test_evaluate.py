"""Evaluation helpers: the pass-key prompt, agreement, and the eval-kv command on SmolLM2."""

import pytest
import torch

from rotaquant.cli import main
from rotaquant.contrib import data
from rotaquant.kv.evaluate import agreement, needle_prompt

from ..conftest import packaged


@pytest.fixture(scope="module")
def tokenizer():
    return packaged(data.smollm2)[1]


@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_needle_prompt_has_the_length_and_the_key_at_its_depth(tokenizer, depth):
    ids = needle_prompt(tokenizer, 1024, depth, 52817)
    assert ids.shape == (1, 1024)
    text = tokenizer.decode(ids[0])
    assert text.count("52817") == 2 and text.rstrip().endswith("The pass key is")
    position = text.index("52817") / len(text)
    assert abs(position - depth) < 0.12


def test_agreement_counts_equal_positions_and_the_first_difference():
    assert agreement(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == (3, 2)
    assert agreement(torch.tensor([1, 2]), torch.tensor([1, 2])) == (2, 2)


def test_eval_kv_reports_perplexity_memory_agreement_and_the_needle(capsys, monkeypatch):
    from transformers.utils import generic

    logged = []  # transformers' deprecation notices (past_key_values -> cache) go through this
    monkeypatch.setattr(
        generic.logger, "warning_once", lambda message, *a, **k: logged.append(message)
    )
    main(
        [
            "eval-kv",
            "--tokens",
            "512",
            "--chunk",
            "128",
            "--new-tokens",
            "8",
            "--needle-tokens",
            "1024",
            "--residual-length",
            "64",
        ]
    )
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("TurboQuantCache(4, 3)"))
    change, held, ratio = row.split()[-3], float(row.split()[-2]), float(row.split()[-1])
    assert abs(float(change.rstrip("%"))) < 2 and held > 0 and ratio > 2
    assert "tokens equal to the uncompressed cache's" in out
    top1 = float(out.split("(same text): ")[1].split("%")[0])
    assert top1 > 90
    assert "found through the compressed cache" in out and "NOT found" not in out
    assert not [message for message in logged if "deprecated" in message], logged


def test_eval_kv_flags_are_the_kv_config_and_are_checked_before_any_model_loads(monkeypatch):
    from rotaquant.cli import build_parser
    from rotaquant.contrib import eval_kv
    from rotaquant.kv import KVConfig

    def parse(*flags):
        return eval_kv.config_from(build_parser().parse_args(["eval-kv", *flags]))

    assert parse() == KVConfig(attention="compressed")  # eval-kv measures the fast path
    got = parse("--key-bits", "3.5", "--no-center-keys", "--boundary-bits", "6,4", "--seed", "3")
    assert got == KVConfig(
        key_bits=3.5, center_keys=False, boundary_bits=(6, 4), seed=3, attention="compressed"
    )
    with pytest.warns(DeprecationWarning, match="--residual-length"):
        assert parse("--residual", "32").residual_length == 32

    loaded = []
    monkeypatch.setattr(data, "smollm2", lambda: loaded.append(1))
    for bad in (["--key-bits", "3.01"], ["--key-bits", "0"], ["--residual-length", "-5"]):
        with pytest.raises(SystemExit, match="error: .*(key_bits|residual_length)"):
            main(["eval-kv", *bad])
    # realisable at some head_dim (80), not at SmolLM2's 64: refused before loading too, with
    # widths the cache accepts
    with pytest.raises(SystemExit, match=r"key_bits=3\.3: .*head_dim=64.*3\.25, 3\.375"):
        main(["eval-kv", "--key-bits", "3.3"])
    with pytest.raises(SystemExit, match="value_bits=2.6"):
        main(["eval-kv", "--model", "gemma3", "--value-bits", "2.6"])
    assert not loaded  # refused before the model (or the baseline) was touched


@pytest.mark.parametrize("name", ["smollm2", "gemma3"])
def test_eval_kv_knows_the_packaged_models_head_dims(name):
    from rotaquant.contrib import eval_kv

    model, _ = packaged(getattr(data, name))
    assert model.config.head_dim == eval_kv.MODEL_HEAD_DIMS[name]
