"""Where RoPE goes in attention: one attention layer at the `base` shape (16 x 2048, d 768, 12 heads), forward +
backward compiled, bf16 autocast, with the RoPE written in several ways. Prints ms per forward + backward
(median of 20), the difference to the first variant's output and input gradient, and the kernels of one step.
GPU only; results/gpu/attn_probe.log. tokengap/models/mixers/attention.py took "qk_together".

    python -m scripts.probe_attention [variant ...]
"""
import statistics
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from scripts.bench import cuda_times_ms
from tokengap.models.mixers.attention import rope_tables_cached

B, L, D, H = 16, 2048, 768, 12
HD = D // H


def rope_cur(x, cos, sin):  # x (b,l,h,d)
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos[:, None, :].to(x.dtype), sin[:, None, :].to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def rope_hf(x, cos, sin):  # x (b,h,l,d), tables (l, d/2)
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def rope_full(x, cosf, sinf):  # x (b,l,h,d); cosf, sinf (l,1,d) bf16
    x1, x2 = x.chunk(2, dim=-1)
    return x * cosf + torch.cat([-x2, x1], dim=-1) * sinf


def rope_roll(x, cosf, sinf):  # rotate_half as a roll and a sign: index math only, no cat
    sign = torch.ones(HD, device=x.device, dtype=x.dtype)
    sign[: HD // 2] = -1
    return x * cosf + torch.roll(x, HD // 2, dims=-1) * (sinf * sign)


class Rope(torch.autograd.Function):
    """RoPE with an explicit backward (the inverse rotation), inductor traces both."""
    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return rope_cur(x, cos, sin)

    @staticmethod
    def backward(ctx, g):
        cos, sin = ctx.saved_tensors
        return rope_cur(g, cos, -sin), None, None


class Attn(nn.Module):
    def __init__(self, variant):
        super().__init__()
        self.v = variant
        self.wqkv = nn.Linear(D, 3 * D, bias=False)
        self.wo = nn.Linear(D, D, bias=False)

    def forward(self, x, cos, sin, cosf, sinf, cosb, sinb):
        b, l, _ = x.shape
        v = self.v
        qkv = self.wqkv(x)
        if v == "heads_first":
            qkv = qkv.view(b, l, 3 * H, HD).transpose(1, 2)
            q, k, vv = qkv.split([H, H, H], dim=1)
            q, k = rope_hf(q, cos, sin), rope_hf(k, cos, sin)
        elif v == "qk_together":
            qk, vv = qkv.split([2 * D, D], dim=-1)
            qk = rope_cur(qk.view(b, l, 2 * H, HD), cos, sin)
            q, k = qk.split([H, H], dim=2)
            vv = vv.view(b, l, H, HD)
            q, k, vv = (t.transpose(1, 2) for t in (q, k, vv))
        else:
            q, k, vv = qkv.split([D, D, D], dim=-1)
            q, k, vv = (t.view(b, l, H, HD) for t in (q, k, vv))
            if v == "norope":
                pass
            elif v == "roll":
                q, k = rope_roll(q, cosf, sinf), rope_roll(k, cosf, sinf)
            elif v == "fullcos":
                q, k = rope_full(q, cosf, sinf), rope_full(k, cosf, sinf)
            elif v == "autograd_fn":
                q, k = Rope.apply(q, cos, sin), Rope.apply(k, cos, sin)
            elif v == "fla_rope":
                from fla.modules.rotary import rotary_embedding
                f = torch.compiler.disable(rotary_embedding)
                q, k = f(q, cosb, sinb), f(k, cosb, sinb)
            else:  # cur, contig_bhld, flash_backend
                q, k = rope_cur(q, cos, sin), rope_cur(k, cos, sin)
            q, k, vv = (t.transpose(1, 2) for t in (q, k, vv))
            if v == "contig_bhld":
                q, k, vv = q.contiguous(), k.contiguous(), vv.contiguous()
        if v == "flash_backend":
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                y = F.scaled_dot_product_attention(q, k, vv, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, vv, is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(b, l, D))


def main():
    variants = sys.argv[1:] or ["cur", "norope", "heads_first", "qk_together", "fullcos", "autograd_fn",
                                "contig_bhld", "flash_backend", "fla_rope"]
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA device")
    dev = "cuda"
    cos, sin = rope_tables_cached(L, HD, 10000.0, torch.device(dev))
    cosf = torch.cat([cos, cos], -1)[:, None, :].bfloat16()
    sinf = torch.cat([sin, sin], -1)[:, None, :].bfloat16()
    cosb, sinb = cos.bfloat16(), sin.bfloat16()
    x0 = torch.randn(B, L, D, device=dev)
    g = torch.randn(B, L, D, device=dev, dtype=torch.bfloat16)
    ref_out = ref_grad = None
    from torch.profiler import ProfilerActivity, profile
    for v in variants:
        torch._dynamo.reset()
        torch.manual_seed(0)
        m = Attn(v).to(dev)
        f = torch.compile(m)
        x = x0.clone().requires_grad_(True)

        def one():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = f(x, cos, sin, cosf, sinf, cosb, sinb)
            y.backward(g)
            return y
        try:
            for _ in range(3):
                y = one()
        except Exception as exc:
            print(f"{v:14s} FAILED {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            continue
        x.grad = None
        m.zero_grad(set_to_none=True)
        y = one()
        if v == "cur":
            ref_out, ref_grad = y.detach().float(), x.grad.float().clone()
        err = ""
        if ref_out is not None and v != "norope":
            err = (f"out maxdiff {(y.detach().float() - ref_out).abs().max().item():.2e} "
                   f"dx maxdiff {(x.grad.float() - ref_grad).abs().max().item():.2e}")
        torch.cuda.synchronize()
        ts = cuda_times_ms(one, 20)
        print(f"{v:14s} {statistics.median(ts):7.3f} ms fwd+bwd   {err}", flush=True)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            one()
            torch.cuda.synchronize()
        evs = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)
        print(f"      total {sum(e.self_device_time_total for e in evs) / 1e3:7.3f} ms of kernels")
        for e in evs[:14]:
            if e.self_device_time_total > 0:
                print(f"      {e.self_device_time_total / 1e3:7.3f} ms  x{e.count}  {e.key[:90]}")


if __name__ == "__main__":
    main()
