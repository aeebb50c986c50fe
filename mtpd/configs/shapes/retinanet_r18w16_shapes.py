# Student: RetinaNet with a quarter-width ResNet-18 (stage widths 16-128) and a 64-channel FPN.
# FPN levels P3-P7 (strides 8-128) with square anchors of twice the stride (2 sizes a cell: the
# shapes are close to square) for 128 px images with objects of 6-100 px: RetinaNet's usual 4x
# stride would leave objects under 32 px to low-quality matches, and 1x stride is too sparse for
# any anchor to overlap an object by IoU 0.5 (box AP 5 on trivial data). Anchors sit in the
# centre of their cells, since the 2x2 and 1x1 maps of P6-P7 would otherwise miss large objects.
_base_ = ['./_base_/shapes_dataset.py', './_base_/shapes_schedule.py',
          './_base_/default_runtime.py']
model = dict(
    type='RetinaNet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=18, base_channels=16, num_stages=4,
                  out_indices=(0, 1, 2, 3), frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  style='pytorch', init_cfg=None),
    neck=dict(type='FPN', in_channels=[16, 32, 64, 128], out_channels=64, start_level=1,
              add_extra_convs='on_input', num_outs=5),
    bbox_head=dict(
        type='RetinaHead', num_classes=12, in_channels=64, stacked_convs=2, feat_channels=64,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=2, scales_per_octave=2,
                              center_offset=0.5, ratios=[1.0], strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                      ignore_iof_thr=-1),
        sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
