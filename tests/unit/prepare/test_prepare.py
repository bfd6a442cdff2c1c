"""What a user relies on when batchcap prepares a file: small, upright, plain, private, within the body limit."""

from __future__ import annotations

import resource
from io import BytesIO

import pytest
from corpus import P3_SAMPLE, PHOTO_SIZE, RED, p3_icc
from PIL import Image, ImageCms

from batchcap.errors import ConfigError, InputError
from batchcap.prepare import (
    DEFAULT_MAX_PIXELS,
    PrepareSettings,
    base64_wire_size,
    prepare,
    raw_wire_size,
)

DEFAULTS = PrepareSettings()


def decoded(data: bytes) -> Image.Image:
    im = Image.open(BytesIO(data))
    im.load()
    return im


def near(a: tuple[int, ...], b: tuple[int, ...], tol: int = 40) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_phone_photo_is_upright_small_and_carries_no_gps_or_serial(corpus: dict[str, bytes]) -> None:
    data = corpus["phone_portrait.jpg"]
    out = prepare(data, DEFAULTS)
    im = decoded(out.data)
    assert out.prepared
    assert (out.original_width, out.original_height) == PHOTO_SIZE
    assert im.format == "JPEG"
    assert out.mime == "image/jpeg"
    assert (im.width, im.height) == (out.width, out.height)
    assert im.height > im.width, "a portrait photo must come out portrait"
    assert 1024 * 0.95 <= im.height <= 1024
    # The red band is along the top of the upright picture, the blue one along its left edge.
    assert near(im.getpixel((im.width // 2, 5)), RED)
    assert near(im.getpixel((5, im.height // 2)), (20, 20, 220))
    assert "exif" not in im.info
    assert dict(im.getexif()) == {}
    assert not any(key in im.info for key in ("xmp", "photoshop", "comment"))
    assert len(out.data) * 15 <= len(data)
    assert {"oriented", "resized", "stripped"} <= set(out.steps)


def test_keep_metadata_keeps_gps_but_not_the_orientation_already_applied(corpus: dict[str, bytes]) -> None:
    out = prepare(corpus["phone_portrait.jpg"], PrepareSettings(keep_metadata=True))
    im = decoded(out.data)
    exif = im.getexif()
    assert im.height > im.width
    assert exif.get(0x0112, 1) == 1  # applied to the pixels: a viewer must not turn it again
    assert exif.get_ifd(0x8825)[2] == (52.0, 31.0, 12.5)
    assert "stripped" not in out.steps


@pytest.mark.parametrize("max_side", [1024, 512, 100])
def test_long_side_is_at_most_max_side_and_aspect_is_kept(corpus: dict[str, bytes], max_side: int) -> None:
    for name in ("phone_portrait.jpg", "big.bmp", "photo.avif", "line_art.png"):
        out = prepare(corpus[name], PrepareSettings(max_side=max_side))
        assert max(out.width, out.height) <= max_side, name
        assert max(out.width, out.height) >= max_side * 0.95, name
        src = out.original_width / out.original_height
        got = max(out.width, out.height) / min(out.width, out.height)
        assert abs(got - max(src, 1 / src)) < 0.02, name


def test_small_images_are_never_enlarged(corpus: dict[str, bytes]) -> None:
    for name in ("rgba.png", "cmyk.jpg", "gray16.png", "animated.gif", "display_p3.jpg"):
        out = prepare(corpus[name], PrepareSettings(max_side=4096))
        assert (out.width, out.height) == (out.original_width, out.original_height), name


@pytest.mark.parametrize("name", ["tiny.jpg", "web_50k.jpg", "palette.png", "still.webp", "srgb_icc.jpg"])
def test_plain_small_files_go_byte_for_byte(corpus: dict[str, bytes], name: str) -> None:
    data = corpus[name]
    out = prepare(data, DEFAULTS)
    assert out.data == data
    assert not out.prepared
    assert out.steps == ()
    assert out.original_bytes == len(data)
    assert out.mime == out.original_mime


def test_max_side_zero_sends_every_file_as_it_is(corpus: dict[str, bytes]) -> None:
    for name in ("phone_portrait.jpg", "rgba.png", "animated.gif"):
        out = prepare(corpus[name], PrepareSettings(max_side=0))
        assert out.data is corpus[name]
        assert not out.prepared


def test_a_clean_small_photo_with_orientation_is_still_turned(corpus: dict[str, bytes]) -> None:
    """Small enough to pass, but sideways: the orientation alone makes it worth a re-encode."""
    im = Image.new("RGB", (300, 200), RED)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes())
    out = prepare(buf.getvalue(), DEFAULTS)
    assert out.prepared
    assert (out.width, out.height) == (200, 300)
    assert out.steps == ("oriented",)


def test_alpha_is_flattened_on_white(corpus: dict[str, bytes]) -> None:
    out = prepare(corpus["rgba.png"], DEFAULTS)
    im = decoded(out.data)
    assert im.mode == "RGB"
    assert near(im.getpixel((2, 2)), (255, 255, 255), tol=8)  # transparent corner
    assert "flattened" in out.steps


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("cmyk.jpg", "RGB"),
        ("gray16.png", "L"),
        ("palette.png", "P"),
        ("big.bmp", "RGB"),
        ("photo.avif", "RGB"),
    ],
)
def test_output_modes_are_what_every_decoder_takes(corpus: dict[str, bytes], name: str, mode: str) -> None:
    out = prepare(corpus[name], DEFAULTS)
    im = decoded(out.data)
    assert im.mode == mode
    assert im.format in ("JPEG", "PNG")


def test_sixteen_bit_grey_keeps_its_range(corpus: dict[str, bytes]) -> None:
    """The 16-bit ramp is scaled to 8 bits, not clipped to white."""
    im = decoded(prepare(corpus["gray16.png"], DEFAULTS).data)
    lo, hi = im.getextrema()  # type: ignore[misc]
    assert lo < 10
    assert hi > 240
    assert len(im.getcolors(256) or []) > 100


@pytest.mark.parametrize("name", ["animated.gif", "animated.webp", "pages.tiff"])
def test_animations_and_multipage_files_send_their_first_frame(corpus: dict[str, bytes], name: str) -> None:
    out = prepare(corpus[name], DEFAULTS)
    im = decoded(out.data)
    assert getattr(im, "n_frames", 1) == 1
    assert near(im.convert("RGB").getpixel((160, 120)), RED)
    assert "first-frame" in out.steps


def test_heic_is_read_and_sent_as_jpeg(corpus: dict[str, bytes]) -> None:
    out = prepare(corpus["iphone.heic"], DEFAULTS)
    im = decoded(out.data)
    assert out.original_mime == "image/heic"
    assert im.format == "JPEG"
    assert im.height > im.width
    assert max(im.size) <= 1024
    assert near(im.getpixel((im.width // 2, 3)), RED)


def test_a_wide_gamut_profile_is_converted_to_srgb(corpus: dict[str, bytes]) -> None:
    out = prepare(corpus["display_p3.jpg"], DEFAULTS)
    im = decoded(out.data)
    assert "icc_profile" not in im.info
    expected = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), P3_SAMPLE),
        ImageCms.ImageCmsProfile(BytesIO(p3_icc())),
        ImageCms.createProfile("sRGB"),
    )
    assert expected is not None
    want = expected.getpixel((0, 0))
    got = im.getpixel((400, 300))
    assert near(got, want, tol=6)
    assert not near(got, P3_SAMPLE, tol=6), "the numbers must change: P3 orange is outside sRGB"
    assert "srgb" in out.steps


def test_line_art_goes_out_lossless_png(corpus: dict[str, bytes]) -> None:
    out = prepare(corpus["line_art.png"], DEFAULTS)
    assert out.mime == "image/png"
    assert decoded(out.data).format == "PNG"


@pytest.mark.parametrize("overhead", [0, 250])
def test_budget_counts_base64_and_json_and_lowers_quality_first(
    corpus: dict[str, bytes], overhead: int
) -> None:
    wire = base64_wire_size(overhead)
    plain = prepare(corpus["phone_portrait.jpg"], DEFAULTS, wire_size=wire)
    budget = wire(len(plain.data)) * 3 // 4
    out = prepare(corpus["phone_portrait.jpg"], PrepareSettings(max_upload_mb=budget / 1e6), wire_size=wire)
    assert wire(len(out.data)) <= budget
    assert any(s.startswith("quality=") for s in out.steps)
    assert (out.width, out.height) == (plain.width, plain.height)


def test_a_tight_budget_shrinks_the_side_after_the_quality(corpus: dict[str, bytes]) -> None:
    out = prepare(corpus["phone_portrait.jpg"], PrepareSettings(max_upload_mb=0.02))
    assert len(out.data) <= 20_000
    assert "shrunk" in out.steps
    assert max(out.width, out.height) < 1000
    assert decoded(out.data).size == (out.width, out.height)


def test_a_file_over_budget_is_not_passed_through(corpus: dict[str, bytes]) -> None:
    data = corpus["web_50k.jpg"]
    out = prepare(data, PrepareSettings(max_upload_mb=(len(data) - 1) / 1e6), wire_size=raw_wire_size)
    assert out.prepared
    assert len(out.data) < len(data)


def test_a_budget_nothing_fits_is_an_error_saying_so(corpus: dict[str, bytes]) -> None:
    with pytest.raises(InputError, match=r"cannot fit under 0\.0005 MB as sent after re-encoding"):
        prepare(corpus["phone_portrait.jpg"], PrepareSettings(max_upload_mb=0.0005))


def test_base64_wire_size_is_exact() -> None:
    import base64

    for n in range(50):
        assert base64_wire_size(17)(n) == len(base64.b64encode(bytes(n))) + 17


def test_a_decompression_bomb_is_refused_from_the_header(corpus: dict[str, bytes]) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match=r"20000x20000 = 400,000,000 pixels, over the limit of 89,478,485"):
        prepare(corpus["bomb.png"], DEFAULTS)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 50, "the 400 MP image must never be allocated"
    assert DEFAULTS.max_pixels == DEFAULT_MAX_PIXELS == 89_478_485


def test_max_pixels_is_the_users_limit_in_both_directions(corpus: dict[str, bytes]) -> None:
    with pytest.raises(InputError, match=r"12,192,768 pixels, over the limit of 10,000,000"):
        prepare(corpus["phone_portrait.jpg"], PrepareSettings(max_pixels=10_000_000))
    # Above Pillow's own limit (which would warn at open): the bomb's header passes the check; the send is
    # still small because the image is resized (a 1-bit 20000^2 image is 400 MB decoded: not tried here).
    big = Image.new("L", (10000, 9000), 128)  # 90 MP: over Pillow's 89.5 MP warning threshold
    buf = BytesIO()
    big.save(buf, "PNG", compress_level=1)
    out = prepare(buf.getvalue(), PrepareSettings(max_pixels=100_000_000))
    assert max(out.width, out.height) == 1024


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("not_an_image.jpg", "not an image format"),
        ("truncated.jpg", "truncated JPEG"),
        ("empty", "empty file"),
        ("cut_photo", "cannot decode this JPEG"),
    ],
)
def test_undecodable_files_are_input_errors_with_a_reason(
    corpus: dict[str, bytes], name: str, reason: str
) -> None:
    extra = {"empty": b"", "cut_photo": corpus["phone_portrait.jpg"][:200_000]}
    data = extra[name] if name in extra else corpus[name]
    with pytest.raises(InputError, match=reason):
        prepare(data, DEFAULTS)


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="--jpeg-quality"):
        PrepareSettings(jpeg_quality=0)
    with pytest.raises(ConfigError, match="--max-side"):
        PrepareSettings(max_side=-1)


def test_run_config_carries_the_preparation_settings() -> None:
    from batchcap.config import RunConfig
    from batchcap.prepare.settings import DEFAULT_MAX_PIXELS as CONFIG_DEFAULT

    assert CONFIG_DEFAULT == DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    cfg = RunConfig.build(model="m", max_side=512, jpeg_quality=80, keep_metadata=True, max_upload_mb=1.5)
    assert cfg.validate().prepare == PrepareSettings(
        max_side=512, jpeg_quality=80, keep_metadata=True, max_upload_mb=1.5
    )
    for bad in ({"jpeg_quality": 101}, {"max_side": -1}, {"max_upload_mb": -1}, {"max_pixels": 0}):
        with pytest.raises(ConfigError, match="--" + next(iter(bad)).replace("_", "-")):
            RunConfig.build(model="m", **bad).validate()  # type: ignore[arg-type]


def test_below_useful_size_is_what_a_limit_took_away() -> None:
    from batchcap.prepare import USEFUL_SIDE, below_useful_size

    assert USEFUL_SIDE == 336
    assert below_useful_size((4032, 3024), (99, 74))  # --max-upload-mb 0.001
    assert below_useful_size((4032, 3024), (200, 150))  # --max-side 200
    assert not below_useful_size((4032, 3024), (1008, 756))  # the default: plenty
    assert not below_useful_size((4032, 3024), (336, 252))  # exactly the useful size
    assert not below_useful_size((64, 48), (64, 48))  # small already: sent as it is
    assert below_useful_size((300, 200), (150, 100))  # small, and made smaller still
    assert not below_useful_size((300, 200), (300, 200))
