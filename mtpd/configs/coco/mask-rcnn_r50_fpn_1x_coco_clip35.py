# The paper's Mask R-CNN R50 student as the MGD experiments train it: MMDetection's 1x config
# (1333x800, 8 GPUs x 2 images, SGD lr 0.02, momentum 0.9, weight decay 1e-4, steps at epochs 8
# and 11, 500-iteration linear warm-up) with gradients clipped at max-norm 35, as in the
# authors' released MGD settings.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
