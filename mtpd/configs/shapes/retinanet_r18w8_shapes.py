# Student of the accuracy benchmark (config/bench.yaml): RetinaNet with an eighth-width
# ResNet-18 (stage widths 8-64), a 32-channel FPN and one conv per head branch; far smaller than
# its teachers, so distillation has something to transfer.
_base_ = './retinanet_r18w16_shapes.py'
model = dict(
    backbone=dict(base_channels=8),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1))
# A 25-iteration warm-up: 7% of a 6-epoch stage of the benchmark's 480 images, nearer the
# paper's 500 of a 1x COCO schedule's 88k iterations (0.6%) than the shapes default's 100 (28%);
# every method of the benchmark trains this student, so the warm-up a restarted stage repeats
# is no larger than it has to be.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=25),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
