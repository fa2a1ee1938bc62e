"""The style encoder's heads and configs (seed 004's image -> style code)."""

from __future__ import annotations

import pytest
import torch

from perception_3dinn.models.keypoint_net import KeypointNet, KeypointNetConfig
from perception_3dinn.models.style_encoder import (
    ShapeModelConfig,
    StyleEncoder,
    StyleEncoderConfig,
)


@pytest.mark.parametrize('head', ['pool', 'flatten'])
def test_heads_give_one_code_per_image(head):
    cfg = StyleEncoderConfig(64, (4, 4, 8), 6, extra_convs=1, head=head, hidden=10)
    enc = StyleEncoder(cfg).eval()
    assert cfg.feature_side == 8
    x = torch.randn(3, 3, 64, 64)
    out = enc(x)
    assert out.shape == (3, 6)
    # each image's code depends on that image only (batch norm in eval mode)
    torch.testing.assert_close(enc(x[1:2]), out[1:2], rtol=1e-5, atol=1e-6)
    convs = [m for m in enc.conv if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 1, 2, 1, 2, 1]


def test_flatten_head_sees_where_features_are():
    """A pooled head is blind to a mirror of its last feature map, the flatten head is not."""
    torch.manual_seed(0)
    for head, sensitive in (('pool', False), ('flatten', True)):
        enc = StyleEncoder(StyleEncoderConfig(16, (4,), 3, head=head, hidden=8)).eval()
        x = torch.randn(1, 3, 16, 16)
        f = enc.conv(x)
        pooled = enc.fc(f.mean(dim=(2, 3))) if head == 'pool' else enc.fc(f)
        mirrored = (enc.fc(f.flip(3).mean(dim=(2, 3))) if head == 'pool'
                    else enc.fc(f.flip(3)))
        assert (not torch.allclose(pooled, mirrored, atol=1e-6)) == sensitive


def test_config_round_trip_and_old_checkpoints():
    cfg = ShapeModelConfig(style=StyleEncoderConfig(head='flatten', extra_convs=2, hidden=32,
                                                    dropout=0.1))
    again = ShapeModelConfig.from_dict(cfg.to_dict())
    assert again.style == cfg.style
    old = cfg.to_dict()
    old['style'] = {'input_size': 128, 'channels': [16, 32, 64, 96, 128], 'style_dim': 8}
    legacy = ShapeModelConfig.from_dict(old).style
    assert (legacy.head, legacy.extra_convs) == ('pool', 0)


def test_keypoint_trunk_starts_as_the_inns_keypoint_features():
    torch.manual_seed(1)
    kcfg = KeypointNetConfig(input_size=64, stem_channels=4, channels=8, depth=2)
    net = KeypointNet(kcfg).eval()
    cfg = StyleEncoderConfig(64, (8, 8), 8, head='flatten', hidden=6, trunk='keypoint',
                             keypoint=kcfg)
    assert cfg.feature_side == 4
    enc = StyleEncoder(cfg).eval()
    x = torch.randn(2, 3, 64, 64)
    assert not torch.allclose(enc.trunk(x), net.hourglass(net.stem(x)))
    enc.init_trunk(net)
    torch.testing.assert_close(enc.trunk(x), net.hourglass(net.stem(x)))
    assert enc(x).shape == (2, 8)
    again = ShapeModelConfig.from_dict(ShapeModelConfig(style=cfg).to_dict()).style
    assert again == cfg and isinstance(again.keypoint, KeypointNetConfig)
    with pytest.raises(ValueError, match='no keypoint trunk'):
        StyleEncoder(StyleEncoderConfig(64, (8, 8), 5)).init_trunk(net)


@pytest.mark.parametrize('bad', [dict(head='mean'), dict(extra_convs=-1), dict(hidden=0),
                                 dict(dropout=1.0), dict(channels=()), dict(input_size=100),
                                 dict(trunk='resnet'), dict(trunk='keypoint')])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        StyleEncoderConfig(**bad)
