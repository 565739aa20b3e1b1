import torch

from sasutils.regularizer import arc_matrix, max_attention, syntactic_regularizer


def test_known_answer_hand_built():
    # one sentence of 3 tokens: 0 <- 1 -> 2 (token 1 is the root, parents of 0 and 2 are 1)
    parents = torch.tensor([[1, -1, 1]])
    a1 = torch.tensor([[[[0.1, 0.8, 0.1], [0.5, 0.2, 0.3], [0.3, 0.3, 0.4]]]])  # (B=1, H=1, 3, 3)
    a2 = torch.tensor([[[[0.6, 0.2, 0.2], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]]]])
    # D(0)={1}, D(1)={0,2}, D(2)={1}: max over layers of A[0,1], A[1,0], A[1,2], A[2,1]
    expect = max(0.8, 0.2) + max(0.5, 0.1) + max(0.3, 0.8) + max(0.3, 0.7)
    assert torch.isclose(syntactic_regularizer([a1, a2], parents, "sum"), torch.tensor(expect))
    assert torch.isclose(syntactic_regularizer([a1, a2], parents, "mean"), torch.tensor(expect / 4))


def test_arc_matrix_symmetric_and_ignores_missing():
    parents = torch.tensor([[-1, 0, 0, -1], [2, -1, 1, -1]])
    m = arc_matrix(parents)
    assert torch.equal(m, m.transpose(1, 2))
    assert m[0].sum() == 4 and m[1].sum() == 4 and not m[0, 3].any()


def test_max_attention_over_layers_and_heads():
    a = [torch.rand(2, 3, 5, 5) for _ in range(4)]
    ref = torch.stack(a).amax(dim=(0, 2))
    assert torch.equal(max_attention(a), ref)


def test_gradient_sign():
    # lambda > 0 lowers attention on arcs: the gradient wrt the arc logit is positive
    logits = torch.zeros(1, 1, 2, 2, requires_grad=True)
    reg = syntactic_regularizer([logits.softmax(-1)], torch.tensor([[-1, 0]]))
    reg.backward()
    assert logits.grad[0, 0, 1, 0] > 0 and logits.grad[0, 0, 1, 1] < 0


def test_over_words_matches_a_per_row_loop():
    from sasutils.regularizer import over_words

    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 6, 6, generator=g).softmax(-1)
    words = torch.tensor([[0, 1, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0]], dtype=torch.bool)  # [CLS] w w w w [SEP]; padding
    got = over_words(a, words)
    for b in range(2):
        for h in range(3):
            for i in range(6):
                keep = [j for j in range(6) if words[b, j] and j != i]
                ref = torch.zeros(6)
                ref[keep] = a[b, h, i, keep] / a[b, h, i, keep].sum()
                assert torch.allclose(got[b, h, i], ref, atol=1e-6), (b, h, i)


def test_words_term_sees_a_pattern_hidden_behind_a_sink():
    # words 1 -> 2 (parent of 1 is 2; 2 is the root); token 0 is [CLS], 3 is [SEP]. Each word puts 96 %
    # of its attention on [CLS] and the rest on its arc neighbour: the paper's term is small, the
    # pattern (which the SAS scalar reads: argmax over the other words) is fully syntactic.
    parents = torch.tensor([[-1, 2, -1, -1]])
    a = torch.tensor([[[[1.0, 0, 0, 0], [0.96, 0, 0.04, 0], [0.96, 0.04, 0, 0], [1.0, 0, 0, 0]]]])
    words = torch.tensor([[False, True, True, False]])
    assert torch.isclose(syntactic_regularizer([a], parents), torch.tensor(0.04))
    assert torch.isclose(syntactic_regularizer([a], parents, word_mask=words), torch.tensor(1.0))


def test_words_term_gradient_moves_attention_off_arcs_not_onto_the_sink():
    # [CLS] w1 w2 w3 [SEP]; w1 -> w2 <- w3
    logits = torch.zeros(1, 1, 5, 5, requires_grad=True)
    words = torch.tensor([[False, True, True, True, False]])
    syntactic_regularizer([logits.softmax(-1)], torch.tensor([[-1, 2, -1, 2, -1]]), word_mask=words).backward()
    g = logits.grad[0, 0, 1]  # row of w1, whose arc goes to w2
    assert g[2] > 0 and g[3] < 0  # attention moves from the arc to the other word ...
    assert g[[0, 1, 4]].abs().max() < 1e-7  # ... not to [CLS], [SEP] or itself: those get no gradient


def test_words_term_stays_within_the_sentence_of_a_packed_row():
    # [CLS] a b [SEP] [CLS] c d [SEP]: a -> b is the only arc of sentence 1. Row a puts 0.5 on b and 0.5 on c
    # (the next sentence): over the row's words the arc gets 0.5, over a's own sentence 1.0.
    parents = torch.tensor([[-1, 2, -1, -1, -1, -1, -1, -1]])
    a = torch.zeros(1, 1, 8, 8)
    a[0, 0, :, 0] = 1.0
    a[0, 0, 1] = torch.tensor([0, 0, 0.5, 0, 0, 0.5, 0, 0])
    a[0, 0, 2] = torch.tensor([0, 0.5, 0, 0, 0, 0, 0.5, 0])
    words = torch.tensor([[0, 1, 1, 0, 0, 1, 1, 0]], dtype=torch.bool)
    segment = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 2]])
    assert torch.isclose(syntactic_regularizer([a], parents, word_mask=words), torch.tensor(0.5))
    assert torch.isclose(syntactic_regularizer([a], parents, word_mask=words, segment=segment), torch.tensor(1.0))


def test_words_term_of_a_one_word_sentence_is_zero_with_finite_gradient():
    # [CLS] w [SEP] [CLS] a b [SEP]: w has no other word in its sentence, so its row becomes 0, not NaN
    from sasutils.regularizer import over_words

    logits = torch.zeros(1, 1, 7, 7, requires_grad=True)
    words = torch.tensor([[0, 1, 0, 0, 1, 1, 0]], dtype=torch.bool)
    segment = torch.tensor([[1, 1, 1, 2, 2, 2, 2]])
    assert over_words(logits.softmax(-1), words, segment)[0, 0, 1].abs().sum() == 0
    reg = syntactic_regularizer([logits.softmax(-1)], torch.tensor([[-1, -1, -1, -1, 5, -1, -1]]),
                                word_mask=words, segment=segment)
    reg.backward()
    assert torch.isclose(reg, torch.tensor(1.0)) and torch.isfinite(logits.grad).all()
