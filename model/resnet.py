"""ResNet-18 (He et al., 2016) as torchvision lays it out: the same module names, so that its
ImageNet weights load as they are, and the same initialisation in the same order, so that a seed
gives the same network. Defined here because importing torchvision costs every process that
loads a model about 1.5 s (its operators pull in torch's compiler)."""

from __future__ import annotations

import torch
from torch import nn

BLOCKS_PER_STAGE = (2, 2, 2, 2)
STAGE_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = None
        if stride != 1 or inputs != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet18(nn.Module):
    def __init__(self, classes: int = 1000, last_stride: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inputs = 64
        strides = (1, 2, 2, last_stride)  # last_stride 1: re-identification's finer last map
        for number, (width, blocks, stride) in enumerate(
            zip(STAGE_WIDTHS, BLOCKS_PER_STAGE, strides, strict=True), start=1
        ):
            stage = [BasicBlock(inputs, width, stride)]
            stage += [BasicBlock(width, width, 1) for _ in range(blocks - 1)]
            setattr(self, f"layer{number}", nn.Sequential(*stage))
            inputs = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, 512, h, w), before pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))
