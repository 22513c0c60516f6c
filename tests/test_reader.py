"""The batched signal reader reads exactly the sums the per-parameter reader of 0.1.0 read (kept in
tests/reference_reader.py), plans once, and allocates no work buffer after its first step."""

import math

import pytest
import torch
from reference_reader import ReferenceSignalReader

from metalr_hf.buckets import _MAX_KEPT_STRIDE
from metalr_hf.reader import SignalReader


def _model_and_optimizer(kind, seed=0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=32)  # fmt: skip
    model = BertForSequenceClassification(config)
    if kind == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    elif kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    elif kind == "groups":
        params = list(model.parameters())
        opt = torch.optim.AdamW([{"params": params[:10], "lr": 1e-3}, {"params": params[10:], "lr": 1e-4}])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    return model, opt


_U = 2.0**-24  # float32's unit roundoff
# Cross sums are bounded by Cauchy-Schwarz (Σ|x·y| ≤ √(Σx²·Σy²)): the scale their rounding error is relative to.
_SCALE_OF = {"gm": ("gg", "mm"), "g_upd": ("gg", "upd_sq")}


def _assert_same_sums(new: dict, reference: dict, tag, optimizer, budget) -> None:
    """The float32 reader's sums equal the reference reader's float64 ones up to float32 rounding, in any order.

    A float32 sum of n products, in whatever order the BLAS kernel, SIMD width and thread split of this CPU choose,
    is within γ_n·Σ|terms| of the exact sum, γ_n = n·u / (1 - n·u) (Higham, *Accuracy and Stability of Numerical
    Algorithms*, 2nd ed., §3.1; each product adds one more u, as do Adam's elementwise m / (√v + ε) and the final
    coefficient: three more u in all). Order-independent, so no CPU model, BLAS kernel or thread count can fail it;
    typical errors are far smaller (√n·u), and for terms of one sign and size (Adam's first step) they reach about
    3√n·u, which is why a random-walk bound does not hold. It still fails on a missed block or parameter of more
    than about n·u of the sum, a wrong coefficient or a stale buffer. n counts the elements the reader reads: every
    one when the model fits the budget, else the budget plus one partial block per parameter."""
    assert new.keys() == reference.keys()
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    n = sum(p.numel() for p in params)
    if budget is not None and n > budget:
        n = budget + 256 * len(params)
    gamma = (n + 3) * _U / (1 - (n + 3) * _U)
    ref = {k: float(v) for k, v in reference.items()}
    for k in reference:
        a, b = _SCALE_OF.get(k, (k, k))
        tol = gamma * (abs(ref[a]) * abs(ref[b])) ** 0.5
        assert abs(float(new[k]) - ref[k]) <= tol, (k, tag, float(new[k]), ref[k], tol)


@pytest.mark.parametrize("budget", [None, 1 << 15, 20_000, 1_000])
@pytest.mark.parametrize("kind", ["adamw", "sgd", "plain", "groups"])
def test_batched_reader_reads_the_same_sums_as_the_per_parameter_one(kind, budget):
    model, opt = _model_and_optimizer(kind)
    new, old = SignalReader(opt, budget), ReferenceSignalReader(opt, budget)
    for step in range(4):
        ids = torch.randint(0, 300, (4, 12))
        model(input_ids=ids, labels=torch.zeros(4, dtype=torch.long)).loss.backward()
        opt.step()
        _assert_same_sums(new.read(step), old.read(step), step, opt, budget)
        opt.zero_grad()
    if budget == 20_000:
        assert 1 < new.stride <= _MAX_KEPT_STRIDE  # the sampled path, with block views kept per phase
    if budget == 1_000:
        assert new.stride > _MAX_KEPT_STRIDE  # the sampled path, with whole-tensor block views sliced per step


def test_reader_replans_when_the_optimizer_state_is_replaced():
    """optimizer.load_state_dict puts new moment tensors in place: the reader must read those, not the old ones."""
    model, opt = _model_and_optimizer("adamw")
    model(input_ids=torch.randint(0, 300, (4, 12)), labels=torch.zeros(4, dtype=torch.long)).loss.backward()
    opt.step()
    reader = SignalReader(opt, None)
    before = reader.read()
    state = opt.state_dict()
    for s in state["state"].values():
        s["exp_avg"] = s["exp_avg"] * 2
    opt.load_state_dict(state)
    after = reader.read()
    assert float(after["mm"]) == pytest.approx(4 * float(before["mm"]), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # float64: torch's copies, not NumPy's
@pytest.mark.parametrize("budget", [None, 20_000, 1_000])
def test_gradients_laid_out_unlike_their_parameters_are_read_by_their_values(budget, dtype):
    """A gradient assigned by hand may be a non-contiguous view (here the transpose of a column-major copy): the
    reader reads its values in the parameter's element order, as the reference reader does, not its memory."""
    model, _ = _model_and_optimizer("adamw")
    model.to(dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.randint(0, 300, (4, 12)), labels=torch.zeros(4, dtype=torch.long)).loss.backward()
    opt.step()
    new, old = SignalReader(opt, budget), ReferenceSignalReader(opt, budget)
    swapped = 0
    for p in model.parameters():
        if p.dim() == 2 and p.shape[0] != p.shape[1] and p.numel() > 1024:
            p.grad = p.grad.t().contiguous().t()  # the same values, laid out column-major
            assert not p.grad.is_contiguous()
            swapped += 1
    assert swapped >= 2
    for step in range(2):
        _assert_same_sums(new.read(step), old.read(step), step, opt, budget)


@pytest.mark.parametrize("budget", [None, 1000])
def test_reader_keeps_its_work_buffers_after_the_first_step(budget):
    model, opt = _model_and_optimizer("adamw")
    reader, seen = SignalReader(opt, budget), []
    for step in range(3):
        model(input_ids=torch.randint(0, 300, (4, 12)), labels=torch.zeros(4, dtype=torch.long)).loss.backward()
        opt.step()
        out = reader.read_into(step)
        seen.append([out.data_ptr()] + [b.data_ptr() for bucket in reader._buckets for b in bucket.buffers.values()])
        opt.zero_grad(set_to_none=True)  # new gradient tensors every step, as in a Trainer
    assert seen[1] == seen[2]  # the buffers of the first read after the optimizer has state are kept
    work = sum(b.numel() for bucket in reader._buckets for b in bucket.buffers.values())
    if budget:
        assert work < 20 * (budget + 256 * len(list(model.parameters())))  # set by the budget, not the model


@pytest.mark.parametrize("budget", [20_000, 1_000])
def test_kept_views_follow_weights_moved_to_new_storage(budget):
    """The reader keeps block views of weights between steps (per phase for small strides, per tensor for large
    ones); weights given new storage (as `model.to(...)` or `p.data = ...` do) must be read from the new storage."""
    model, opt = _model_and_optimizer("adamw")
    reader, reference = SignalReader(opt, budget), ReferenceSignalReader(opt, budget)
    for step in range(3):
        model(input_ids=torch.randint(0, 300, (4, 12)), labels=torch.zeros(4, dtype=torch.long)).loss.backward()
        opt.step()
        if step == 2:
            with torch.no_grad():
                for p in model.parameters():
                    p.data = p.data * 2  # new storage, twice the weights
        _assert_same_sums(reader.read(step), reference.read(step), step, opt, budget)
        opt.zero_grad()


def test_groups_differing_only_in_weight_decay_share_a_bucket_until_their_lrs_part():
    """The Trainer's two param groups (with and without weight decay) are read as one bucket; once their learning
    rates differ (a user's own rule), the reader plans one bucket per group and still reads the reference sums."""
    model, _ = _model_and_optimizer("adamw")
    params = list(model.parameters())
    groups = [{"params": params[:10], "weight_decay": 0.1}, {"params": params[10:], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3)
    new, old = SignalReader(opt, None), ReferenceSignalReader(opt, None)
    for step in range(3):
        model(input_ids=torch.randint(0, 300, (4, 12)), labels=torch.zeros(4, dtype=torch.long)).loss.backward()
        opt.step()
        if step == 2:
            opt.param_groups[1]["lr"] = 3e-4
        _assert_same_sums(new.read(step), old.read(step), step, opt, None)
        assert len(new._buckets) == (1 if step < 2 else 2)
        opt.zero_grad()


@pytest.mark.parametrize("budget", [None, 20_000])
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_a_scheduler_step_allocates_nothing_after_warm_up(kind, budget):
    """The torch profiler sees no tensor allocation in ``observe`` + ``step`` once the buffers exist: whole reads and
    sampled ones, Adam and SGD, the learner's step included."""
    from torch.profiler import ProfilerActivity, profile

    from metalr_hf import MetaLRScheduler

    model, opt = _model_and_optimizer(kind)
    loss = model(input_ids=torch.randint(0, 300, (4, 12)), labels=torch.zeros(4, dtype=torch.long)).loss
    loss.backward()
    opt.step()
    scheduler = MetaLRScheduler(opt, num_training_steps=100, meta_learner="metalr-default-v3")
    scheduler._reader.max_elements = budget  # read whole, or sampled in blocks
    loss = loss.detach()
    for _ in range(4):
        scheduler.observe(loss)
        scheduler.step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(5):
            scheduler.observe(loss)
            scheduler.step()
    allocations = [e.name for e in prof.events() if e.name in ("aten::empty", "aten::empty_strided", "[memory]")]
    assert allocations == []
    assert scheduler._reader.stride == (1 if budget is None else 5)  # both paths were exercised


def test_the_gram_product_on_one_thread_leaves_the_thread_count_and_the_sums_alone():
    """On the CPU the reader runs its matrix product on one thread: the caller's thread count is back afterwards,
    and the sums equal the reference reader's whichever the caller's count (1 or 2 threads)."""
    model, opt = _model_and_optimizer("adamw")
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            reader, reference = SignalReader(opt, 1 << 15), ReferenceSignalReader(opt, 1 << 15)
            ids = torch.randint(0, 300, (4, 12))
            model(input_ids=ids, labels=torch.zeros(4, dtype=torch.long)).loss.backward()
            opt.step()
            _assert_same_sums(reader.read(0), reference.read(0), threads, opt, 1 << 15)
            assert torch.get_num_threads() == threads
            opt.zero_grad()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("max_elements", [None, 4096])
def test_adafactor_reads_as_adaptive_with_its_update_as_the_rms_normalised_gradient(max_elements):
    """Adafactor keeps factored second moments (no per-element state beside the weights): the run is adaptive, and
    its update is read as the gradient normalised to an RMS of 1 per element (g·u = -lr·√(n·Σg²), u² = lr²·n), not
    as SGD's lr·g, which reads an adaptive step thousands of times too small."""
    from transformers.optimization import Adafactor

    from metalr_hf.reader import SignalReader

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Linear(128, 8))
    lr = 1e-3
    opt = Adafactor(model.parameters(), lr=lr, relative_step=False, scale_parameter=False, warmup_init=False)
    reader = SignalReader(opt, max_elements=max_elements)
    for _ in range(2):
        model(torch.randn(16, 64)).pow(2).mean().backward()
        opt.step()
        sums = {k: float(v) for k, v in reader.read().items()}
        opt.zero_grad()
    n = sum(p.numel() for p in model.parameters())
    gg = sums["gg"]
    assert sums["adaptive"] == 1.0
    rel = 0.1 if max_elements else 1e-5  # sampled: every sum is an estimate over the blocks read, scaled up
    assert sums["upd_sq"] == pytest.approx(lr * lr * n, rel=rel)
    assert sums["g_upd"] == pytest.approx(-lr * math.sqrt(n * gg), rel=rel)
