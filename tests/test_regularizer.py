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
