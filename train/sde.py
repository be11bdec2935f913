"""The VP SDE (Song et al. 2021) shared by training, export and the Rust samplers.

beta(t)  = beta_min + t (beta_max - beta_min),            t in [t_eps, 1]
alpha(t) = exp(-t^2 (beta_max - beta_min) / 4 - t beta_min / 2)   (signal scale)
sigma(t) = sqrt(1 - alpha(t)^2)                                    (noise scale)
x_t = alpha(t) x_0 + sigma(t) eps,   score = -eps / sigma(t)
"""
import math

import torch


class VPSDE:
    def __init__(self, beta_min=0.1, beta_max=20.0, t_eps=1e-3):
        self.beta_min, self.beta_max, self.t_eps = beta_min, beta_max, t_eps

    def log_alpha(self, t):
        return -0.25 * t * t * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha_sigma(self, t):
        la = self.log_alpha(t)
        alpha = torch.exp(la) if torch.is_tensor(t) else math.exp(la)
        sigma = torch.sqrt(-torch.expm1(2 * la)) if torch.is_tensor(t) else math.sqrt(-math.expm1(2 * la))
        return alpha, sigma

    def config(self):
        return {"type": "vp", "beta_min": self.beta_min, "beta_max": self.beta_max, "t_eps": self.t_eps}


@torch.no_grad()
def ddim_sample(net, sde, shape, labels, steps=50, guidance=1.0, null_label=None, generator=None, eta=0.0):
    """DDIM on a uniform time grid; used for previews and evaluation. eta 0 is deterministic (the
    probability-flow discretisation), 1 has DDPM's posterior variance.

    Classifier-free guidance: eps = eps_null + w (eps_cond - eps_null); w = 1 is plain conditional.
    The network runs where its weights are; the noise is drawn by `generator` on the CPU (the same
    draws on any device) and the samples come back on the CPU.
    """
    device = next(net.parameters()).device
    labels = labels.to(device)
    x = torch.randn(shape, generator=generator).to(device)
    ts = torch.linspace(1.0, sde.t_eps, steps + 1)
    for i in range(steps):
        t, s = ts[i].item(), ts[i + 1].item()
        a_t, s_t = sde.alpha_sigma(t)
        a_s, s_s = sde.alpha_sigma(s)
        tt = torch.full((shape[0],), t, device=device)
        eps = net(x, tt, labels)
        if guidance != 1.0 and null_label is not None:
            eps_u = net(x, tt, torch.full_like(labels, null_label))
            eps = eps_u + guidance * (eps - eps_u)
        x0 = (x - s_t * eps) / a_t
        var = eta * eta * (s_s * s_s / (s_t * s_t)) * (1 - (a_t / a_s) ** 2)
        x = a_s * x0 + math.sqrt(s_s * s_s - var) * eps
        if var > 0:
            x = x + math.sqrt(var) * torch.randn(shape, generator=generator).to(device)
    return x.cpu()
