"""Checkpoint layouts of the public GCD codebases as data: key names, nesting, shape rules.

Shapes are written with the sizes' names (``D`` width, ``H`` MLP hidden, ...) and filled with
tiny sizes by the tests; the real sizes are in the comments.
"""

from __future__ import annotations

# DINO ViT blocks (facebookresearch/dino vision_transformer.py; the GCD line copies it as
# models/vision_transformer.py): per block i
VIT_BLOCK = {
    "norm1.weight": ("D",),
    "norm1.bias": ("D",),
    "attn.qkv.weight": ("3D", "D"),
    "attn.qkv.bias": ("3D",),
    "attn.proj.weight": ("D", "D"),
    "attn.proj.bias": ("D",),
    "norm2.weight": ("D",),
    "norm2.bias": ("D",),
    "mlp.fc1.weight": ("4D", "D"),
    "mlp.fc1.bias": ("4D",),
    "mlp.fc2.weight": ("D", "4D"),
    "mlp.fc2.bias": ("D",),
}
# DINO ViT-B/16: D = 768, 12 blocks, p = 16, N = 196 patches at 224 px
VIT_TOP = {
    "cls_token": (1, 1, "D"),
    "pos_embed": (1, "1+N", "D"),
    "patch_embed.proj.weight": ("D", 3, "p", "p"),
    "patch_embed.proj.bias": ("D",),
    "norm.weight": ("D",),
    "norm.bias": ("D",),
}
# DINOv2 with registers (facebookresearch/dinov2 dinov2/models/vision_transformer.py, the
# vitb14_reg4 SelEx loads in config.py's dinov2_vitb14_reg4_pretrain.pth): D = 768, p = 14,
# N = 1369 at 518 px, R = 4 registers without positions, layer scale per block
DINOV2_TOP = VIT_TOP | {"register_tokens": (1, "R", "D"), "mask_token": (1, "D")}
DINOV2_BLOCK = VIT_BLOCK | {"ls1.gamma": ("D",), "ls2.gamma": ("D",)}

# DINOHead(in_dim, out_dim, nlayers=3, hidden_dim=2048, bottleneck_dim=256) of
# sgvaze/generalized-category-discovery models/vision_transformer.py, saved by
# methods/contrastive_training/contrastive_training.py as model_proj_head.pt (out = 65536);
# CMS's img_projection_head (sua-choi/CMS models/dino.py) is the same class with out = D
DINO_HEAD = {
    "mlp.0.weight": ("H", "D"),
    "mlp.0.bias": ("H",),
    "mlp.2.weight": ("H", "H"),
    "mlp.2.bias": ("H",),
    "mlp.4.weight": ("B", "H"),
    "mlp.4.bias": ("B",),
    "last_layer.weight_g": ("O", 1),
    "last_layer.weight_v": ("O", "B"),
}


def vit_keys(depth: int, top: dict = VIT_TOP, block: dict = VIT_BLOCK) -> dict:
    """Every key of a ViT state dict with its shape rule."""
    out = dict(top)
    for i in range(depth):
        out.update({f"blocks.{i}.{k}": v for k, v in block.items()})
    return out


def shape(rule: tuple, sizes: dict) -> tuple[int, ...]:
    """A shape rule with its named sizes filled in (``"3D"`` = 3 x D, ``"1+N"`` = 1 + N)."""
    out = []
    for dim in rule:
        if isinstance(dim, int):
            out.append(dim)
        elif dim.startswith("1+"):
            out.append(1 + sizes[dim[2:]])
        elif dim == "S-2pad":
            out.append(sizes["S"] - 2 * sizes["pad"])
        elif dim[0].isdigit():
            out.append(int(dim[0]) * sizes[dim[1:]])
        else:
            out.append(sizes[dim])
    return tuple(out)


# SPTNet prompters (Visual-AI/SPTNet prompters.py), S = image size (224), pad = 30 for
# prompt_type 'all'; train_spt.py saves Sequential(prompter, Sequential(backbone, DINOHead))
SPTNET_PATCH_PROMPTER = {"0.patch": (1, 3, "S", "S")}
SPTNET_ALL_PROMPTER = {
    "0.0.pad_up": (1, 3, "pad", "S"),
    "0.0.pad_down": (1, 3, "pad", "S"),
    "0.0.pad_left": (1, 3, "S-2pad", "pad"),
    "0.0.pad_right": (1, 3, "S-2pad", "pad"),
    "0.1.patch": (1, 3, "S", "S"),
}

# CLIP's image encoder (openai/CLIP clip/model.py VisionTransformer; GET vendors it as
# clip/model.py and saves the whole CLIP model as 'backbone', so these sit under 'visual.').
# ViT-B/16: W = 768, p = 16, N = 196, E = 512 (the joint embedding), 12 resblocks
CLIP_VISUAL_TOP = {
    "conv1.weight": ("W", 3, "p", "p"),
    "class_embedding": ("W",),
    "positional_embedding": ("1+N", "W"),
    "ln_pre.weight": ("W",),
    "ln_pre.bias": ("W",),
    "ln_post.weight": ("W",),
    "ln_post.bias": ("W",),
    "proj": ("W", "E"),
}
CLIP_RESBLOCK = {
    "attn.in_proj_weight": ("3W", "W"),
    "attn.in_proj_bias": ("3W",),
    "attn.out_proj.weight": ("W", "W"),
    "attn.out_proj.bias": ("W",),
    "ln_1.weight": ("W",),
    "ln_1.bias": ("W",),
    "mlp.c_fc.weight": ("4W", "W"),
    "mlp.c_fc.bias": ("4W",),
    "mlp.c_proj.weight": ("W", "4W"),
    "mlp.c_proj.bias": ("W",),
    "ln_2.weight": ("W",),
    "ln_2.bias": ("W",),
}


def clip_visual_keys(layers: int) -> dict:
    out = dict(CLIP_VISUAL_TOP)
    for i in range(layers):
        out.update({f"transformer.resblocks.{i}.{k}": v for k, v in CLIP_RESBLOCK.items()})
    return out
