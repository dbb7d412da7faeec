import numpy as np
import pytest

from jobs.toyworld.render import Placed, halves, object_mask, place_pair, place_single, render
from jobs.toyworld.world import ObjectSpec, load_world


@pytest.fixture(scope="module")
def world():
    return load_world()


def test_every_shape_renders_in_its_colour_on_the_background(world):
    for shape in world.objects:
        img = render(world, [Placed(ObjectSpec(shape, "blue", "large", "solid"), 16, 16)])
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        covered = (img.sum(-1) > 0)
        assert 40 < covered.sum() < 32 * 32
        assert tuple(img[16, 16]) == world.colours["blue"] or shape in ("crescent", "hourglass", "semicircle")
        assert tuple(img[0, 0]) == world.background_rgb


def test_shapes_are_distinct(world):
    masks = {s: object_mask(world, Placed(ObjectSpec(s, "red", "large", "solid"), 16, 16)) for s in world.objects}
    for a in world.objects:
        for b in world.objects:
            if a < b:
                assert np.abs(masks[a] - masks[b]).sum() > 20, (a, b)


def test_outline_covers_less_than_solid_and_small_less_than_large(world):
    cover = lambda **kw: object_mask(world, Placed(ObjectSpec(**{"shape": "square", "colour": "red", "size": "large",  # noqa: E731
                                                              "material": "solid", **kw}), 16, 16)).sum()
    assert cover(material="outline") < 0.8 * cover()
    assert cover(size="small") < 0.6 * cover()


def test_single_objects_stay_inside_the_canvas(world):
    rng = np.random.default_rng(0)
    for _ in range(50):
        spec = ObjectSpec("square", "green", "large", "solid")
        (p,) = place_single(world, spec, rng)
        half = world.sizes["large"] / 2
        assert half <= p.cx <= 32 - half and half <= p.cy <= 32 - half


def test_pair_scenes_put_each_object_in_its_half(world):
    rng = np.random.default_rng(1)
    left, right = ObjectSpec("star", "red", "small", "solid"), ObjectSpec("circle", "blue", "small", "solid")
    img = render(world, place_pair(world, left, right, rng))
    l, r = halves(img, world.background_rgb)
    red, blue = np.array(world.colours["red"]), np.array(world.colours["blue"])
    assert (np.abs(l.astype(int) - red).sum(-1) < 30).sum() > 20
    assert (np.abs(r.astype(int) - blue).sum(-1) < 30).sum() > 20
    assert (np.abs(l.astype(int) - blue).sum(-1) < 30).sum() == 0
