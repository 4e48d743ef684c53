"""Offline stand-ins for what the course downloads in Colab, in the real on-disk formats.

* :func:`write_cifar10` writes CIFAR-10's python batches (pickled dicts of uint8 rows), which
  :func:`vitcourse.data.cifar.load_cifar10` reads exactly as it reads the real download.
* :func:`write_hub_cache` writes a Hugging Face hub cache holding the checkpoints the pretrained
  page downloads, or any timm models under their pretrained tags (DINOv2, CLIP, MAE... for
  tests/test_families.py), with random weights; :func:`write_clip_repo` adds the whole CLIP
  (both towers, tokenizer, preprocessing) that the multimodal page loads with transformers, and
  :func:`write_mae_repo` MAE's encoder and decoder for the masked-pretraining page.
  With ``HF_HOME`` pointing at it and ``HF_HUB_OFFLINE=1`` (:func:`hub_environment`),
  ``timm.create_model(name, pretrained=True)``, ``ViTForImageClassification.from_pretrained(repo)``
  and ``CLIPModel.from_pretrained(repo)`` run their real loading code and find the files in the
  cache instead of on the network.
* :func:`randomised` perturbs a transformers model's weights (random ones, not its
  initialisation's symmetries, are what a conversion must carry over); :func:`with_old_names`
  spells a state dict as transformers 4 did, as the hub's checkpoints still are.

Only the bytes are stand-ins: file names, layouts, configs and key names are the real ones, so
a code path that works here differs from Colab's only in what the weights have learned.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vitcourse.data.cifar import CIFAR10_CLASSES

# ---- CIFAR-10 ----------------------------------------------------------------------------------


def write_cifar10(root: str | os.PathLike, per_batch: int = 4, test: int = 6, seed: int = 0) -> dict[str, dict]:
    """Write ``root/cifar-10-batches-py/`` with five training batches of ``per_batch`` images,
    a test batch of ``test`` images and ``batches.meta``; return what each batch holds."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", test)]:
        entry = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),  # rows in (C, H, W) order
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        written[name] = entry
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}, f)
    return written


# ---- the Hugging Face hub ----------------------------------------------------------------------

TIMM_CHECKPOINT = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # what the pretrained page loads via timm
HF_CHECKPOINT = "google/vit-base-patch16-224"  # ... and via transformers
_COMMIT = "0" * 40  # the revision "main" resolves to in the cache


def _write_repo(hub: Path, repo_id: str, files: dict[str, Callable[[Path], None]]) -> None:
    """One repository in the hub cache layout: ``models--org--name/{refs/main, snapshots/<commit>/}``."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / _COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(_COMMIT)
    for name, write in files.items():
        write(snapshot / name)


def _safetensors_writer(module: torch.nn.Module) -> Callable[[Path], None]:
    from safetensors.torch import save_file

    state = {key: value.contiguous() for key, value in module.state_dict().items()}
    return lambda path: save_file(state, str(path), metadata={"format": "pt"})


def timm_repo(name: str) -> str:
    """The hub repository timm downloads ``name``'s weights from (its pretrained config's
    ``hf_hub_id``: ``timm/<name>``, or another tag's, as for the QuickGELU CLIPs)."""
    from timm.models import get_pretrained_cfg

    repo = get_pretrained_cfg(name).hf_hub_id
    return repo + name if repo.endswith("/") else repo


def write_hub_cache(home: str | os.PathLike, timm_name: str | tuple[str, ...] = TIMM_CHECKPOINT,
                    hf_repo: str | None = HF_CHECKPOINT, seed: int = 0, **timm_overrides) -> Path:
    """Write the hub cache under ``home`` (use it as ``HF_HOME``); return ``home``.

    ``timm_name`` (one name with its pretrained tag, or several) is stored as timm stores it
    (repository ``timm/<name>``, ``model.safetensors``), built by ``timm.create_model(name,
    **timm_overrides)``: with ``depth=1`` the files stay small, and ``from_pretrained_timm(name,
    depth=1)`` loads them. ``hf_repo`` (skipped when None) gets a ``config.json`` with ViT-B/16's
    architecture and ``ViTConfig``'s defaults otherwise (``layer_norm_eps=1e-12`` among them),
    and ``model.safetensors``.
    """
    import timm

    hub = Path(home) / "hub"
    torch.manual_seed(seed)
    for name in (timm_name,) if isinstance(timm_name, str) else timm_name:
        reference = timm.create_model(name, pretrained=False, **timm_overrides)
        _write_repo(hub, timm_repo(name), {"model.safetensors": _safetensors_writer(reference)})
    if hf_repo is not None:
        from transformers import ViTConfig, ViTForImageClassification

        config = ViTConfig(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072, num_labels=1000)
        model = ViTForImageClassification(config)
        _write_repo(hub, hf_repo, {"config.json": lambda path: path.write_text(config.to_json_string()),
                                   "model.safetensors": _safetensors_writer(model)})
    return Path(home)


CLIP_CHECKPOINT = "openai/clip-vit-base-patch32"  # what the multimodal page loads via transformers


def write_clip_repo(home: str | os.PathLike, repo_id: str = CLIP_CHECKPOINT, seed: int = 0) -> Path:
    """Write a tiny random CLIP as ``repo_id`` into the hub cache under ``home``; return ``home``.

    ``CLIPModel.from_pretrained(repo_id)`` and ``CLIPProcessor.from_pretrained(repo_id)`` then
    load it offline: the files are what transformers' ``save_pretrained`` writes (``config.json``,
    ``model.safetensors``, the tokenizer's and the image processor's files). The towers are small
    (two blocks of width 64, patch 32, a 32-dimensional joint space) and the tokenizer is CLIP's
    byte-level BPE with no merges: its vocabulary holds CLIP's base symbols (every byte, alone
    and ending a word) and the two special tokens, so a word becomes one token per character.
    What the stand-in predicts means nothing; a page that loads it can tell by its size.
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    characters = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 byte-level symbols
    vocabulary = [*characters, *(c + "</w>" for c in characters), "<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={token: i for i, token in enumerate(vocabulary)}, merges=[])
    small = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4)
    text = dict(small, vocab_size=len(vocabulary), bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=1)  # CLIP's pad id, as in its config
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=dict(small, patch_size=32), projection_dim=32))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
    _write_repo(Path(home) / "hub", repo_id, {})
    snapshot = Path(home) / "hub" / ("models--" + repo_id.replace("/", "--")) / "snapshots" / _COMMIT
    model.save_pretrained(snapshot)
    processor.save_pretrained(snapshot)
    return Path(home)


MAE_CHECKPOINT = "facebook/vit-mae-base"  # what the masked-pretraining page loads via transformers


def write_mae_repo(home: str | os.PathLike, repo_id: str = MAE_CHECKPOINT, seed: int = 0) -> Path:
    """Write a tiny random MAE, encoder and decoder, as ``repo_id`` into the hub cache under
    ``home``; return ``home``.

    ``ViTMAEForPreTraining.from_pretrained(repo_id)`` then loads it offline from what
    ``save_pretrained`` writes (``config.json``, ``model.safetensors``). The layout is the real
    checkpoint's (224 px, patch 16, 75% of the patches hidden, pixel targets, ``layer_norm_eps``
    1e-12 as the hub's config says) at a small width: an encoder of two blocks of width 64, a
    decoder of one block of width 32. A page that loads it can tell by its size.
    """
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                          decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=4,
                          decoder_intermediate_size=128, image_size=224, patch_size=16, mask_ratio=0.75,
                          norm_pix_loss=False, layer_norm_eps=1e-12)
    torch.manual_seed(seed)
    model = ViTMAEForPreTraining(config)
    _write_repo(Path(home) / "hub", repo_id, {})
    model.save_pretrained(Path(home) / "hub" / ("models--" + repo_id.replace("/", "--")) / "snapshots" / _COMMIT)
    return Path(home)


def randomised(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """``model`` in eval mode with every weight moved by N(0, 0.05^2) noise (a layer-scale
    ``lambda1`` set uniformly in [0.5, 1.5] instead, away from its initial constant)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("lambda1"):
                param.uniform_(0.5, 1.5)
            else:
                param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def with_old_names(state: dict[str, torch.Tensor], renames: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """``state`` with each key's (new, old) name parts replaced in order: transformers 5's names
    spelt as transformers 4's, which the hub's checkpoints use."""
    old = {}
    for key, value in state.items():
        for new_name, old_name in renames:
            key = key.replace(new_name, old_name)
        old[key] = value
    return old


def hub_environment(home: str | os.PathLike) -> dict[str, str]:
    """Environment variables that make a new process read the hub from ``home`` and never the network."""
    return {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
