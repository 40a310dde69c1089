"""XNNPACK delegation of the .pte for model architectures edgeship was never tuned on: transformers'
own implementations (installed with litert-torch), built from small configs with random weights.

    .venv/bin/python bench/hf_delegation.py [bert,gpt2,...]

Each model goes through the torch -> .pte route as export does (torch.export with the fused-attention
fast path off, the XNNPACK graph passes, lowering with partitioning around refused nodes), fp32. The
row gives the delegated share of ops, the partitions, the ops left on portable kernels, and the .pte's
largest error against eager PyTorch on one input, relative to the output's largest value (weights are
perturbed by 0.05 so that no output is all zeros). Architecture only: weights cannot be downloaded
here, so nothing is said of accuracy on data.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import torch

from edgeship.convert import torch_pte
from edgeship.convert.base import ConvertOptions
from edgeship.quantize.recipes import get_recipe
from edgeship.runtime.standalone.executorch import Runner


class Logits(torch.nn.Module):
    def __init__(self, model, key: str = "logits"):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, *inputs):
        out = self.model(*inputs)
        return out[self.key] if hasattr(out, "keys") else out[0]


def _image(size: int = 64):
    return torch.randn(1, 3, size, size)


def _ids(n: int = 16):
    return torch.randint(1, 90, (1, n))


def cases() -> dict:
    import transformers as T

    return {
        "bert": lambda: (T.BertForSequenceClassification(T.BertConfig(
            vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            num_labels=3)), (_ids(),)),
        "distilbert": lambda: (T.DistilBertForSequenceClassification(T.DistilBertConfig(
            vocab_size=100, dim=64, n_layers=2, n_heads=4, hidden_dim=128, num_labels=3)), (_ids(),)),
        "gpt2": lambda: (T.GPT2LMHeadModel(T.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4,
                                                        n_positions=32)), (_ids(),)),
        "vit": lambda: (T.ViTForImageClassification(T.ViTConfig(
            image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, num_labels=5)), (_image(32),)),
        "swin": lambda: (T.SwinForImageClassification(T.SwinConfig(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4,
            num_labels=5)), (_image(32),)),
        "mobilevit": lambda: (T.MobileViTForImageClassification(T.MobileViTConfig(image_size=64, num_labels=5)),
                              (_image(),)),
        "convnext": lambda: (T.ConvNextForImageClassification(T.ConvNextConfig(
            hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=5)), (_image(),)),
        "resnet": lambda: (T.ResNetForImageClassification(T.ResNetConfig(
            hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], embedding_size=16, num_labels=5)), (_image(),)),
        "efficientnet": lambda: (T.EfficientNetForImageClassification(T.EfficientNetConfig(
            image_size=64, width_coefficient=1.0, depth_coefficient=0.25, hidden_dim=1280, num_labels=5)),
            (_image(),)),
        "segformer": lambda: (T.SegformerForSemanticSegmentation(T.SegformerConfig(
            num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2],
            decoder_hidden_size=32, num_labels=3)), (_image(),)),
        "wav2vec2": lambda: (T.Wav2Vec2ForSequenceClassification(T.Wav2Vec2Config(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
            conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
            num_labels=3)), (torch.randn(1, 1600),)),
        "whisper_encoder": lambda: (T.WhisperForAudioClassification(T.WhisperConfig(
            d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=16,
            max_source_positions=50, num_labels=3)), (torch.randn(1, 16, 100),)),
    }


def measure(name: str, build, work: Path) -> dict:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model, example = build()
    model = Logits(model.eval()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        with torch_pte.no_fused_attention():
            program = torch.export.export(model, example, strict=False)
        want = model(*example).numpy()
    path = work / f"{name}.pte"
    d = torch_pte.export_pte(program, get_recipe("fp32"), list(example), None, path, ConvertOptions(),
                             source="torch.export").delegation
    got = Runner(path, threads=1).run([e.numpy() for e in example])[0]
    return {"model": name, "delegated": f"{100 * d['coverage']:.1f}% ({d['delegated_ops']}/{d['total_ops']})",
            "partitions": d.get("partitions"), "left_out": d.get("left_out") or {}, "mode": d.get("mode"),
            "lowering_error": d.get("lowering_error"),
            "rel_error": float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30)),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    table = cases()
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(table)
    with TemporaryDirectory(prefix="edgeship-hf-") as tmp:
        for name in names:
            try:
                row = measure(name, table[name], Path(tmp))
            except Exception as e:  # noqa: BLE001  a model that fails is a row, not the end of the run
                row = {"model": name, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
