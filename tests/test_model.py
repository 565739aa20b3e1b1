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
