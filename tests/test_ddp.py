"""A 2-process CPU (gloo) DistributedDataParallel step on a patched model.

Every activation parameter must receive a gradient that DDP all-reduces, with ``find_unused_parameters=False`` (the
strict setting: a parameter without a gradient fails the next iteration), and the model must be the one the trainer's
DDP workers build from the model dict that carries ``act_swap:``.
"""

import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SPEC = {"act": "frelu", "rules": [{"layers": "0-4", "act": "acon_c"}, {"layers": "5-6", "act": "prelu"}]}
STEPS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from torch.nn.parallel import DistributedDataParallel as DDP
        from ultralytics.cfg import get_cfg

        from yolo_act_swap.engine.optim import activation_parameters
        from yolo_act_swap.engine.run import with_spec
        from yolo_act_swap.models import build_detection_model, load_model_cfg

        torch.manual_seed(100 + rank)  # different init per rank: DDP must broadcast rank 0's weights
        model = build_detection_model(with_spec(load_model_cfg("yolov8n.yaml"), spec=SPEC), nc=3, verbose=False)
        model.args = get_cfg()
        model.train()
        ddp = DDP(model, find_unused_parameters=False)
        names = {id(p): n for n, p in model.named_parameters()}
        acts = activation_parameters(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        g = torch.Generator().manual_seed(rank)  # different data per rank
        record = {"initial": {names[id(p)]: p.detach().clone() for p in acts}}
        for step in range(STEPS):
            n = 3
            batch = {
                "img": torch.rand(2, 3, 64, 64, generator=g),
                "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
                "cls": torch.randint(0, 3, (n, 1), generator=g).float(),
                "bboxes": torch.rand(n, 4, generator=g) * 0.3 + torch.tensor([0.35, 0.35, 0.1, 0.1]),
            }
            loss, _ = ddp(batch)
            loss.sum().backward()
            if step == 0:
                record["grads"] = {names[id(p)]: None if p.grad is None else p.grad.clone() for p in acts}
                record["norms"] = {n: None if p.grad is None else float(p.grad.abs().sum())
                                   for n, p in model.named_parameters()}
            opt.step()
            opt.zero_grad()
        record["final"] = {names[id(p)]: p.detach().clone() for p in acts}
        torch.save(record, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_gloo_ddp_step_trains_every_activation_parameter(tmp_path):
    ctx = mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False, start_method="spawn")
    deadline = time.time() + 600
    while not ctx.join(timeout=5):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("DDP workers did not finish in 600 s")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))

    grads = r0["grads"]
    kinds = {k.rsplit(".", 1)[-1] for k in grads}
    assert len(grads) > 100 and {"p1", "p2", "beta", "weight"} <= kinds  # acon_c, prelu and frelu parameters
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), "an activation param got no grad"
    zero = [k for k, g in grads.items() if not g.abs().sum() > 0]
    assert len(zero) <= 0.1 * len(grads)
    for k in zero:  # only where the whole block got no signal (a box branch without positive anchors in this batch)
        block = k.split(".act.")[0]
        assert r0["norms"][f"{block}.conv.weight"] == 0.0, k
    for k in grads:  # all-reduced: both ranks see the same (averaged) gradient, and hold the same weights
        assert torch.allclose(r0["grads"][k], r1["grads"][k], atol=1e-6), k
        assert torch.equal(r0["initial"][k], r1["initial"][k]), k  # rank 0's init was broadcast
        assert torch.allclose(r0["final"][k], r1["final"][k], atol=1e-6), k
    moved = [not torch.equal(r0["initial"][k], r0["final"][k]) for k in grads if k not in zero]
    assert sum(moved) >= 0.95 * len(moved)  # a few tiny updates round away next to a BN weight of 1.0
