import pytest
import torch

from sasutils.model import attention_weights, build_model, masked_lm_loss, preset


def test_masked_only_loss_equals_hf_loss(small_tokenizer, tiny_model):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(small_tokenizer), (4, 20), generator=g)
    attn = torch.ones_like(ids)
    attn[1, 15:] = 0
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.2, ids, torch.full_like(ids, -100))
    labels[1, 15:] = -100
    ours, _ = masked_lm_loss(tiny_model, ids, attn, labels)
    ref = tiny_model(input_ids=ids, attention_mask=attn, labels=labels).loss
    assert torch.allclose(ours, ref, atol=1e-5)


def test_attention_weights_context_restores_sdpa(tiny_model):
    ids = torch.randint(5, 100, (2, 7))
    assert tiny_model.config._attn_implementation == "sdpa"
    with attention_weights(tiny_model):
        _, att = masked_lm_loss(tiny_model, ids, torch.ones_like(ids), ids, output_attentions=True)
    H = tiny_model.config.num_attention_heads
    assert len(att) == tiny_model.config.num_hidden_layers and att[0].shape == (2, H, 7, 7)
    assert torch.allclose(att[0].sum(-1), torch.ones(2, H, 7), atol=1e-5)
    assert tiny_model.config._attn_implementation == "sdpa"


def test_presets():
    base = preset("bert-base")
    assert (base["num_hidden_layers"], base["num_attention_heads"], base["hidden_size"], base["seq_len"]) == (
        12, 12, 768, 512)
    m = build_model(preset("cpu-tiny"), 1000)
    assert m.config.num_hidden_layers == 2 and m.config.max_position_embeddings == preset("cpu-tiny")["seq_len"]
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown preset field"):
        preset("cpu-tiny", hiden_size=3)


def _pre_ln_reference(m, ids, attn):
    """Pre-LN BERT written out: x = x + Attn(LN(x)); x = x + FFN(LN(x)); final LN (no embedding LN)."""
    e, enc = m.bert.embeddings, m.bert.encoder
    T = ids.shape[1]
    x = e.word_embeddings(ids) + e.position_embeddings.weight[:T] + e.token_type_embeddings.weight[0]
    H = m.config.num_attention_heads
    d = m.config.hidden_size // H
    bias = (1.0 - attn[:, None, None, :].float()) * torch.finfo(torch.float32).min  # (B, 1, 1, T)
    for lay in enc.layer:
        h = lay.attention.ln(x)
        q, k, v = (f(h).view(*h.shape[:2], H, d).transpose(1, 2) for f in
                   (lay.attention.self.query, lay.attention.self.key, lay.attention.self.value))
        a = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5 + bias, dim=-1)  # (B, H, T, T)
        x = x + lay.attention.output.dense((a @ v).transpose(1, 2).reshape(x.shape))
        x = x + lay.output.dense(torch.nn.functional.gelu(lay.intermediate.dense(lay.ln(x))))
    return enc.ln(x)


def test_pre_ln_model_matches_a_written_out_pre_ln_bert():
    from sasutils import train as T

    cfg = T.make_config("cpu-tiny", ln_placement="pre")
    m = build_model(cfg, 1000, seed=0).eval()
    with torch.no_grad():  # layer norms start at (1, 0): perturb them so their placement matters
        for n, p in m.named_parameters():
            if "ln" in n.split(".") or "LayerNorm" in n:
                p.add_(0.3 * torch.randn_like(p))
    ids = torch.randint(5, 1000, (3, 11))
    attn = torch.ones_like(ids)
    attn[2, 6:] = 0
    with torch.no_grad():
        out = m.bert(input_ids=ids, attention_mask=attn).last_hidden_state
        ref = _pre_ln_reference(m, ids, attn)
    keep = attn.bool()
    assert torch.allclose(out[keep], ref[keep], atol=1e-4)
    post = build_model(T.make_config("cpu-tiny"), 1000, seed=0).eval()
    with torch.no_grad():  # BERT's post-LN differs from the written-out pre-LN on the same weights
        assert not torch.allclose(post.bert(input_ids=ids, attention_mask=attn).last_hidden_state[keep], ref[keep],
                                  atol=1e-2)


def test_pre_ln_is_a_clean_ablation_of_bert():
    from sasutils import train as T

    a = build_model(T.make_config("cpu-tiny", seed=0), 1000, seed=0).state_dict()
    b = build_model(T.make_config("cpu-tiny", seed=0, ln_placement="pre"), 1000, seed=0).state_dict()
    assert sum(v.numel() for v in a.values()) == sum(v.numel() for v in b.values())
    shared = [k for k in a if k in b and "LayerNorm" not in k and not k.endswith("position_ids")]
    assert len(shared) >= 20 and all(torch.equal(a[k], b[k]) for k in shared)  # same draw for every weight


def test_pre_ln_attention_weights_and_checkpoint_round_trip(tmp_path, small_tokenizer):
    from sasutils import train as T

    m = build_model(T.make_config("cpu-tiny", ln_placement="pre"), len(small_tokenizer), seed=0)
    ids = torch.randint(5, 100, (2, 7))
    with attention_weights(m):
        _, att = masked_lm_loss(m, ids, torch.ones_like(ids), ids, output_attentions=True)
    assert len(att) == 2 and torch.allclose(att[0].sum(-1), torch.ones(2, 8, 7), atol=1e-5)
    path = T.save_checkpoint(m, small_tokenizer, tmp_path, 0)
    m2, _ = T.load_checkpoint(path)
    assert type(m2).__name__ == "MegatronBertForMaskedLM"  # not silently read back as post-LN BERT
    with torch.no_grad():
        assert torch.allclose(m.eval().bert(input_ids=ids).last_hidden_state,
                              m2.eval().bert(input_ids=ids).last_hidden_state, atol=1e-6)


def test_position_blind_makes_the_encoder_permutation_equivariant_and_restores(small_tokenizer, tiny_model):
    from sasutils.model import position_blind

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, len(small_tokenizer), (2, 12), generator=g)
    perm = torch.randperm(12, generator=g)
    mask = torch.ones_like(ids)
    before = tiny_model.bert.embeddings.position_embeddings.weight.detach().clone()
    with torch.no_grad():
        h = tiny_model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        h_perm = tiny_model.bert(input_ids=ids[:, perm], attention_mask=mask).last_hidden_state
        assert not torch.allclose(h[:, perm], h_perm, atol=1e-4)  # BERT sees order
        with position_blind(tiny_model):
            table = tiny_model.bert.embeddings.position_embeddings.weight
            assert torch.allclose(table, before.mean(0).expand_as(before))
            h = tiny_model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            h_perm = tiny_model.bert(input_ids=ids[:, perm], attention_mask=mask).last_hidden_state
        assert torch.allclose(h[:, perm], h_perm, atol=1e-5)  # blind: permuting the input permutes the output
    assert torch.equal(tiny_model.bert.embeddings.position_embeddings.weight, before)


def test_extend_positions_keeps_the_trained_rows_and_reads_longer_inputs(small_tokenizer):
    from sasutils.model import build_model, extend_positions, preset

    cfg = preset("cpu-tiny", hidden_size=64, intermediate_size=128, seq_len=16)
    m = build_model(cfg, len(small_tokenizer), small_tokenizer.pad_token_id, seed=0).eval()
    before = m.bert.embeddings.position_embeddings.weight.detach().clone()
    ids = torch.randint(10, len(small_tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = m.bert(input_ids=ids).last_hidden_state
        extend_positions(m, 40, seed=1)
        table = m.bert.embeddings.position_embeddings.weight
        assert table.shape == (40, 64) and m.config.max_position_embeddings == 40
        assert torch.equal(table[:16], before)
        assert abs(table[16:].std().item() - m.config.initializer_range) < 0.003  # the init scale of the new rows
        assert torch.allclose(m.bert(input_ids=ids).last_hidden_state, h, atol=1e-6)  # short inputs: unchanged
        long = torch.randint(10, len(small_tokenizer), (1, 40), generator=torch.Generator().manual_seed(2))
        assert m.bert(input_ids=long).last_hidden_state.shape == (1, 40, 64)
    with pytest.raises(ValueError, match="n_positions=40"):
        extend_positions(m, 40)
    extend_positions(m, 48, init="zero")  # the rows a zero-initialised table would hold
    assert torch.equal(m.bert.embeddings.position_embeddings.weight[40:], torch.zeros(8, 64))
    with pytest.raises(ValueError, match="init='uniform'"):
        extend_positions(m, 60, init="uniform")
