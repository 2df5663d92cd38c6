"""Task models: every task x fusion builds and trains, losses match hand-computed references, the
unimodal models ignore the other modality, TokenFusion exchanges tokens, interpretability hooks work."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mango_lite.errors import MangoLiteError
from mango_lite.models import (
    BOS_ID,
    FUSIONS,
    PAD_ID,
    ConcatFusion,
    ConvEncoder,
    FlowStandardize,
    HashTokenizer,
    ModelConfig,
    SentenceEncoder,
    TextEncoder,
    TimmEncoder,
    TokenFusion,
    attention_maps,
    build_model,
    count_parameters,
    cross_modal_share,
    layers_for_partitions,
    modality_contribution,
    token_scores,
)
from mango_lite.models.fusion import _TokenExchangeLayer

torch.set_num_threads(1)

SIZE, WIDTH, B = 32, 8, 2
NUM_OUT = {"segmentation": 5, "translation": 3, "genre": 23}
IN_CH = {"segmentation": (3, 1), "translation": (3, 2), "genre": (3, 0)}


def _model(task: str, fusion: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(ModelConfig(task=task, fusion=fusion,
                                   in_channels=IN_CH[task], num_outputs=NUM_OUT[task], image_size=SIZE, width=WIDTH,
        blocks=1, scales=2, **kw,
    ))


def _batch(task: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(B, 3, SIZE, SIZE, generator=g)
    if task == "genre":
        texts = ["A detective hunts a killer in the rainy city", "Two robots fall in love on a space station"]
        b = texts if seed == 0 else texts[::-1]
        y = (torch.rand(B, NUM_OUT[task], generator=g) < 0.3).float()
    else:
        b = torch.randn(B, IN_CH[task][1], SIZE, SIZE, generator=g)
        if task == "segmentation":
            y = torch.randint(0, NUM_OUT[task], (B, SIZE, SIZE), generator=g)
        else:
            y = torch.rand(B, NUM_OUT[task], SIZE, SIZE, generator=g) * 2 - 1
    return a, b, y


# ------------------------------------------------------------------------------ build / shapes / grads


@pytest.mark.parametrize("task", ["segmentation", "translation", "genre"])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_task_and_fusion_trains(task: str, fusion: str) -> None:
    model = _model(task, fusion)
    a, b, y = _batch(task)
    out = model(a, b)
    want = (B, NUM_OUT[task]) if task == "genre" else (B, NUM_OUT[task], SIZE, SIZE)
    assert tuple(out.pred.shape) == want
    if task == "translation":
        assert out.pred.abs().max() <= 1.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    # step once so zero-initialised output layers (residual blocks, flow coupling) become non-zero;
    # after that every parameter must receive a non-zero gradient
    for step in range(2):
        opt.zero_grad()
        loss, parts = model.loss(model(a, b), y)
        assert torch.isfinite(loss) and math.isfinite(parts["total"])
        loss.backward()
        if step == 0:
            opt.step()
    dead = [n for n, p in model.named_parameters()
            if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert dead == [], f"parameters without a gradient: {dead[:8]}"
    assert ("flow_bpd" in parts) == (fusion == "mango")
    assert ("score_l1" in parts) == (fusion == "tokenfusion")
    counts = count_parameters(model)
    assert counts["total"] == counts["encoders"] + counts["fusion"] + counts["head"]


def test_heads_are_shared_across_fusions() -> None:
    """Same encoder widths and head for every two-modality fusion: a comparison isolates the fusion."""
    counts = {f: count_parameters(_model("segmentation", f)) for f in ("mango", "concat", "tokenfusion", "crossattn")}
    assert len({c["head"] for c in counts.values()}) == 1
    assert len({c["encoders"] for c in counts.values()}) == 1


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="divisible by 2\\*\\*scales"):
        build_model(ModelConfig(task="segmentation", fusion="concat", num_outputs=3, image_size=24, width=8, scales=2))
    with pytest.raises(ValueError, match="fusion must be one of"):
        build_model(ModelConfig(task="segmentation", fusion="gmu", num_outputs=3, image_size=32))
    model = _model("segmentation", "concat")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(B, 4, SIZE, SIZE), torch.randn(B, 1, SIZE, SIZE))


# ------------------------------------------------------------------------------------------- losses


def test_segmentation_loss_ignores_255_like_a_manual_reference() -> None:
    model = _model("segmentation", "concat")
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(B, 5, 4, 4, generator=g)
    target = torch.randint(0, 5, (B, 4, 4), generator=g)
    target[0, :2] = 255
    loss = model.task_loss(pred, target)
    logp = pred.log_softmax(1).permute(0, 2, 3, 1).reshape(-1, 5).numpy()
    t = target.reshape(-1).numpy()
    valid = t != 255
    ref = -logp[valid, t[valid]].mean()
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    assert model.task_loss(pred, torch.full_like(target, 255)).item() == 0.0
    with pytest.raises(ValueError, match="labels must be in"):
        model.task_loss(pred, torch.full_like(target, 7))


def test_genre_and_translation_losses_match_formulas() -> None:
    g = torch.Generator().manual_seed(2)
    genre = _model("genre", "a")
    logits = torch.randn(B, 23, generator=g)
    y = (torch.rand(B, 23, generator=g) < 0.4).float()
    x, t = logits.double().numpy(), y.double().numpy()
    ref = np.mean(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))  # stable BCE-with-logits
    assert genre.task_loss(logits, y).item() == pytest.approx(ref, rel=1e-5)
    trans = _model("translation", "a")
    p = torch.rand(B, 3, 4, 4, generator=g) * 2 - 1
    q = torch.rand(B, 3, 4, 4, generator=g) * 2 - 1
    assert trans.task_loss(p, q).item() == pytest.approx(float(np.abs((p - q).numpy()).mean()), rel=1e-6)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        trans.task_loss(p, q * 200)


def test_total_loss_adds_weighted_aux_terms() -> None:
    a, b, y = _batch("segmentation")
    for fusion, key, weight in (("mango", "flow_bpd", 0.3), ("tokenfusion", "score_l1", 1e-2)):
        kw = {"flow_weight": weight} if fusion == "mango" else {"sparsity_weight": weight}
        model = _model("segmentation", fusion, **kw)
        out = model(a, b)
        total, parts = model.loss(out, y)
        manual = F.cross_entropy(out.pred, y) + weight * out.aux[key]
        assert total.item() == pytest.approx(manual.item(), rel=1e-5)
        assert parts[key] == pytest.approx(out.aux[key].item())


# --------------------------------------------------------------------------------------------- MANGO


def test_mango_aux_bpd_is_the_flows_density_of_the_encoder_features() -> None:
    model = _model("segmentation", "mango")
    a, b, _ = _batch("segmentation")
    model.train()
    model(a, b)  # initialises ActNorm / running statistics
    model.eval()
    with torch.no_grad():
        out = model(a, b)
        fa, fb = model.encode(a, b)
        ref = model.fusion.flow.bits_per_dim((fa, fb)).mean()
    assert torch.isfinite(out.aux["flow_bpd"])
    assert out.aux["flow_bpd"].item() == pytest.approx(ref.item(), rel=1e-5)
    # eval is deterministic (no noise); train adds the dequantisation-like noise
    with torch.no_grad():
        assert torch.equal(model(a, b).pred, out.pred)
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(a, b).aux["flow_bpd"], model(a, b).aux["flow_bpd"])


def test_partitions_ablation_reaches_the_flow() -> None:
    assert layers_for_partitions(None) is None
    assert {p for p, _ in layers_for_partitions(("imca",))} == {"imca"}
    model = _model("segmentation", "mango", partitions=("mmca",))
    a, b, _ = _batch("segmentation")
    records = attention_maps(model, a, b)
    assert len(records) == 2 * 8  # 2 scales x 1 block x 8 ICA layers
    assert {r.partition for r in records} == {"mmca"}
    with pytest.raises(ValueError, match="MANGO ablation"):
        _model("segmentation", "concat", partitions=("mmca",))


def test_attention_maps_mango_shapes_and_structure() -> None:
    model = _model("segmentation", "mango", heads=2)
    a, b, _ = _batch("segmentation")
    records = attention_maps(model, a, b)
    h = SIZE // 4  # encoder feature map side
    tokens = [(h // 2) ** 2, (h // 4) ** 2]  # per modality at scales 0, 1
    assert len(records) == 16
    assert {r.partition for r in records} == {"mmca", "imca", "lica"}
    for i, r in enumerate(records):
        t = tokens[i // 8]
        assert tuple(r.attention.shape) == (B, 2, t, t)
        keep = r.attention.triu() if r.triangle == "upper" else r.attention.tril()
        assert torch.equal(r.attention, keep)  # triangular -> invertible, O(T) log-det
        share = cross_modal_share(r)
        if r.partition == "mmca":
            assert share == 0.0  # X2 is a single modality
        elif r.partition == "imca":
            assert 0.0 < share < 1.0
        else:
            assert share is None and r.index is None
    assert [r.triangle for r in records[:8]] == ["upper", "lower"] * 4  # the default alternates
    # recording is switched off again afterwards
    from mango_lite.flows import InvertibleCrossAttention

    assert not any(m.record_attention for m in model.modules() if isinstance(m, InvertibleCrossAttention))


def test_cross_modal_share_hand_example() -> None:
    from mango_lite.models import AttentionRecord

    # X2 = tokens at original positions [0, 3] with T = 2 -> modalities A, B; gamma = 0.5
    s = torch.tensor([[0.25, 0.75], [0.0, 1.0]])
    att = (torch.eye(2) + 0.5 * s).view(1, 1, 2, 2)
    rec = AttentionRecord("x", "imca", torch.tensor([[1, 2], [0, 3]]), att)
    assert cross_modal_share(rec) == pytest.approx((0.75 + 0.0) / 2)


# ----------------------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("task", ["segmentation", "genre"])
@pytest.mark.parametrize("which", ["a", "b"])
def test_unimodal_model_ignores_the_other_modality(task: str, which: str) -> None:
    model = _model(task, which).eval()
    a1, b1, _ = _batch(task, seed=0)
    a2, b2, _ = _batch(task, seed=1)
    with torch.no_grad():
        ref = model(a1, b1).pred
        if which == "a":
            assert torch.equal(model(a1, b2).pred, ref)
            assert torch.equal(model(a1, None).pred, ref)
            assert not torch.allclose(model(a2, b1).pred, ref)
        else:
            assert torch.equal(model(a2, b1).pred, ref)
            assert not torch.allclose(model(a1, b2).pred, ref)
    # control: a fused model does see both
    fused = _model(task, "concat").eval()
    with torch.no_grad():
        assert not torch.allclose(fused(a1, b1).pred, fused(a1, b2).pred)


def test_token_exchange_replaces_exactly_the_low_score_tokens() -> None:
    torch.manual_seed(3)
    layer = _TokenExchangeLayer(dim=8, heads=2, threshold=-1.0)
    torch.nn.init.zeros_(layer.mlp[-1].weight)  # output = exchanged tokens, nothing added after
    torch.nn.init.zeros_(layer.mlp[-1].bias)
    a, b = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    with torch.no_grad():
        a0, b0, _ = layer(a, b)  # nothing exchanged: a0, b0 = score-gated attention updates
        scores = layer.last_scores
        assert not layer.last_exchanged.any()
        layer.threshold = float(scores.median())
        a1, b1, l1 = layer(a, b)
    ex_a, ex_b = scores[:, 0] < layer.threshold, scores[:, 1] < layer.threshold
    assert ex_a.any() and (~ex_a).any()
    assert torch.equal(layer.last_exchanged, torch.stack([ex_a, ex_b], 1))
    assert torch.equal(a1[ex_a], b0[ex_a]) and torch.equal(a1[~ex_a], a0[~ex_a])
    assert torch.equal(b1[ex_b], a0[ex_b]) and torch.equal(b1[~ex_b], b0[~ex_b])
    assert torch.allclose(l1, scores.sum((1, 2)))  # L1 of the scores, per sample


def test_tokenfusion_threshold_controls_the_exchange_in_the_model() -> None:
    model = _model("segmentation", "tokenfusion")
    a, b, _ = _batch("segmentation")
    assert isinstance(model.fusion, TokenFusion)
    model.fusion.set_threshold(0.0)
    assert model(a, b).aux["exchanged_frac"].item() == 0.0
    model.fusion.set_threshold(1.01)  # scores are sigmoids < 1: every token is replaced
    assert model(a, b).aux["exchanged_frac"].item() == 1.0
    maps = token_scores(model, a, b)
    assert [tuple(m.shape) for m in maps] == [(B, 2, 4, 4), (B, 2, 2, 2)]
    assert all(((m > 0) & (m < 1)).all() for m in maps)


def test_crossattention_maps_rows_are_distributions() -> None:
    model = _model("segmentation", "crossattn", heads=2)
    a, b, _ = _batch("segmentation")
    records = attention_maps(model, a, b)
    assert [r.partition for r in records] == ["a<-b", "b<-a", "a<-b", "b<-a"]
    assert tuple(records[0].attention.shape) == (B, 2, 16, 16)
    for r in records:
        assert torch.allclose(r.attention.sum(-1), torch.ones(()), atol=1e-5)
    with pytest.raises(MangoLiteError, match="no cross-modal attention"):
        attention_maps(_model("segmentation", "concat"), a, b)


# ---------------------------------------------------------------------------------- contributions


@pytest.mark.parametrize("method", ["ablation", "gradient"])
def test_modality_contribution(method: str) -> None:
    a, b, _ = _batch("segmentation")
    uni = modality_contribution(_model("segmentation", "a"), a, b, method)
    assert uni["a"] == 1.0 and uni["b"] == 0.0 and uni["raw_b"] == 0.0
    for fusion in ("mango", "concat", "tokenfusion", "crossattn"):
        c = modality_contribution(_model("segmentation", fusion), a, b, method)
        assert c["a"] + c["b"] == pytest.approx(1.0)
        assert 0.0 < c["a"] < 1.0 and c["raw_a"] > 0 and c["raw_b"] > 0
        if method == "ablation":
            assert c["raw_a"] <= 1.0  # total-variation distance of class probabilities
    # a concat model whose fused projections give B's channels zero weight does not use B at all
    model = _model("segmentation", "concat")
    assert isinstance(model.fusion, ConcatFusion)
    with torch.no_grad():
        for fuse in model.fusion.fuse:
            conv = fuse[0]
            conv.weight[:, conv.in_channels // 2 :] = 0
    c = modality_contribution(model, a, b, method)
    assert c["raw_b"] == 0.0 and c["a"] == 1.0


def test_contribution_on_text_modality() -> None:
    a, b, _ = _batch("genre")
    c = modality_contribution(_model("genre", "mango"), a, b)
    assert c["a"] + c["b"] == pytest.approx(1.0) and c["raw_b"] > 0


# --------------------------------------------------------------------------------- text / encoders


def _crc32(data: bytes) -> int:
    """Bitwise CRC-32 (IEEE, reflected polynomial 0xEDB88320): an independent reference for zlib."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_hash_tokenizer() -> None:
    tok = HashTokenizer(vocab_size=100, max_len=5)
    ids = tok(["Love, LOVE! love", "", "a b c d e f g"])
    want = 2 + _crc32(b"love") % 98
    assert ids[0].tolist() == [BOS_ID, want, want, want, PAD_ID]
    assert ids[1].tolist() == [BOS_ID, 0, 0, 0, 0]
    assert ids[2].tolist() == [BOS_ID] + [2 + _crc32(w.encode()) % 98 for w in "abcd"]  # truncated
    assert torch.equal(tok("don't stop"), HashTokenizer(100, 5)("DON'T  stop."))  # stable, normalised


def test_text_encoder_grid_and_padding_invariance() -> None:
    torch.manual_seed(0)
    enc = TextEncoder(vocab_size=50, width=8, tokens=8, grid=(2, 4), max_len=12, heads=2)
    tok = HashTokenizer(50, 6)
    ids = tok(["the quick brown fox", "jumps"])
    enc.train()
    enc(torch.cat([ids, ids]))  # non-trivial running statistics
    enc.eval()
    with torch.no_grad():
        out = enc(ids)
        longer = torch.cat([ids, torch.zeros(2, 6, dtype=torch.long)], 1)  # more padding
        assert tuple(out.shape) == (2, 8, 2, 4)
        assert torch.allclose(enc(longer), out, atol=1e-5)
        assert torch.isfinite(enc(torch.zeros(1, 6, dtype=torch.long))).all()  # all-padding row
    with pytest.raises(ValueError, match="ids must lie in"):
        enc(torch.full((1, 3), 50))


def test_encoder_output_is_standardised_without_affine_parameters() -> None:
    enc = ConvEncoder(3, 8, stride=4)
    assert not any(p.requires_grad for p in enc.standardize.parameters())
    assert isinstance(enc.standardize, FlowStandardize) and enc.standardize.weight is None
    f = enc(torch.randn(4, 3, 16, 16) * 5 + 3)
    assert tuple(f.shape) == (4, 8, 4, 4)
    assert torch.allclose(f.mean((0, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(f.var((0, 2, 3), unbiased=False), torch.ones(8), atol=1e-3)


def test_optional_pretrained_encoders_fail_clearly(tmp_path) -> None:
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(MangoLiteError, match="timm"):
            TimmEncoder("resnet18", tmp_path / "w.pt", 3, 8)
    else:
        with pytest.raises(MangoLiteError, match="does not exist"):
            TimmEncoder("resnet18", tmp_path / "missing.pt", 3, 8)
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(MangoLiteError, match="sentence-transformers"):
            SentenceEncoder(8, 4)
    # any frozen embedder can be plugged in
    enc = SentenceEncoder(8, 4, embed_fn=lambda texts: np.ones((len(texts), 6)) * np.arange(len(texts))[:, None], dim=6)
    assert tuple(enc(["x", "y", "z"]).shape) == (3, 8, 2, 2)


def test_vector_text_input() -> None:
    model = _model("genre", "concat", text_encoder="vector", text_dim=300)
    out = model(torch.randn(B, 3, SIZE, SIZE), torch.randn(B, 300))
    assert tuple(out.pred.shape) == (B, 23)


def test_build_is_deterministic_given_the_seed() -> None:
    a, b, _ = _batch("segmentation")
    m1, m2 = _model("segmentation", "mango", seed=5).eval(), _model("segmentation", "mango", seed=5).eval()
    with torch.no_grad():
        assert torch.equal(m1(a, b).pred, m2(a, b).pred)


# ---------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("fusion", ["mango", "concat"])
def test_overfits_a_tiny_segmentation_batch(fusion: str) -> None:
    model = _model("segmentation", fusion)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, SIZE, SIZE, generator=g)
    b = torch.randn(4, 1, SIZE, SIZE, generator=g)
    # labels that need both modalities: class = 2 * (a[0] > 0) + (b > 0) on 8x8 patches (the stride of the
    # finest fused features)
    y = (2 * (F.avg_pool2d(a[:, :1], 8) > 0).long() + (F.avg_pool2d(b, 8) > 0).long())[:, 0]
    y = y.repeat_interleave(8, 1).repeat_interleave(8, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        out = model(a, b)
        loss, parts = model.loss(out, y)
        loss.backward()
        opt.step()
        losses.append(parts["task"])
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < 0.3 * losses[0], losses


def test_cross_modal_offsets_find_where_each_modality_looks() -> None:
    """A hand-made IMCA record on a 2 x 4 grid (X2 = A's and B's tokens of grid row 1): B's rows attend to
    the A token one column to the right, A's rows to the B token two columns to the left, some gammas < 0."""
    from mango_lite.models.interpret import AttentionRecord, cross_modal_offsets

    h, w = 2, 4
    t_mod = h * w
    index = torch.tensor([[0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]])  # X1, X2 positions
    s = torch.eye(t_mod)  # rows without a partner in the grid attend to themselves (no cross-modal mass)
    for k in range(3):  # B's row at column k -> A's token at column k + 1 (X2 index k + 1)
        s[4 + k] = 0.0
        s[4 + k, k + 1] = 1.0
    for k in (2, 3):  # A's row at column k -> B's token at column k - 2 (X2 index 4 + k - 2)
        s[k] = 0.0
        s[k, 4 + k - 2] = 1.0
    gamma = torch.tensor([0.5, -0.3, 0.2, 0.4, -0.6, 0.5, 0.3, -0.2])[:, None]
    rec = AttentionRecord("x", "imca", index, (torch.eye(t_mod) + gamma * s)[None, None], "upper")
    out = cross_modal_offsets([rec], (h, w))
    assert out["layers"] == 1
    assert out["b_to_a"] == pytest.approx({1: 1.0}) and out["a_to_b"] == pytest.approx({-2: 1.0})
    assert out["b_to_a_mean_dc"] == pytest.approx(1.0) and out["a_to_b_mean_dc"] == pytest.approx(-2.0)
    assert cross_modal_offsets([rec], (1, 2))["layers"] == 0  # a record of another scale is skipped
