"""The community's super-resolution architectures, in the shape their communities publish them.

Written for the benchmarks from the published descriptions (Real-ESRGAN's SRVGGNetCompact, SPAN as
chaiNNer's spandrel runs it, the original ESRGAN RRDBNet, a small SwinIR), with random weights: the
benchmark measures speed and the engines' agreement with PyTorch, so trained weights are not needed.
Each builder seeds torch itself, so the module an export was made from and the reference the
benchmark rebuilds in another process hold the same weights. Where a trained net's parameters differ
in kind from a fresh init (PReLU slopes: 0.25 everywhere at init, one slope per channel once
trained), the builder draws them per channel, so a rewrite that only works on the init cannot win.

Builders: :func:`compact`, :func:`span`, :func:`rrdb`, :func:`swinir`; :data:`ARCHS` names them with
the configuration the benchmarks use and the pipeline their exports need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

SEED = 0


# ---------------------------------------------------------------- Real-ESRGAN Compact (SRVGGNetCompact)
class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact VGG-style net: conv + PReLU, ``num_conv`` times, a conv to 3*s*s channels,
    PixelShuffle, plus the nearest-upsampled input."""

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4):
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x):
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


# ---------------------------------------------------------------- SPAN (NTIRE 2024 efficient SR winner)
class Conv3XC(nn.Module):
    """SPAN's re-parameterised 3x3 convolution in its inference form: the training-time 1x1-3x3-1x1
    branch and skip are folded into one 3x3 conv, which is what every export contains."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.eval_conv = nn.Conv2d(c_in, c_out, 3, 1, 1)

    def forward(self, x):
        return self.eval_conv(x)


class SPAB(nn.Module):
    """Swift parameter-free attention block: three convs with SiLU between them, and the block's
    output weighted by sigmoid(out3) - 0.5 (no parameters in the attention)."""

    def __init__(self, channels: int):
        super().__init__()
        self.c1_r = Conv3XC(channels, channels)
        self.c2_r = Conv3XC(channels, channels)
        self.c3_r = Conv3XC(channels, channels)
        self.act1 = nn.SiLU()

    def forward(self, x):
        out1 = self.c1_r(x)
        out2 = self.c2_r(self.act1(out1))
        out3 = self.c3_r(self.act1(out2))
        sim_att = torch.sigmoid(out3) - 0.5
        return (out3 + x) * sim_att, out1


class SPAN(nn.Module):
    def __init__(self, num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=4, img_range=255.0):
        super().__init__()
        self.img_range = img_range
        self.register_buffer("mean", torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1))
        self.conv_1 = Conv3XC(num_in_ch, feature_channels)
        self.blocks = nn.ModuleList(SPAB(feature_channels) for _ in range(6))
        self.conv_cat = nn.Conv2d(feature_channels * 4, feature_channels, 1)
        self.conv_2 = Conv3XC(feature_channels, feature_channels)
        self.upsampler = nn.Sequential(
            nn.Conv2d(feature_channels, num_out_ch * upscale * upscale, 3, 1, 1), nn.PixelShuffle(upscale)
        )

    def forward(self, x):
        x = (x - self.mean) * self.img_range
        out_feature = self.conv_1(x)
        out = out_feature
        out_b1 = out_b5_2 = None
        for index, block in enumerate(self.blocks):
            out, out1 = block(out)
            if index == 0:
                out_b1 = out
            out_b5_2 = out1  # the last block's first conv output
        out_b6 = self.conv_2(out)
        out = self.conv_cat(torch.cat([out_feature, out_b6, out_b1, out_b5_2], 1))
        return self.upsampler(out)


# ---------------------------------------------------------------- ESRGAN RRDBNet (the original arch)
class ResidualDenseBlock(nn.Module):
    def __init__(self, nf=64, gc=32):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, nf, gc=32):
        super().__init__()
        self.RDB1 = ResidualDenseBlock(nf, gc)
        self.RDB2 = ResidualDenseBlock(nf, gc)
        self.RDB3 = ResidualDenseBlock(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator as its original repository (and old-arch community models) write it: one
    nearest x2 + conv + LeakyReLU stage per factor of two."""

    def __init__(self, in_nc=3, out_nc=3, nf=64, nb=23, gc=32, upscale=4):
        super().__init__()
        self.conv_first = nn.Conv2d(in_nc, nf, 3, 1, 1)
        self.RRDB_trunk = nn.Sequential(*(RRDB(nf, gc) for _ in range(nb)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.upconvs = nn.ModuleList(nn.Conv2d(nf, nf, 3, 1, 1) for _ in range(upscale.bit_length() - 1))
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2)

    def forward(self, x):
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.RRDB_trunk(fea))
        for upconv in self.upconvs:
            fea = self.lrelu(upconv(F.interpolate(fea, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.HRconv(fea)))


# ---------------------------------------------------------------- SwinIR (window attention), small
def window_partition(x, ws: int):
    """(B, H, W, C) -> (B * windows, ws, ws, C)"""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, c)


def window_reverse(windows, ws: int, h, w):
    """(B * windows, ws, ws, C) -> (B, H, W, C)"""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shifted_window_mask(h, w, ws: int, shift: int, device):
    """SwinIR's attention mask for the shifted windows: -100 between tokens that came from different
    regions of the rolled image. SwinIR labels the regions by slice assignment; the same labels are
    computed here from comparisons, which a traced export keeps dynamic in H and W."""
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    region_h = (rows >= h - ws).long() + (rows >= h - shift).long()
    region_w = (cols >= w - ws).long() + (cols >= w - shift).long()
    labels = (region_h[:, None] * 3 + region_w[None, :]).float()[None, :, :, None]
    windows = window_partition(labels, ws).reshape(-1, ws * ws)
    differ = windows[:, None, :] - windows[:, :, None]
    return torch.where(differ != 0, torch.full_like(differ, -100.0), torch.zeros_like(differ))


class WindowAttention(nn.Module):
    def __init__(self, dim, window_size, num_heads):
        super().__init__()
        self.window_size, self.num_heads = window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        flat = coords.flatten(1)
        relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (window_size - 1)
        self.register_buffer("relative_position_index", relative[..., 0] * (2 * window_size - 1) + relative[..., 1])
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x, mask=None):
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(-1, windows, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b_, n, c))


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim, num_heads, window_size, shift_size, mlp_ratio):
        super().__init__()
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x, x_size):
        h, w = x_size
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        mask = None
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            mask = shifted_window_mask(h, w, ws, shift, x.device)
        windows = window_partition(x, ws).view(-1, ws * ws, c)
        windows = self.attn(windows, mask).view(-1, ws, ws, c)
        x = window_reverse(windows, ws, h, w)
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        x = shortcut + x.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class RSTB(nn.Module):
    """Residual Swin Transformer block: Swin layers (alternately shifted), a 3x3 conv, a residual."""

    def __init__(self, dim, depth, num_heads, window_size, mlp_ratio):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio)
            for i in range(depth)
        )
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x, x_size):
        h, w = x_size
        b, _, c = x.shape
        out = x
        for block in self.blocks:
            out = block(out, x_size)
        image = out.transpose(1, 2).view(b, c, h, w)
        return self.conv(image).flatten(2).transpose(1, 2) + x


class SwinIR(nn.Module):
    """SwinIR (classical/lightweight layout) with the 'pixelshuffledirect' upsampler of its lightweight
    models: conv_first, RSTBs on the token sequence with LayerNorm, conv_after_body, conv + PixelShuffle.
    H and W must be multiples of the window size (SwinIR pads to them; the SDK's multiple_of does)."""

    def __init__(self, embed_dim=60, depths=(6, 6, 6, 6), num_heads=6, window_size=8, mlp_ratio=2.0, upscale=4):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1))
        self.conv_first = nn.Conv2d(3, embed_dim, 3, 1, 1)
        self.patch_norm = nn.LayerNorm(embed_dim)
        self.layers = nn.ModuleList(RSTB(embed_dim, d, num_heads, window_size, mlp_ratio) for d in depths)
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.upsample = nn.Sequential(nn.Conv2d(embed_dim, 3 * upscale * upscale, 3, 1, 1), nn.PixelShuffle(upscale))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = x - self.mean
        x = self.conv_first(x)
        b, c, h, w = x.shape
        tokens = self.patch_norm(x.flatten(2).transpose(1, 2))
        for layer in self.layers:
            tokens = layer(tokens, (h, w))
        body = self.norm(tokens).transpose(1, 2).view(b, c, h, w)
        x = self.conv_after_body(body) + x
        return self.upsample(x) + self.mean


# ---------------------------------------------------------------- builders
def _seeded(build):
    def builder(**overrides):
        torch.manual_seed(SEED)
        module = build(**overrides)
        with torch.no_grad():
            for prelu in (m for m in module.modules() if isinstance(m, nn.PReLU)):
                # Trained nets end with one slope per channel; a fresh PReLU has 0.25 everywhere.
                prelu.weight.uniform_(0.0, 0.3)
        return module.eval()

    builder.__name__ = build.__name__
    builder.__doc__ = build.__doc__
    return builder


@_seeded
def compact(**overrides) -> nn.Module:
    """Real-ESRGAN Compact (realesr-general-x4v3 / realesr-animevideov3 shape): 64 features, 16 convs,
    PReLU, x4."""
    return SRVGGNetCompact(**{"num_feat": 64, "num_conv": 16, "upscale": 4, **overrides})


@_seeded
def span(**overrides) -> nn.Module:
    """SPAN, 48 features, x4 (spandrel's defaults)."""
    return SPAN(**{"feature_channels": 48, "upscale": 4, **overrides})


@_seeded
def rrdb(**overrides) -> nn.Module:
    """ESRGAN RRDB, a small old-arch community model: 32 filters, 4 blocks, growth 32, x2."""
    return RRDBNet(**{"nf": 32, "nb": 4, "gc": 32, "upscale": 2, **overrides})


@_seeded
def swinir(**overrides) -> nn.Module:
    """A small SwinIR: 48 dims, two RSTBs of two Swin layers, 4 heads, 8x8 windows, MLP x2, x4
    (pixelshuffledirect)."""
    return SwinIR(**{"embed_dim": 48, "depths": (2, 2), "num_heads": 4, "window_size": 8, "upscale": 4, **overrides})


@dataclass(frozen=True)
class Arch:
    """An architecture as the benchmarks run it: its builder and what its export's pipeline is."""

    name: str
    title: str
    scale: int
    multiple_of: int = 1
    pipeline: dict = field(default_factory=dict)

    @property
    def builder(self):
        return globals()[self.name]

    def declared(self) -> dict:
        """The pipeline to declare for its export (public models carry no metadata): RGB in 0..1."""
        found = {"color": "rgb", "value_range": (0.0, 1.0), "scale": self.scale, **self.pipeline}
        if self.multiple_of > 1:
            found["multiple_of"] = self.multiple_of
        return found


ARCHS = {
    "compact": Arch("compact", "Real-ESRGAN Compact (SRVGGNetCompact, 64 features, 16 convs, PReLU, x4)", 4),
    "span": Arch("span", "SPAN (48 features, x4)", 4),
    "rrdb": Arch("rrdb", "ESRGAN RRDB (32 filters, 4 blocks, x2)", 2),
    "swinir": Arch("swinir", "SwinIR, small (48 dims, 2x2 Swin layers, 8x8 windows, x4)", 4, multiple_of=8),
}
