# A "1x"-shaped schedule in the paper's form (SGD, linear warm-up, steps at 2/3 and 11/12 of
# training), sized for the small shapes data. `mtpd train --epochs N` rescales the epoch-based
# milestones proportionally.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=100)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=16)
