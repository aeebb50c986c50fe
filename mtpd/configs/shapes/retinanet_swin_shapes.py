# Heterogeneous teacher: RetinaNet with a small Swin Transformer (embed 32, windows of 4) and a
# 96-channel FPN, run at its own input resolution (160 px instead of the student's 128 px).
_base_ = './retinanet_r18w16_shapes.py'
image_size = (160, 160)
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[64.0, 64.0, 64.0]),
    backbone=dict(_delete_=True, type='SwinTransformer', embed_dims=32, depths=[2, 2, 2, 2],
                  num_heads=[1, 2, 4, 8], window_size=4, mlp_ratio=4, qkv_bias=True,
                  drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.1, patch_norm=True,
                  out_indices=(0, 1, 2, 3), with_cp=False, convert_weights=False,
                  init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=96),
    bbox_head=dict(in_channels=96, feat_channels=96))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
