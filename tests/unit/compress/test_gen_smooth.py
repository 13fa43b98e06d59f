"""SmoothQuant before a causal LM's int8: the folded model computes what it did in float, an outlier
channel stops ruining int8, and a model it cannot fold is left exactly as it was."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from tests._tiny_lm import build_tiny_lm

from lmforge.compress import CompressOptions
from lmforge.compress._smooth import smooth_causal_lm
from lmforge.errors import ConfigError
from lmforge.predict import quantize_int8_dynamic

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CALIBRATION = [[2, 5, 6, 7, 8, 9, 10, 3], [2, 11, 12, 13, 14, 15, 3, 4], [2, 16, 17, 18, 19, 20, 21, 22, 3]]
HELD_OUT = [[2, 23, 24, 25, 26, 27, 28, 29, 3, 30, 31]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> object:
    folder = build_tiny_lm(tmp_path_factory.mktemp("smooth") / "lm", seed=5, layers=2, hidden=64)
    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def _logits(model: object, ids: list[list[int]]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor(ids)).logits  # type: ignore[operator]


def _with_outlier_channel(model: object, channel: int = 7, factor: float = 300.0) -> object:
    """The same function, with one input channel of every attention and MLP block ``factor`` times larger
    (the norm's weight up, the columns reading it down): the activation outliers of real LLMs."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for layer in out.model.layers:  # type: ignore[attr-defined]
            for norm, readers in ((layer.input_layernorm, (layer.self_attn.q_proj, layer.self_attn.k_proj,
                                                          layer.self_attn.v_proj)),
                                  (layer.post_attention_layernorm, (layer.mlp.gate_proj, layer.mlp.up_proj))):
                norm.weight[channel] *= factor
                for lin in readers:
                    lin.weight[:, channel] /= factor
    return out


def test_folded_scales_leave_the_float_model_unchanged(tiny: object) -> None:
    model = _with_outlier_channel(tiny)
    before = _logits(model, HELD_OUT)
    info = smooth_causal_lm(model, CALIBRATION, alpha=0.8)
    assert info["method"] == "smoothquant" and info["alpha"] == 0.8
    assert info["calibration_texts"] == 3 and info["inputs_smoothed"] == 3 * 2  # q/k/v, gate/up, down per layer
    after = _logits(model, HELD_OUT)
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4 * float(before.abs().max()))
    # ... while the weights did change: the outlier channel's norm weight came down
    planted = _with_outlier_channel(tiny).model.layers[0].input_layernorm.weight  # type: ignore[attr-defined]
    smoothed = model.model.layers[0].input_layernorm.weight  # type: ignore[attr-defined]
    assert float(smoothed[7].detach()) < 0.2 * float(planted[7].detach())


def test_smoothing_takes_the_outlier_channel_out_of_int8s_error(tiny: object) -> None:
    model = _with_outlier_channel(tiny)
    reference = _logits(model, HELD_OUT)
    plain, _ = quantize_int8_dynamic(copy.deepcopy(model))
    smoothed = copy.deepcopy(model)
    smooth_causal_lm(smoothed, CALIBRATION, alpha=0.8)
    smoothed, _ = quantize_int8_dynamic(smoothed)
    plain_error = float((_logits(plain, HELD_OUT) - reference).abs().mean())
    smoothed_error = float((_logits(smoothed, HELD_OUT) - reference).abs().mean())
    assert smoothed_error < 0.25 * plain_error, (smoothed_error, plain_error)


class _OnePlusNorm(torch.nn.Module):
    """An RMSNorm that scales by ``1 + weight`` (Gemma's): dividing its weight does not divide its output."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + self.weight)


def test_a_model_the_scales_do_not_fold_into_is_restored(tiny: object) -> None:
    model = copy.deepcopy(tiny)
    for layer in model.model.layers:  # type: ignore[attr-defined]
        layer.input_layernorm = _OnePlusNorm(layer.self_attn.q_proj.in_features)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # type: ignore[attr-defined]
    info = smooth_causal_lm(model, CALIBRATION, alpha=0.8)
    assert info["method"] is None and "float logits" in info["reason"]
    for key, value in model.state_dict().items():  # type: ignore[attr-defined]
        assert torch.equal(value, state[key]), key


def test_a_model_without_llama_layers_is_left_alone_with_the_reason(tmp_path: Path) -> None:
    config = transformers.GPT2Config(vocab_size=40, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    model = transformers.GPT2LMHeadModel(config).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    info = smooth_causal_lm(model, CALIBRATION, alpha=0.8)
    assert info == {"method": None, "reason": "GPT2LMHeadModel has no decoder layers at model.layers"}
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_alpha_zero_or_no_texts_smooths_nothing(tiny: object) -> None:
    model = copy.deepcopy(tiny)
    assert smooth_causal_lm(model, CALIBRATION, alpha=0.0) == {"method": None, "reason": "off (alpha 0)"}
    assert smooth_causal_lm(model, [], alpha=0.8) == {"method": None, "reason": "no calibration texts"}
    assert all(torch.equal(v, w) for v, w in zip(model.state_dict().values(), tiny.state_dict().values(),  # type: ignore[attr-defined]
                                                 strict=True))


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_smooth_alpha_outside_0_1_is_refused(alpha: float) -> None:
    with pytest.raises(ConfigError, match=r"--smooth-alpha must be in \[0, 1\]"):
        CompressOptions(smooth_alpha=alpha)
