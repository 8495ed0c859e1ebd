"""The nextword language model: a small Llama-style decoder (RMSNorm, RoPE, SwiGLU, tied
embeddings). The ONNX graph in export.py reproduces exactly this arithmetic, with a KV cache."""
import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab_size: int = 8192
    d_model: int = 320
    n_layers: int = 8
    n_heads: int = 5
    d_ff: int = 864
    max_positions: int = 128
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_dict(d) -> "Config":
        return Config(**d)


# A block's linear layers grouped by the input they read: each group is one MatMulNBits node
# of the export, its parts' rows stacked in this order, named "l<layer>_<group>".
LINEAR_GROUPS = {"qkv": ("wq", "wk", "wv"), "wo": ("wo",), "gate_up": ("w_gate", "w_up"), "w_down": ("w_down",)}


def checkpoint(model: "LM", step: int, tokens_seen: int, history: list) -> dict:
    """What train.py saves and resumes from: bf16 weights, the config, the progress so far."""
    return {
        "model": {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()},
        "config": json.loads(model.cfg.to_json()),
        "step": step,
        "tokens_seen": tokens_seen,
        "history": history,
    }


TINY = Config(vocab_size=512, d_model=64, n_layers=2, n_heads=2, d_ff=160, max_positions=128)


def rope_tables(cfg: Config):
    """cos/sin tables [max_positions, head_dim] in the rotate-half convention."""
    half = cfg.head_dim // 2
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, half, dtype=torch.float64) / half))
    ang = torch.arange(cfg.max_positions, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().float(), ang.sin().float()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.attn_norm = RMSNorm(d, cfg.norm_eps)
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, d, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.ffn_norm = RMSNorm(d, cfg.norm_eps)
        self.w_gate = nn.Linear(d, cfg.d_ff, bias=False)
        self.w_up = nn.Linear(d, cfg.d_ff, bias=False)
        self.w_down = nn.Linear(cfg.d_ff, d, bias=False)

    def forward(self, x, cos, sin):
        b, s, d = x.shape
        h, hd = self.cfg.n_heads, self.cfg.head_dim
        y = self.attn_norm(x)
        q = self.wq(y).view(b, s, h, hd).transpose(1, 2)
        k = self.wk(y).view(b, s, h, hd).transpose(1, 2)
        v = self.wv(y).view(b, s, h, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.wo(a.transpose(1, 2).reshape(b, s, d))
        y = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(y)) * self.w_up(y))


class LM(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        cos, sin = rope_tables(cfg)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        # Scaled init of residual projections (GPT-2): keeps the residual stream's variance flat.
        for blk in self.blocks:
            for lin in (blk.wo, blk.w_down):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, ids):
        s = ids.shape[1]
        cos, sin = self.cos[:s][None, None], self.sin[:s][None, None]
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        return self.norm(x) @ self.embed.weight.t()
