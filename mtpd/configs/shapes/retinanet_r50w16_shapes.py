# Teacher: RetinaNet with a quarter-width ResNet-50 (bottleneck outputs 64-512), 96-channel FPN.
_base_ = './retinanet_r18w16_shapes.py'
model = dict(
    backbone=dict(depth=50, base_channels=16),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=96),
    bbox_head=dict(in_channels=96, feat_channels=96))
