# RetinaNet with a Swin-S backbone (the paper's strongest RetinaNet teacher). MMDetection's zoo
# has a Swin-T RetinaNet config but neither its weights nor a Swin-S one: this is the Swin-T
# config with Swin-S depths and ImageNet weights, trained by the pipeline (12 epochs).
_base_ = 'mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py'
pretrained = 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_small_patch4_window7_224.pth'  # noqa
model = dict(
    backbone=dict(depths=[2, 2, 18, 2], drop_path_rate=0.3,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
