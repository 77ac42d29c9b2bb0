"""GPU idle time of a compiled train step: synced vs back-to-back steps, and the largest gaps between kernels
of one profiled step (with the kernels either side). GPU only.

    python -m scripts.step_gaps hybrid:base transformer:base [hybrid:base:reduce-overhead] [hybrid:base:graph]
    # model:size[:mode]; mode: a torch.compile mode, or "graph" (forward + backward replayed from a CUDA graph,
    # as train.cuda_graph does)
"""
import statistics
import sys

import torch
from torch.profiler import ProfilerActivity, profile


from scripts import bench
from scripts.bench import cuda_times_ms
from tokengap.models import LM
from tokengap.train.graphed import GraphedFwdBwd

def run(name, size, mode=None):
    torch._dynamo.reset()
    cfg = bench.zoo_cfg(name, size); torch.manual_seed(0)
    model = LM(cfg).cuda(); f = torch.compile(model, mode=None if mode == "graph" else mode)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(0, 32768, (bench.SIZES[size]["batch"], 2049), device="cuda")
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    graphed = GraphedFwdBwd(f, model.parameters(), torch.bfloat16) if mode == "graph" else None
    def one():
        if graphed is not None:
            graphed(x[None], y[None]); opt.step(); return
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = f(x, y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(4): one()
    synced = statistics.median(cuda_times_ms(one, 10))
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(10): one()
    b.record(); torch.cuda.synchronize()
    print(f"{name} {size} mode={mode}: synced {synced:.2f} ms/step, back-to-back {a.elapsed_time(b)/10:.2f} ms/step", flush=True)
    if mode and mode != "graph": return
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        one(); torch.cuda.synchronize()
    ks = sorted([(e.time_range.start, e.time_range.end, e.name) for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA], key=lambda k: k[0])
    busy = sum(e - s for s, e, _ in ks); span = ks[-1][1] - ks[0][0]
    gaps = sorted(((ks[i + 1][0] - ks[i][1], ks[i][2][:60], ks[i + 1][2][:60]) for i in range(len(ks) - 1)), reverse=True)
    small = sum(g for g, _, _ in gaps if g < 20)
    print(f"  {len(ks)} kernels, span {span/1e3:.2f} ms, busy {busy/1e3:.2f} ms, idle {(span-busy)/1e3:.2f} ms "
          f"(gaps < 20 us: {small/1e3:.2f} ms)", flush=True)
    for g, p, n in gaps[:15]:
        print(f"  gap {g:8.1f} us after {p} before {n}", flush=True)

if __name__ == "__main__":
    for spec in sys.argv[1:]:
        name, size, *mode = spec.split(":")
        run(name, size, mode[0] if mode else None)
