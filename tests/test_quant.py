"""Fake quantization: levels, STE, KL clipping, per-block policies, and the effect on accuracy."""

from __future__ import annotations

import pytest
import torch

from apqopt import Block, Candidate, get_space
from apqopt.supernet.quant import QuantConv2d, fake_quant, fake_quant_plain, kl_clip, quantize

SP = get_space("fmnist")


def test_levels_and_ste() -> None:
    x = torch.linspace(-2, 2, 1001, requires_grad=True)
    clip = torch.tensor(1.0)
    q = fake_quant(x, clip, 4, signed=True)
    assert q.detach().unique().numel() == 15  # 2^(4-1)-1 levels each side, plus 0
    assert float(q.detach().max()) == 1.0
    q.sum().backward()
    inside = x.detach().abs() <= 1
    assert torch.all(x.grad[inside] == 1) and torch.all(x.grad[~inside] == 0)
    u = fake_quant(torch.linspace(0, 3, 1001), torch.tensor(2.0), 2, signed=False)
    assert u.unique().numel() == 4


@pytest.mark.parametrize("bits", [4, 6, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_fused_fake_quant_equals_plain_definition(bits: int, signed: bool) -> None:
    g = torch.Generator().manual_seed(bits)
    for shape, clip in [
        ((8, 16, 7, 7), torch.tensor(1.3)),  # activations: one clip
        ((16, 8, 3, 3), torch.rand(16, generator=g).add(0.2).view(-1, 1, 1, 1)),  # weights: per channel
    ]:
        x = (torch.randn(shape, generator=g) * 1.5).requires_grad_()
        y = x.detach().clone().requires_grad_()
        a, b = fake_quant(x, clip, bits, signed), fake_quant_plain(y, clip, bits, signed)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        up = torch.randn(shape, generator=g)
        (a * up).sum().backward()
        (b * up).sum().backward()
        torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)


def test_kl_clip_clips_heavy_tails_more_at_low_bits() -> None:
    torch.manual_seed(0)
    w = torch.randn(16, 4000)
    r4 = (kl_clip(w, 4, True) / w.abs().amax(1)).mean()
    r8 = (kl_clip(w, 8, True) / w.abs().amax(1)).mean()
    assert 0.2 < r4 < r8 <= 1.0


def _policy(cand: Candidate, **bits: int) -> Candidate:
    return get_space(cand.space).candidate(
        tuple(
            tuple(
                Block(b.kernel, b.middle, **{**dict(pw_w=b.pw_w, pw_a=b.pw_a, dw_w=b.dw_w, dw_a=b.dw_a), **bits})
                for b in s
            )
            for s in cand.stages
        ),
    )


def test_policy_reaches_each_conv() -> None:
    torch.manual_seed(0)
    from apqopt.supernet.network import Supernet

    cand = _policy(SP.smallest(), pw_w=6, pw_a=4, dw_w=8, dw_a=6)
    sub = Supernet(SP).extract(cand)
    q = quantize(sub, cand, torch.randn(16, 1, 28, 28))
    mb = q.blocks[0]
    assert isinstance(mb.expand[0], QuantConv2d) and (mb.expand[0].w_bits, mb.expand[0].a_bits) == (6, 4)
    assert (mb.dw[0].w_bits, mb.dw[0].a_bits) == (8, 6) and (mb.project[0].w_bits, mb.project[0].a_bits) == (6, 4)
    assert not mb.dw[0].a_signed and mb.expand[0].a_signed is not None
    assert (q.stem[0].w_bits, q.tail[0].a_bits) == (8, 8)
    with pytest.raises(ValueError, match="architecture differs"):
        quantize(sub, SP.uniform(), torch.randn(4, 1, 28, 28))


def test_quantized_network_stays_channels_last() -> None:
    """The fast CPU path: a 1-channel image batch must not knock the quantized convs out of
    channels_last (the plain-ops quantizer did, halving measurement speed)."""
    from apqopt.supernet.network import Supernet

    torch.manual_seed(0)
    cand = SP.uniform()
    sub = Supernet(SP).to(memory_format=torch.channels_last).extract(cand)
    x = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    q = quantize(sub, cand, x)
    layouts = []
    for m in q.modules():
        if isinstance(m, QuantConv2d):
            m.register_forward_hook(lambda m, i, o: layouts.append(o.is_contiguous(memory_format=torch.channels_last)))
    q.train()
    q(x).sum().backward()
    assert len(layouts) > 10 and all(layouts)


@pytest.mark.slow
def test_quantization_hurts_low_bits_more(shipped_supernet) -> None:  # type: ignore[no-untyped-def]
    from apqopt.supernet.data import load_split
    from apqopt.supernet.evaluate import accuracy, bn_slice, evaluate_subnet

    val = load_split("val").subset(2000)
    cand = SP.uniform()
    sub = shipped_supernet.extract(cand)
    fp = evaluate_subnet(sub, val)
    q8 = accuracy(quantize(sub, _policy(cand, pw_w=8, pw_a=8, dw_w=8, dw_a=8), bn_slice(512)), val)
    q4 = accuracy(quantize(sub, _policy(cand, pw_w=4, pw_a=4, dw_w=4, dw_a=4), bn_slice(512)), val)
    assert abs(q8 - fp) < 0.01
    assert q4 < q8


@pytest.mark.parametrize(("k", "h", "stride"), [(7, 4, 1), (5, 4, 1), (7, 7, 2), (3, 14, 1)])
def test_depthwise_fine_tune_path_matches_conv(k: int, h: int, stride: int) -> None:
    """During the fine-tune a depthwise QuantConv2d takes the matrix-product path (fast backward for
    kernels larger than the map); without gradients it runs oneDNN's conv. Both must agree."""
    g = torch.Generator().manual_seed(k * h)
    conv = torch.nn.Conv2d(12, 12, k, stride, k // 2, groups=12, bias=False)
    q = QuantConv2d(conv, w_bits=6, a_bits=6)
    q.w_clip.fill_(0.5)
    q.a_clip.fill_(2.0)
    x = torch.randn(5, 12, h, h, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = q(x)  # matrix-product path (weights require grad)
    up = torch.randn(out.shape, generator=g)
    (out * up).sum().backward()
    w = conv.weight.detach().clone().requires_grad_()
    wq = fake_quant(w, q.w_clip.view(-1, 1, 1, 1), 6, True)
    xr = x.detach().clone().requires_grad_()
    ref = torch.nn.functional.conv2d(fake_quant(xr, q.a_clip, 6, True), wq, None, stride, k // 2, 1, 12)
    (ref * up).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, w.grad, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(q(x), ref, rtol=1e-5, atol=1e-5)
