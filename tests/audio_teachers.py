"""Stand-ins for the audio teachers a user holds, built here (nothing is downloaded).

- `tiny_hubert`: a real transformers HubertModel (hubert-large's layout: layer-norm conv
  front end, stable layer norm, 1024 wide) with one layer and **random weights**, saved as a
  local folder: it exercises the real HuBERT code path, not hubert-large's numbers.
- `standin_wenet_encoder`: a small ONNX with the **exact I/O signature** of Ultralight's
  110 MB wenet `encoder.onnx` (chunk [1,67,80], offset int64 [1], att_cache [3,8,16,128],
  cnn_cache [3,1,512,14] -> output [1,16,512] plus both caches): a conv subsampling (4x) and
  a projection, random weights. It is not a conformer.
"""

from __future__ import annotations

from pathlib import Path


def tiny_hubert(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(
        hidden_size=1024,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=16,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    torch.manual_seed(seed)
    HubertModel(config).eval().save_pretrained(str(folder))
    return folder


def standin_wenet_encoder(path: Path, seed: int = 0, out_width: int = 512) -> Path:
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sub1 = nn.Conv2d(1, 4, 3, stride=2)
            self.sub2 = nn.Conv2d(4, 4, 3, stride=2)
            self.proj = nn.Linear(4 * 19, out_width)

        def forward(self, chunk, offset, att_cache, cnn_cache):
            x = torch.relu(self.sub2(torch.relu(self.sub1(chunk[:, None]))))  # [1,4,16,19]
            x = self.proj(x.permute(0, 2, 1, 3).reshape(1, 16, 4 * 19))
            x = x + 0.0 * offset.float().sum() + 0.0 * att_cache.sum() + 0.0 * cnn_cache.sum()
            return x, att_cache * 1.0, cnn_cache * 1.0

    torch.manual_seed(seed)
    args = (
        torch.zeros(1, 67, 80),
        torch.ones(1, dtype=torch.int64),
        torch.zeros(3, 8, 16, 128),
        torch.zeros(3, 1, 512, 14),
    )
    torch.onnx.export(
        Encoder().eval(),
        args,
        str(path),
        input_names=["chunk", "offset", "att_cache", "cnn_cache"],
        output_names=["output", "r_att_cache", "r_cnn_cache"],
        opset_version=13,
        dynamo=False,
    )
    return path
