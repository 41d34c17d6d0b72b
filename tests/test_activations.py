"""ELU through exp: the same function and gradient as torch.nn.ELU, in place where asked."""
import torch
import torch.nn.functional as F

from avae_tutorial.activations import ELU, _ExpELU


def test_values_match_torch_elu_on_both_sides_of_zero():
    x = torch.cat([torch.randn(4, 8, 9, 9, generator=torch.Generator().manual_seed(0)) * 5,
                   torch.tensor([0.0, -0.0, 1e-30, -1e-30, -200.0, 200.0]).view(1, 1, 1, 6).expand(4, 8, 9, 6)], -1)
    torch.testing.assert_close(ELU()(x), F.elu(x), atol=1e-6, rtol=0)
    pos = x > 0
    assert torch.equal(ELU()(x)[pos], x[pos])  # exact where x > 0
    assert float(ELU()(torch.tensor([-200.0]))) == -1.0


def test_gradient_matches_and_passes_gradcheck():
    x = torch.randn(200, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_ExpELU.apply, (x,))
    a = torch.randn(64, requires_grad=True)
    b = a.detach().clone().requires_grad_()
    (ELU()(a) * torch.arange(64.0)).sum().backward()
    (F.elu(b) * torch.arange(64.0)).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-6)


def test_in_place_only_where_asked_and_no_grad():
    x = torch.randn(32)
    keep = x.clone()
    with torch.no_grad():
        assert torch.allclose(ELU()(x), F.elu(keep), atol=1e-6)
        assert torch.equal(x, keep)
        z = ELU(inplace=True)(x)
    assert z.data_ptr() == x.data_ptr() and torch.allclose(z, F.elu(keep), atol=1e-6)


def test_a_drop_in_for_nn_elu():
    m = ELU(inplace=True)
    assert isinstance(m, torch.nn.ELU) and repr(m) == "ELU(alpha=1.0, inplace=True)"
    assert m.state_dict() == {} and torch.nn.ELU(alpha=0.5)(torch.tensor([-1.0])).item() == ELU(alpha=0.5)(
        torch.tensor([-1.0])).item()  # other alphas: torch's own
