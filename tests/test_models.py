"""fedarena.fl_core.models: shapes, reference sizes, seeding, and the autograd features attacks rely on."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.utils._python_dispatch import TorchDispatchMode

from fedarena.fl_core.models import MODELS, build_model, dropout_layers, mode_dependent
from fedarena.fl_core.models.dropout import dropout_masks
from fedarena.fl_core.registry import UnknownNameError
from fedarena.fl_core.vectors import ParameterLayout, model_to_vector

# CPU-sized configurations of every model (same code paths as the reference sizes).
SMALL: dict[str, dict] = {
    "lenet": {},
    "lenet5": {},
    "convnet": {"width": 4},
    "resnet18": {"width": 4},
    "mlp": {"hidden": (16, 16)},
    "vit_tiny": {"dim": 16, "depth": 2, "heads": 2},
    # the DIA reference models default to dropout 0.25; rate 0 unless a test sets one
    "vit_dia": {"dim": 16, "depth": 2, "heads": 4, "dropout": 0.0},
    "mlp_dia": {"hidden": (16, 16, 16), "dropout": 0.0},
}
VARIANTS = [*SMALL, "resnet18-group"]
SHAPE = (1, 12, 12)  # fits every model's minimum size and the ViT's patch 4


def small(name: str, input_shape=SHAPE, num_classes: int = 5, **kw) -> nn.Module:
    if name == "resnet18-group":
        name, kw = "resnet18", {"norm": "group", "norm_groups": 2, **kw}
    return build_model(name, num_classes, input_shape, **{**SMALL[name], **kw})


def test_registry_lists_every_model_with_a_description():
    assert set(MODELS.names()) == set(SMALL)
    assert all(MODELS.descriptions().values())


MIN_SIZE = {"lenet5": 10, "convnet": 9}


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_output_shape_or_clear_minimum_size_error(name, shape):
    if name in MIN_SIZE and shape[1] < MIN_SIZE[name]:
        with pytest.raises(ValueError, match=rf"{name}.*{MIN_SIZE[name]}x{MIN_SIZE[name]}"):
            small(name, shape)
        return
    model = small(name, shape, num_classes=7)
    assert model.input_shape == shape and model.num_classes == 7
    assert model(torch.randn(3, *shape)).shape == (3, 7)


def test_vit_patch_must_divide_input():
    with pytest.raises(ValueError, match=r"vit_tiny.*patch_size 4.*30x30"):
        small("vit_tiny", (3, 30, 30))
    with pytest.raises(ValueError, match=r"vit_dia.*patch_size 4.*30x30"):
        small("vit_dia", (3, 30, 30))
    model = small("vit_tiny", (3, 30, 30), patch_size=5)
    assert model(torch.randn(2, 3, 30, 30)).shape == (2, 5)


def _conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def _linear(fin, fout):
    return fin * fout + fout


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lenet_reference_size():
    model = build_model("lenet", 10, (3, 32, 32))
    assert model.fc[0].in_features == 768  # DLG's hard-coded Linear(768, ...)
    assert _count(model) == _conv(3, 12, 5) + 2 * _conv(12, 12, 5) + _linear(768, 10)
    assert build_model("lenet", 10, (1, 28, 28)).fc[0].in_features == 12 * 7 * 7


def test_convnet_reference_parameter_count():
    w = 64
    model = build_model("convnet", 10, (3, 32, 32), width=w)
    chans = [3, w, 2 * w, 2 * w, 4 * w, 4 * w, 4 * w, 4 * w, 4 * w]  # conv0..conv7
    expected = sum(_conv(a, b, 3) + 2 * b for a, b in zip(chans, chans[1:], strict=False))
    expected += _linear(36 * w, 10)  # 32 -> pool 10 -> pool 3: 4w * 3 * 3
    assert model.linear.in_features == 36 * w
    assert _count(model) == expected
    # Module names follow inversefed's ConvNet; pool0 comes after conv5 there.
    names = [n for n, _ in model.named_children()]
    assert names.index("pool0") == names.index("relu5") + 1
    assert names[-3:] == ["flatten", "dropout", "linear"]


def test_lenet5_matches_mudhog_reference():
    model = build_model("lenet5", 10, (1, 32, 32))  # MUD-HoG resizes MNIST to 32x32
    assert model.fc1.in_features == 16 * 6 * 6
    expected = _conv(1, 6, 3) + _conv(6, 16, 3) + _linear(576, 120)
    expected += _linear(120, 84) + _linear(84, 10)
    assert _count(model) == expected
    assert build_model("lenet5", 10, (1, 28, 28)).fc1.in_features == 16 * 5 * 5


def test_resnet18_and_mlp_published_sizes():
    # 11,173,962: the CIFAR-10 ResNet-18 of kuangliu/pytorch-cifar; 199,210: FedAvg's 2NN.
    assert _count(build_model("resnet18", 10, (3, 32, 32))) == 11_173_962
    assert _count(build_model("mlp", 10, (1, 28, 28))) == 199_210
    gn = build_model("resnet18", 10, (3, 32, 32), norm="group")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    assert _count(gn) == 11_173_962  # GroupNorm has the same affine parameters


def test_vit_tiny_default_parameter_count():
    model = build_model("vit_tiny", 10, (3, 32, 32))
    d, n = 192, (32 // 4) ** 2
    block = 2 * 2 * d + _linear(d, 3 * d) + _linear(d, d) + _linear(d, 4 * d) + _linear(4 * d, d)
    expected = _conv(3, d, 4) + d + (n + 1) * d + 12 * block + 2 * d + _linear(d, 10)
    assert _count(model) == expected


@pytest.mark.parametrize("name", list(SMALL))
def test_seeded_init_is_deterministic_and_leaves_global_rng_alone(name):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = small(name, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # a different global state must not matter
    b = small(name, seed=7)
    c = small(name, seed=8)
    va, vb, vc = model_to_vector(a), model_to_vector(b), model_to_vector(c)
    assert torch.equal(va, vb)
    assert not torch.equal(va, vc)


def test_dlg_init_is_uniform_half():
    model = build_model("lenet", 10, (3, 32, 32), seed=0)
    for name, p in model.named_parameters():
        assert p.abs().max() <= 0.5, name
        if p.numel() >= 100:  # large tensors must actually span the range
            assert p.abs().max() > 0.45, name
    default = build_model("lenet", 10, (3, 32, 32), seed=0, init="default")
    bound = 1 / math.sqrt(12 * 5 * 5)  # PyTorch's kaiming-uniform(a=sqrt 5) bound for body.2
    assert default.body[2].weight.abs().max() <= bound
    with pytest.raises(ValueError, match="init"):
        build_model("lenet", 10, (3, 32, 32), init="xavier")


@pytest.mark.parametrize("name", VARIANTS)
def test_functional_call_matches_module_call(name):
    model = small(name, seed=1).eval()
    x = torch.randn(4, *SHAPE)
    layout = ParameterLayout.of(model)
    vector = model_to_vector(model)
    state = {**layout.unflatten(vector), **dict(model.named_buffers())}
    torch.testing.assert_close(functional_call(model, state, (x,)), model(x))
    shifted = {**layout.unflatten(vector + 0.1), **dict(model.named_buffers())}
    assert not torch.allclose(functional_call(model, shifted, (x,)), model(x))


class _MutationLog(TorchDispatchMode):
    """Records every aten op that writes into one of its arguments (in-place ops)."""

    def __init__(self) -> None:
        super().__init__()
        self.mutating: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.is_mutable:
            self.mutating.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_has_no_in_place_ops(name):
    # rate 0: dropout's CPU kernel fills a fresh mask with bernoulli_ — not a model op
    model = small(name, seed=6, dropout=0.0)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # train-mode BatchNorm updates its running statistics in place by design
    model.train(not has_bn)
    x = torch.randn(2, *SHAPE, requires_grad=True)
    with _MutationLog() as log:
        F.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    assert log.mutating == []
    assert not any(getattr(m, "inplace", False) for m in model.modules())


@pytest.mark.parametrize("name", VARIANTS)
def test_double_backward_through_parameter_gradient(name):
    """The gradient-matching pattern of DLG / Inverting Gradients, in train mode with dropout."""
    torch.manual_seed(0)
    model = small(name, seed=2, dropout=0.25).train()
    params = [p for p in model.parameters() if p.requires_grad]
    x = torch.randn(3, *SHAPE, requires_grad=True)
    y = torch.tensor([0, 1, 2])
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    targets = [torch.randn_like(g) for g in grads]
    match = sum(((g - t) ** 2).sum() for g, t in zip(grads, targets, strict=True))
    match.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("name", VARIANTS)
def test_second_derivative_is_numerically_correct(name):
    """gradcheck of x -> <v, dL/dtheta(x)>: the input-gradient of a parameter gradient."""
    model = small(name, (1, 12, 12), seed=3).double().train()
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 12, 12, dtype=torch.double, generator=gen, requires_grad=True)
    y = torch.tensor([0, 1])
    vs = [torch.randn(p.shape, dtype=torch.double, generator=gen) for p in params]

    def projected_grad(inp):
        gs = torch.autograd.grad(F.cross_entropy(model(inp), y), params, create_graph=True)
        return sum((g * v).sum() for g, v in zip(gs, vs, strict=True))

    # fast_mode checks a random input direction against a random output projection
    assert torch.autograd.gradcheck(projected_grad, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", VARIANTS)
def test_vmap_per_sample_gradients(name):
    # BatchNorm models in eval mode (running-stat updates cannot be batched); the rest train.
    model = small(name, seed=4)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    model.train(not has_bn)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    x, y = torch.randn(3, *SHAPE), torch.tensor([0, 3, 1])

    def loss(p, xi, yi):
        out = functional_call(model, {**p, **buffers}, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    batched = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    for i in range(3):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for k, p in model.named_parameters():
            torch.testing.assert_close(batched[k][i], p.grad, rtol=1e-4, atol=1e-6)


# Linear layers whose input must be a dropout output (Scheliga et al. 2023 placement).
FED_BY_DROPOUT = {
    "lenet": {"fc.0"},
    "lenet5": {"fc1", "fc2", "fc3"},
    "convnet": {"linear"},
    "resnet18": {"fc"},
    "mlp": {"fc2", "fc3"},
    "vit_tiny": {"blocks.0.mlp.fc2", "blocks.1.mlp.fc2"},
    "vit_dia": {"blocks.0.mlp.fc2", "blocks.1.mlp.fc2"},
    "mlp_dia": {"fc2", "fc3", "fc4"},
}


@pytest.mark.parametrize("name", list(SMALL))
def test_dropout_placement_and_train_eval_behaviour(name):
    model = small(name, seed=5, dropout=0.5)
    layers = dropout_layers(model)
    assert layers and all(m.p == 0.5 for _, m in layers)
    if name in ("vit_tiny", "vit_dia"):
        assert len(layers) == 1 + 4 * 2  # pos_drop + 4 per block

    outputs: dict[int, torch.Tensor] = {}  # keeps the tensors alive so ids are not reused
    fed: set[str] = set()
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.setdefault(id(o), o)) for _, m in layers]
    for lname, lin in model.named_modules():
        if isinstance(lin, nn.Linear):
            hooks.append(
                lin.register_forward_pre_hook(
                    lambda m, i, lname=lname: fed.add(lname) if outputs.get(id(i[0])) is i[0] else None
                )
            )
    x = torch.randn(4, *SHAPE)
    model.eval()  # before any train step: BatchNorm statistics are still the initial ones
    reference = small(name, seed=5, dropout=0.0).eval()  # dropout adds no parameters
    torch.testing.assert_close(model(x), model(x))
    torch.testing.assert_close(model(x), reference(x))

    fed.clear()
    outputs.clear()
    model.train()
    first = model(x)
    for h in hooks:
        h.remove()
    assert fed == FED_BY_DROPOUT[name]
    assert not torch.allclose(first, model(x))  # a fresh mask each call


def test_unknown_model_lists_known_names():
    with pytest.raises(UnknownNameError) as err:
        build_model("alexnet", 10, (3, 32, 32))
    assert all(name in str(err.value) for name in MODELS.names())


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match=r"'lenet'.*\['width'\].*init"):
        build_model("lenet", 10, (3, 32, 32), width=8)
    with pytest.raises(ValueError, match="dropout"):
        build_model("mlp", 10, (1, 28, 28), dropout=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("mlp", 0, (1, 28, 28))
    with pytest.raises(ValueError, match="input_shape"):
        build_model("mlp", 10, (28, 28))
    with pytest.raises(ValueError, match="norm"):
        build_model("resnet18", 10, (3, 32, 32), norm="layer")
    with pytest.raises(ValueError, match="seed"):
        build_model("mlp", 10, (1, 28, 28), seed=1.5)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("name", VARIANTS)
def test_mode_dependent_says_whether_train_and_eval_forwards_differ(name, dropout):
    torch.manual_seed(0)
    model = small(name, seed=3, dropout=dropout)
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        evaluated = model.eval()(x)  # first: a train forward would update BatchNorm's running statistics
        trained = model.train()(x)
    assert mode_dependent(model) == (not torch.allclose(evaluated, trained))


# -- the Dropout Inversion Attack's reference models (dAI-SY-Group/DropoutInversionAttack) --

def test_vit_dia_reference_architecture_and_parameter_count():
    model = build_model("vit_dia", 10, (3, 32, 32))
    d, n, mlp = 256, (32 // 4) ** 2 + 1, 256  # ViT.yaml: hidden 256, patch 4, MLP 256
    block = 2 * 2 * d + d * 3 * d + _linear(d, d) + _linear(d, mlp) + _linear(mlp, d)  # q, k, v without bias
    expected = _conv(3, d, 4) + n * d + d + 4 * block + 2 * d + _linear(d, 10)
    assert _count(model) == expected == 1_612_554
    attn = model.blocks[0].attn
    assert (attn.heads, attn.dim_head, attn.scale) == (16, 16, 16 ** -0.5) and attn.qkv.bias is None
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, nn.LayerNorm))
    assert model.pool == "cls" and len(model.blocks) == 4
    assert [m.p for _, m in dropout_layers(model)] == [0.25] * (1 + 4 * 4)
    assert build_model("vit_dia", 10, (3, 32, 32), dropout=0.5).pos_drop.p == 0.5
    # lucidrains' N(0, 1) position embedding, not DeiT's truncated normal of std 0.02
    assert model.pos_embed.std().item() == pytest.approx(1.0, abs=0.05)
    assert build_model("vit_tiny", 10, (3, 32, 32)).pos_embed.std().item() < 0.03
    # lucidrains' dim_head is free: inner width heads * dim_head need not equal dim
    wide = build_model("vit_dia", 10, (3, 16, 16), depth=1, heads=2, dim_head=64, dim=32)
    assert wide.blocks[0].attn.qkv.out_features == 3 * 128 and wide.blocks[0].attn.proj.in_features == 128
    assert wide(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def _reference_vit_forward(model: nn.Module, img: torch.Tensor, pool: str = "cls") -> torch.Tensor:
    """lucidrains/vit-pytorch's forward as vendored by the DIA code (src/models/vit.py), written
    independently from fl_core's ViT: rearrange to (p1 p2 c) patches and a Linear, chunked q/k/v,
    PreNorm blocks with nn.LayerNorm's default eps 1e-5, pooling, then LayerNorm + Linear."""
    b, c, hh, ww = img.shape
    p = model.patch_size
    patches = img.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
    w_conv = model.patch_embed.weight  # [dim, c, p1, p2] -> Linear weight over (p1 p2 c)
    x = patches @ w_conv.permute(0, 2, 3, 1).reshape(w_conv.shape[0], -1).T + model.patch_embed.bias
    x = torch.cat([model.cls_token.expand(b, -1, -1), x], dim=1) + model.pos_embed
    for blk in model.blocks:
        a = blk.attn
        h = F.layer_norm(x, x.shape[-1:], blk.norm1.weight, blk.norm1.bias, 1e-5)
        qkv = F.linear(h, a.qkv.weight).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, -1, a.heads, a.dim_head).transpose(1, 2) for t in qkv)
        attn = torch.softmax(q @ k.transpose(-1, -2) * a.dim_head ** -0.5, dim=-1)
        x = F.linear((attn @ v).transpose(1, 2).reshape(b, -1, a.heads * a.dim_head), a.proj.weight, a.proj.bias) + x
        h = F.layer_norm(x, x.shape[-1:], blk.norm2.weight, blk.norm2.bias, 1e-5)
        h = F.gelu(F.linear(h, blk.mlp.fc1.weight, blk.mlp.fc1.bias))
        x = F.linear(h, blk.mlp.fc2.weight, blk.mlp.fc2.bias) + x
    x = x.mean(dim=1) if pool == "mean" else x[:, 0]
    x = F.layer_norm(x, x.shape[-1:], model.norm.weight, model.norm.bias, 1e-5)
    return F.linear(x, model.head.weight, model.head.bias)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_dia_forward_is_the_reference_computation(pool):
    model = build_model("vit_dia", 10, (3, 32, 32), seed=0, pool=pool).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_vit_forward(model, x, pool), rtol=1e-4, atol=1e-5)
    other = build_model("vit_dia", 10, (3, 32, 32), seed=0, pool="mean" if pool == "cls" else "cls").eval()
    assert not torch.allclose(other(x), model(x))  # the pooling option is not a no-op


def test_mlp_dia_reference_architecture_and_forward():
    model = build_model("mlp_dia", 10, (1, 28, 28), seed=0)
    assert _count(model) == 784 * 512 + 2 * 512 * 512 + 512 * 10 == 930_816  # MLP.yaml: bias False
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 and all(m.bias is None for m in linears)
    kinds = [type(m).__name__ for _, m in model.named_children()]
    assert kinds == ["Flatten"] + ["Linear", "GELU", "DropoutSite"] * 3 + ["Linear"]
    assert all(m.approximate == "none" for m in model.modules() if isinstance(m, nn.GELU))
    assert [m.p for _, m in dropout_layers(model)] == [0.25] * 3
    x = torch.randn(3, 1, 28, 28)
    h = x.flatten(1)
    for lin in linears[:-1]:
        h = F.gelu(h @ lin.weight.T)
    torch.testing.assert_close(model.eval()(x), h @ linears[-1].weight.T)
    relu = build_model("mlp", 10, (1, 28, 28), hidden=(8,), activation="relu")
    assert isinstance(relu.relu1, nn.ReLU) and relu.fc1.bias is not None
    with pytest.raises(ValueError, match=r"mlp_dia: activation.*'gelu', 'relu'.*'tanh'"):
        build_model("mlp_dia", 10, (1, 28, 28), activation="tanh")


def _dia_site_shapes(name: str, batch: int) -> dict[str, tuple[int, ...]]:
    if name == "mlp_dia":
        return {f"dropout{i}": (batch, 512) for i in (1, 2, 3)}
    if name == "convnet":
        return {"dropout": (batch, 36 * 4)}
    n, d = 65, 256
    shapes = {"pos_drop": (batch, n, d)}
    for i in range(4):
        shapes |= {f"blocks.{i}.attn.attn_drop": (batch, 16, n, n), f"blocks.{i}.attn.proj_drop": (batch, n, d),
                   f"blocks.{i}.mlp.drop1": (batch, n, 256), f"blocks.{i}.mlp.drop2": (batch, n, d)}
    return shapes


@pytest.mark.parametrize("name", ["vit_dia", "mlp_dia", "convnet"])
def test_dia_models_record_one_mask_per_site_and_forward_and_replay_them(name):
    """The DIA models at their reference sizes: every dropout site records one mask per forward,
    of the shape of the activation it drops; replaying the recorded masks reproduces the forward."""
    shape = (1, 28, 28) if name == "mlp_dia" else (3, 32, 32)
    model = build_model(name, 10, shape, seed=0, dropout=0.5, **({"width": 4} if name == "convnet" else {}))
    model.train()
    x = torch.randn(2, *shape)
    with dropout_masks(model, generator=torch.Generator().manual_seed(1), record=True) as record:
        first = model(x)
        second = model(x)
    expected = _dia_site_shapes(name, 2)
    assert list(record) == list(expected) == [n for n, _ in dropout_layers(model)]
    for site, masks in record.items():
        assert len(masks) == 2 and all(tuple(m.shape) == expected[site] for m in masks)
        assert set(masks[0].unique().tolist()) <= {0.0, 1.0}
    every = torch.cat([ms[0].flatten() for ms in record.values()])
    assert every.mean().item() == pytest.approx(0.5, abs=4 * math.sqrt(0.25 / every.numel()))  # keep rate 1 - p
    assert not torch.equal(first, second)
    with dropout_masks(model, generator=torch.Generator().manual_seed(2), given=record):
        torch.testing.assert_close(model(x), first, rtol=0, atol=0)
        torch.testing.assert_close(model(x), second, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["vit_dia", "mlp_dia"])
def test_dia_models_train_and_eval_agree_exactly_without_dropout(name):
    model = small(name, seed=0)  # SMALL: rate 0
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        assert torch.equal(model.train()(x), model.eval()(x))
        dropped = small(name, seed=0, dropout=0.25)
        assert torch.equal(dropped.eval()(x), model(x))
        assert not torch.allclose(dropped.train()(x), model(x))


@pytest.mark.parametrize("name", ["vit_dia", "mlp_dia"])
def test_dia_gradient_matching_backpropagates_to_images_and_masks(name):
    """DIA's objective through ``functional_call``: 1 − cos(∇θ L(x, m), target) with continuous
    masks m as optimisation variables reaches both the images and every mask."""
    model = small(name, seed=1, dropout=0.5).train()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x_true, y = torch.randn(2, *SHAPE), torch.tensor([0, 3])
    gen = torch.Generator().manual_seed(0)
    with dropout_masks(model, generator=gen, record=True) as true_masks:
        target = torch.autograd.grad(F.cross_entropy(model(x_true), y), list(model.parameters()))
    x = torch.randn(2, *SHAPE, requires_grad=True)
    masks = {site: [torch.rand(ms[0].shape, generator=gen).requires_grad_()] for site, ms in true_masks.items()}
    leaves = {k: v.requires_grad_() for k, v in params.items()}
    with dropout_masks(model, given=masks):
        out = functional_call(model, leaves, (x,))
    grads = torch.autograd.grad(F.cross_entropy(out, y), list(leaves.values()), create_graph=True)
    flat, ref = torch.cat([g.flatten() for g in grads]), torch.cat([t.flatten() for t in target])
    (1 - F.cosine_similarity(flat, ref, dim=0)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for site, (m,) in masks.items():
        assert m.grad is not None and torch.isfinite(m.grad).all() and m.grad.abs().sum() > 0, site
    # the true images with the true masks match the target exactly
    with dropout_masks(model, given=true_masks):
        again = torch.autograd.grad(F.cross_entropy(model(x_true), y), list(model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(again, target, strict=True))
