"""Score networks. The Rust runtime (src/nn/) mirrors these layer for layer, by parameter name.

Time input: continuous t in [t_eps, 1], multiplied by `time_scale` (1000) and fed to
`sinusoidal(t * time_scale, dim)`: first half sin(t * f_i), second half cos(t * f_i),
f_i = exp(-ln(10000) * i / half) for i in [0, half).
Class input: an integer label in [0, num_classes]; num_classes is the null label
(classifier-free guidance and unconditional sampling).
Output: eps (the noise), so score = -eps / sigma(t).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoidal(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class TimeClassEmbedding(nn.Module):
    """temb = fc2(silu(fc1(sinusoidal(t * scale)))) + class_emb[label]."""

    def __init__(self, base, dim, num_classes, time_scale):
        super().__init__()
        self.base, self.time_scale = base, time_scale
        self.fc1 = nn.Linear(base, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.class_emb = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None

    def forward(self, t, labels):
        h = self.fc2(F.silu(self.fc1(sinusoidal(t * self.time_scale, self.base))))
        if self.class_emb is not None:
            h = h + self.class_emb(labels)
        return h


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb_act):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb_act)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class Attention(nn.Module):
    """Single-head self-attention over the H*W tokens, with a residual."""

    def __init__(self, ch, groups, eps):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch, eps=eps)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj = nn.Linear(ch, ch)

    def forward(self, x):
        b, c, hh, ww = x.shape
        tok = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        q, k, v = self.qkv(tok).chunk(3, dim=2)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=2)
        out = self.proj(att @ v).transpose(1, 2).reshape(b, c, hh, ww)
        return x + out


class UNet(nn.Module):
    """DDPM-style U-Net: `num_res` blocks per level going down, `num_res + 1` going up."""

    def __init__(self, in_ch, base, mults, num_res, attn_res, image_size, num_classes,
                 groups=8, norm_eps=1e-5, time_scale=1000.0):
        super().__init__()
        temb = 4 * base
        self.embed = TimeClassEmbedding(base, temb, num_classes, time_scale)
        self.conv_in = nn.Conv2d(in_ch, base, 3, padding=1)
        self.down = nn.ModuleList()
        chans, ch, res = [base], base, image_size
        for level, m in enumerate(mults):
            stage = nn.Module()
            stage.res = nn.ModuleList()
            stage.attn = nn.ModuleList()
            for _ in range(num_res):
                stage.res.append(ResBlock(ch, base * m, temb, groups, norm_eps))
                ch = base * m
                stage.attn.append(Attention(ch, groups, norm_eps) if res in attn_res else nn.Identity())
                chans.append(ch)
            if level != len(mults) - 1:
                stage.downsample = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
                chans.append(ch)
                res //= 2
            self.down.append(stage)
        self.mid_res1 = ResBlock(ch, ch, temb, groups, norm_eps)
        self.mid_attn = Attention(ch, groups, norm_eps)
        self.mid_res2 = ResBlock(ch, ch, temb, groups, norm_eps)
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mults))):
            stage = nn.Module()
            stage.res = nn.ModuleList()
            stage.attn = nn.ModuleList()
            for _ in range(num_res + 1):
                stage.res.append(ResBlock(ch + chans.pop(), base * m, temb, groups, norm_eps))
                ch = base * m
                stage.attn.append(Attention(ch, groups, norm_eps) if res in attn_res else nn.Identity())
            if level != 0:
                stage.upsample = nn.Conv2d(ch, ch, 3, padding=1)
                res *= 2
            self.up.insert(0, stage)  # self.up[level] is the stage of that level
        self.norm_out = nn.GroupNorm(groups, ch, eps=norm_eps)
        self.conv_out = nn.Conv2d(ch, in_ch, 3, padding=1)
        self.mults = list(mults)

    def forward(self, x, t, labels, taps=None):
        temb_act = F.silu(self.embed(t, labels))
        h = self.conv_in(x)
        hs = [h]
        for level, stage in enumerate(self.down):
            for res, attn in zip(stage.res, stage.attn):
                h = attn(res(h, temb_act))
                hs.append(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
                hs.append(h)
        if taps is not None:
            taps["down_out"] = h
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, temb_act)), temb_act)
        if taps is not None:
            taps["mid_out"] = h
        for level in reversed(range(len(self.mults))):
            stage = self.up[level]
            for res, attn in zip(stage.res, stage.attn):
                h = attn(res(torch.cat([h, hs.pop()], dim=1), temb_act))
            if hasattr(stage, "upsample"):
                h = stage.upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
        if taps is not None:
            taps["temb"] = temb_act
            taps["up_out"] = h
        return self.conv_out(F.silu(self.norm_out(h)))


class ScoreMLP(nn.Module):
    """Residual MLP for 2-D points: h = in_proj(x); per block h += fc2(silu(fc1(silu(h)) + temb_i))."""

    def __init__(self, dim, width, depth, num_classes, time_base=64, time_scale=1000.0):
        super().__init__()
        self.embed = TimeClassEmbedding(time_base, width, num_classes, time_scale)
        self.in_proj = nn.Linear(dim, width)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            b = nn.Module()
            b.fc1 = nn.Linear(width, width)
            b.temb = nn.Linear(width, width)
            b.fc2 = nn.Linear(width, width)
            self.blocks.append(b)
        self.out_proj = nn.Linear(width, dim)

    def forward(self, x, t, labels, taps=None):
        temb_act = F.silu(self.embed(t, labels))
        h = self.in_proj(x)
        for b in self.blocks:
            h = h + b.fc2(F.silu(b.fc1(F.silu(h)) + b.temb(temb_act)))
        if taps is not None:
            taps["temb"] = temb_act
            taps["hidden"] = h
        return self.out_proj(F.silu(h))


def build(arch):
    """Build a network from the `arch` section of the model config."""
    a = dict(arch)
    kind = a.pop("type")
    if kind == "unet":
        return UNet(**a)
    if kind == "mlp":
        return ScoreMLP(**a)
    raise ValueError(f"unknown architecture {kind!r}")
