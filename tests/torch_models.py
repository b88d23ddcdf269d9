"""Small real PyTorch models (and factories of library models) for the torch adapter tests.

Everything is built locally with random weights: no downloads (``weights=None``, ``pretrained=False``,
``encoder_weights=None``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

#: Set by :func:`rebuild_canary` when a pickled :class:`CanaryModule` is unpickled.
CANARY_RUNS: list[str] = []


class LinearNet(nn.Module):
    """One nn.Linear, three features in, two out: the smallest model every file format can hold."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The linear map."""
        return self.linear(x)


class TinyMLP(nn.Module):
    """Tabular classifier: [B, F] -> [B, C]."""

    def __init__(self, in_features: int = 6, hidden: int = 16, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(0.1))
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.body(features))


class WideMLP(nn.Module):
    """[B, 256] -> [B, 4] through a 256x1024 hidden layer (about 1 MiB of float32 weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(256, 1024)
        self.out = nn.Linear(1024, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores."""
        return self.out(torch.relu(self.hidden(x)))


class TinyConvNet(nn.Module):
    """Image classifier with BatchNorm (buffers): [B, C, H, W] -> [B, K]."""

    def __init__(self, in_channels: int = 4, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.classifier = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.classifier(self.features(x).flatten(1))


class SequenceLSTM(nn.Module):
    """Per-step tagger over (batch, time, features): [B, T, F] -> [B, T, C]."""

    def __init__(self, n_features: int = 5, hidden: int = 8, num_classes: int = 3, batch_first: bool = True) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, batch_first=batch_first)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        """Per-step logits."""
        out, _ = self.lstm(series)
        return self.head(out)


class StrictUNet(nn.Module):
    """A U-Net-like net with 5 poolings and additive skips: height/width must be multiples of 32."""

    def __init__(self, in_channels: int = 3, classes: int = 2, depth: int = 5) -> None:
        super().__init__()
        self.depth = depth
        self.inc = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.out = nn.Conv2d(4, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits."""
        h = self.inc(x)
        skips: list[torch.Tensor] = []
        for _ in range(self.depth):
            skips.append(h)
            h = self.pool(h)
        for index in range(len(skips) - 1, -1, -1):
            h = self.up(h) + skips[index]
        return self.out(h)


class DictOutputNet(nn.Module):
    """Returns a nested dict: ``logits`` [B, 2] and ``aux.mask`` [B, 1, H, W]."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.mask = nn.Conv2d(4, 1, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        """Logits and an auxiliary mask."""
        h = torch.relu(self.conv(x))
        return {"logits": self.fc(h.mean((2, 3))), "aux": {"mask": self.mask(h)}}


class TupleOutputNet(nn.Module):
    """Returns (segmentation [B, 3, H, W], score [B, 1])."""

    def __init__(self, in_channels: int = 2) -> None:
        super().__init__()
        self.seg = nn.Conv2d(in_channels, 3, 3, padding=1)
        self.score = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Segmentation logits and a scalar score per sample."""
        seg = self.seg(x)
        return seg, self.score(seg.mean((2, 3)))


class TwoInputNet(nn.Module):
    """Image [B, C, H, W] plus tabular side input [B, F] -> [B, K]."""

    def __init__(self, in_channels: int = 3, side_features: int = 4, num_classes: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.side = nn.Linear(side_features, 6)
        self.head = nn.Linear(6, num_classes)

    def forward(self, image: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """Logits of image and side features combined."""
        return self.head(self.conv(image).mean((2, 3)) + self.side(side))


class DictInputNet(nn.Module):
    """Takes one dict argument ``batch`` with ``image`` [B, C, H, W] (torchgeo-style)."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-pixel logits."""
        return self.conv(batch["image"])


class TokenClassifier(nn.Module):
    """[B, T] int64 token ids below ``vocab`` -> [B, classes]: embedding, mean over the tokens, linear head."""

    def __init__(self, vocab: int = 100, width: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of the pooled tokens."""
        return self.head(self.embed(x).mean(1))


class TiedEmbeddingLM(nn.Module):
    """Token model whose output layer shares the embedding weight: [B, T] int64 -> [B, T, V]."""

    def __init__(self, vocab: int = 50, dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, vocab, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits."""
        return self.out(torch.tanh(self.proj(self.embed(tokens))))


class RaisingNet(nn.Module):
    """A forward that always fails."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raise."""
        raise ValueError(f"boom: cannot handle {tuple(x.shape)}")


class NaNNet(nn.Module):
    """Returns NaN everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NaN logits."""
        return self.fc(x) * float("nan")


class MixedOutputNet(nn.Module):
    """Returns a tensor, None and a string."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None, str]:
        """Logits plus non-tensor leaves."""
        return self.fc(x), None, "label"


class BFloat16OutputNet(nn.Module):
    """Returns its logits as bfloat16."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """bfloat16 logits."""
        return self.fc(x).to(torch.bfloat16)


class NoLayerNet(nn.Module):
    """Nothing to infer an input from."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU."""
        return torch.relu(x)


class LitClassifier(L.LightningModule):
    """A LightningModule with saved hyperparameters and an example input array."""

    def __init__(
        self, in_features: int = 7, num_classes: int = 4, lr: float = 0.01, run_dir: Path | None = None
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = nn.Sequential(nn.Linear(in_features, 12), nn.ReLU(), nn.Linear(12, num_classes))
        self.example_input_array = torch.zeros(2, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.model(x)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Cross-entropy on random targets."""
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Plain SGD."""
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def rebuild_canary(marker: str) -> nn.Module:
    """What unpickling a :class:`CanaryModule` runs: it leaves a file and a global as evidence."""
    Path(marker).write_text("unpickled")
    CANARY_RUNS.append(marker)
    return TinyMLP()


class CanaryModule(TinyMLP):
    """A module whose unpickling runs :func:`rebuild_canary` (arbitrary code, as a malicious pickle would)."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Unpickle by calling rebuild_canary(marker)."""
        return rebuild_canary, (self.marker,)


# --- factories usable as model_class (library models, no downloads) ----------------------------------------------


def torchvision_resnet18(num_classes: int = 1000) -> nn.Module:
    """torchvision ResNet-18, random weights."""
    import torchvision

    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


def torchgeo_resnet18(in_chans: int = 13, num_classes: int = 1000) -> nn.Module:
    """torchgeo ResNet-18 for multispectral input, random weights."""
    import torchgeo.models

    return torchgeo.models.resnet18(weights=None, in_chans=in_chans, num_classes=num_classes)


def torchgeo_vit_small(in_chans: int = 5, num_classes: int = 10) -> nn.Module:
    """torchgeo ViT-S/16 at its fixed 224x224 input, random weights."""
    import torchgeo.models

    return torchgeo.models.vit_small_patch16_224(weights=None, in_chans=in_chans, num_classes=num_classes)


def smp_unet(in_channels: int = 3, classes: int = 2) -> nn.Module:
    """segmentation_models_pytorch U-Net with a ResNet-18 encoder, random weights."""
    import segmentation_models_pytorch as smp

    return smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=in_channels, classes=classes)


def timm_resnet18(in_chans: int = 4, num_classes: int = 1000) -> nn.Module:
    """timm ResNet-18 at 4 input channels, random weights."""
    import timm

    return timm.create_model("resnet18", pretrained=False, in_chans=in_chans, num_classes=num_classes)


class OpticalSarNet(nn.Module):
    """Two image inputs with different band sets: optical [B, 4, H, W] and sar [B, 2, H, W] -> per-pixel logits."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.optical_conv = nn.Conv2d(4, 8, 3, padding=1)
        self.sar_conv = nn.Conv2d(2, 8, 3, padding=1)
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        """Logits of both sensors' features added."""
        return self.head(self.optical_conv(optical) + self.sar_conv(sar))


class WidthHungryNet(nn.Module):
    """A 1x1 conv; on real tensors wider than 64 px its forward asks the CPU allocator for 64 TiB, which fails."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Allocates for real (no shape-only run) when wider than 64 px: a genuine out-of-memory."""
        if x.shape[-1] > 64 and x.device.type != "meta" and not isinstance(x, torch._subclasses.FakeTensor):
            torch.empty(2**44, device=x.device)
        return self.conv(x)
