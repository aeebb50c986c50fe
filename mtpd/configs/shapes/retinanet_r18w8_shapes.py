# Student of the accuracy benchmark (config/bench.yaml): RetinaNet with an eighth-width
# ResNet-18 (stage widths 8-64), a 32-channel FPN and one conv per head branch; far smaller than
# its teachers, so distillation has something to transfer.
_base_ = './retinanet_r18w16_shapes.py'
model = dict(
    backbone=dict(base_channels=8),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1))
