#!/usr/bin/python3
"""Makes the imaging fixtures: small PNG/JPEG inputs, cv2.resize(INTER_LINEAR) outputs and
mmcv-style normalised tensors. Run by hand with Debian's python3-opencv:

    /usr/bin/python3 tools/reference/imaging.py

Writes tests/GhmGen.Runtime.Tests/Fixtures/Imaging/. The C# tests compare byte for byte.
"""
import hashlib
import json
import os

import cv2
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'GhmGen.Runtime.Tests', 'Fixtures', 'Imaging')


def make_image(rng, width, height):
    """Smooth gradients plus noise plus a few hard edges, uint8 RGB (HWC)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([
        255 * xx / max(width - 1, 1),
        255 * yy / max(height - 1, 1),
        127 + 120 * np.sin((xx + 2 * yy) / 3.0)], axis=-1)
    noise = rng.normal(0, 40, size=(height, width, 3))
    img = base + noise
    img[height // 3: height // 2, width // 4: width // 2] = [250, 5, 128]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_png(name, rgb):
    cv2.imwrite(os.path.join(OUT, name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def read_rgb(name):
    bgr = cv2.imread(os.path.join(OUT, name), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def keep_ratio_size(w, h, scale=(1333, 800)):
    # mmcv.rescale_size / _scale_size
    max_long, max_short = max(scale), min(scale)
    s = min(max_long / max(h, w), max_short / min(h, w))
    return int(w * float(s) + 0.5), int(h * float(s) + 0.5)


def imnormalize(img, mean, std):
    # mmcv.imnormalize (to_rgb already done: img is RGB)
    img = img.copy().astype(np.float32)
    mean = np.float64(np.array(mean).reshape(1, -1))
    stdinv = 1 / np.float64(np.array(std).reshape(1, -1))
    cv2.subtract(img, mean, img)
    cv2.multiply(img, stdinv, img)
    return img


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20260123)
    inputs = {
        'img53x37.png': make_image(rng, 53, 37),
        'img64x48.png': make_image(rng, 64, 48),
        'img7x5.png': make_image(rng, 7, 5),
        'img1x9.png': make_image(rng, 1, 9),
        'img40x61.png': make_image(rng, 40, 61),
    }
    for name, img in inputs.items():
        write_png(name, img)
        assert np.array_equal(read_rgb(name), img)
        img.tofile(os.path.join(OUT, os.path.splitext(name)[0] + '.rgb'))

    # (input, dst width, dst height): down, up, mixed, exact 2x down (OpenCV's INTER_AREA path),
    # integer 3x down, tiny and one-column sources, many row widths for the SIMD/scalar split.
    cases = [
        ('img53x37.png', 29, 20), ('img53x37.png', 97, 71), ('img53x37.png', 80, 30),
        ('img53x37.png', 106, 74), ('img53x37.png', 5, 3), ('img53x37.png', 6, 50),
        ('img53x37.png', 9, 9), ('img53x37.png', 52, 36), ('img53x37.png', 54, 38),
        ('img64x48.png', 32, 24), ('img64x48.png', 21, 16), ('img64x48.png', 128, 96),
        ('img64x48.png', 63, 47), ('img64x48.png', 16, 12),
        ('img7x5.png', 50, 3), ('img7x5.png', 13, 11), ('img7x5.png', 1, 1),
        ('img1x9.png', 4, 20), ('img1x9.png', 1, 4),
        ('img40x61.png', 23, 35), ('img40x61.png', 71, 109),
    ]
    manifest = {'resize': [], 'keep_ratio': [], 'preprocess': [], 'jpeg': []}
    for src, w, h in cases:
        out = cv2.resize(read_rgb(src), (w, h), interpolation=cv2.INTER_LINEAR)
        name = f'{os.path.splitext(src)[0]}_to_{w}x{h}.rgb'
        out.tofile(os.path.join(OUT, name))
        manifest['resize'].append({'input': src, 'width': w, 'height': h, 'expected': name})

    # Real keep-ratio cases at mmdetection's 1333x800: too big to commit, so a SHA-256 of the output.
    for src in ['img53x37.png', 'img40x61.png', 'img7x5.png']:
        img = read_rgb(src)
        w, h = keep_ratio_size(img.shape[1], img.shape[0])
        out = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        manifest['keep_ratio'].append({'input': src, 'width': w, 'height': h,
                                       'sha256': hashlib.sha256(out.tobytes()).hexdigest()})

    # Whole preprocessing (keep-ratio resize to fit (100, 60), normalise, pad to 32) as float32 NCHW.
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    for src in ['img53x37.png', 'img40x61.png']:
        img = read_rgb(src)
        w, h = keep_ratio_size(img.shape[1], img.shape[0], (100, 60))
        resized = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        norm = imnormalize(resized, mean, std)
        ph, pw = (h + 31) // 32 * 32, (w + 31) // 32 * 32
        padded = np.zeros((ph, pw, 3), np.float32)
        padded[:h, :w] = norm
        tensor = np.ascontiguousarray(padded.transpose(2, 0, 1)[None])
        name = f'{os.path.splitext(src)[0]}_preprocessed_100x60.f32'
        tensor.tofile(os.path.join(OUT, name))
        manifest['preprocess'].append({'input': src, 'long_edge': 100, 'short_edge': 60, 'resized_width': w,
                                       'resized_height': h, 'padded_width': pw, 'padded_height': ph,
                                       'scale_x': w / img.shape[1], 'scale_y': h / img.shape[0],
                                       'expected': name})

    # JPEG: libjpeg (cv2) and stb_image may differ slightly; the test reports and bounds the difference.
    img = inputs['img53x37.png']
    cv2.imwrite(os.path.join(OUT, 'img53x37.jpg'), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    # A progressive JPEG too, for the decoder's truncation and corruption tests.
    cv2.imwrite(os.path.join(OUT, 'img64x48_progressive.jpg'), cv2.cvtColor(inputs['img64x48.png'], cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    decoded = read_rgb('img53x37.jpg')
    decoded.tofile(os.path.join(OUT, 'img53x37_jpg_cv2.rgb'))
    manifest['jpeg'].append({'input': 'img53x37.jpg', 'width': 53, 'height': 37, 'expected': 'img53x37_jpg_cv2.rgb'})

    with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    print('opencv', cv2.__version__, 'wrote', len(manifest['resize']), 'resize cases to', os.path.normpath(OUT))


if __name__ == '__main__':
    main()
