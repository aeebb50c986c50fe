# Teacher: RetinaNet with a 3/8-width ResNet-34 (widths 24-192), 80-channel FPN.
_base_ = './retinanet_r18w16_shapes.py'
model = dict(
    backbone=dict(depth=34, base_channels=24),
    neck=dict(in_channels=[24, 48, 96, 192], out_channels=80),
    bbox_head=dict(in_channels=80, feat_channels=80))
