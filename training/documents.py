"""Synthetic documents: pages, receipts, screenshots and slides rendered from Debian fonts.

Text comes from the multilingual descriptions that ``stellarium-data`` ships (real prose in
Latin, Cyrillic, Greek, Chinese, Japanese and Korean). Fonts and texts are split so the test
documents use fonts (Liberation, Noto Serif CJK) and texts the training pages never used.
"""

from __future__ import annotations

import functools
import html
import random
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from training.sources import EXTRACT, fetch

CJK_LANGS = ("zh_CN", "zh_TW", "zh_HK", "ja", "ko")
LATIN_LANGS = ("en", "fr", "de", "es", "it", "pt_BR", "nl", "pl", "cs", "sv", "ru", "uk", "bg")


@dataclass(frozen=True)
class FontSet:
    latin: list[str]
    latin_bold: list[str]
    mono: list[str]
    cjk: list[str]  # "path#index"


def font_sets() -> dict[str, FontSet]:
    """Training fonts vs held-out test fonts (val reuses the training fonts)."""
    dj = fetch("fonts-dejavu-core") / "usr/share/fonts/truetype/dejavu"
    lib = fetch("fonts-liberation2") / "usr/share/fonts/truetype/liberation2"
    noto = fetch("fonts-noto-core") / "usr/share/fonts/truetype/noto"
    cjk = fetch("fonts-noto-cjk") / "usr/share/fonts/opentype/noto"
    train = FontSet(
        latin=[str(dj / "DejaVuSans.ttf"), str(dj / "DejaVuSerif.ttf"),
               str(noto / "NotoSans-Regular.ttf"), str(noto / "NotoSerif-Regular.ttf"),
               str(noto / "NotoSans-Italic.ttf")],
        latin_bold=[str(dj / "DejaVuSans-Bold.ttf"), str(noto / "NotoSerif-Bold.ttf"),
                    str(noto / "NotoSans-Bold.ttf")],
        mono=[str(dj / "DejaVuSansMono.ttf")],
        cjk=[f"{cjk / 'NotoSansCJK-Regular.ttc'}#{i}" for i in (0, 1, 2, 3)]
        + [f"{cjk / 'NotoSansCJK-Bold.ttc'}#0"],
    )
    test = FontSet(
        latin=[str(lib / "LiberationSans-Regular.ttf"), str(lib / "LiberationSerif-Regular.ttf")],
        latin_bold=[str(lib / "LiberationSans-Bold.ttf"), str(lib / "LiberationSerif-Bold.ttf")],
        mono=[str(lib / "LiberationMono-Regular.ttf")],
        cjk=[f"{cjk / 'NotoSerifCJK-Regular.ttc'}#{i}" for i in (0, 1, 2)],
    )
    return {"train": train, "val": train, "test": test}


@functools.lru_cache(maxsize=1)
def corpora() -> dict[str, dict[str, list[str]]]:
    """split -> {"latin": paragraphs, "cjk": paragraphs}; split by description folder."""
    base = fetch("stellarium-data") / "usr/share/stellarium"
    dirs = sorted({p.parent for p in base.glob("*/*/description.*.utf8")})
    out: dict[str, dict[str, list[str]]] = {
        s: {"latin": [], "cjk": []} for s in ("train", "val", "test")}
    for i, d in enumerate(dirs):
        split = "test" if i % 5 == 4 else "val" if i % 5 == 3 else "train"
        for p in d.glob("description.*.utf8"):
            lang = p.name[len("description.") : -len(".utf8")]
            group = "cjk" if lang in CJK_LANGS else "latin" if lang in LATIN_LANGS else None
            if group is None:
                continue
            text = html.unescape(re.sub(r"<[^>]+>", " ", p.read_text(errors="replace")))
            for para in re.split(r"\s*\n\s*\n\s*|\s{3,}", text):
                para = re.sub(r"\s+", " ", para).strip()
                if len(para) > 40:
                    out[split][group].append(para)
    return out


@functools.lru_cache(maxsize=512)
def _font(spec: str, size: int) -> ImageFont.FreeTypeFont:
    path, _, idx = spec.partition("#")
    return ImageFont.truetype(path, size, index=int(idx or 0))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int,
          cjk: bool) -> list[str]:
    tokens = list(text) if cjk else text.split(" ")
    sep = "" if cjk else " "
    lines: list[str] = []
    cur = ""
    for tok in tokens:
        cand = cur + sep + tok if cur else tok
        if draw.textlength(cand, font=font) <= width:
            cur = cand
        else:
            if cur:
                lines.append(cur)
            cur = tok
    if cur:
        lines.append(cur)
    return lines


RGB = tuple[int, int, int]


def _colours(rng: random.Random, dark_ok: bool) -> tuple[RGB, RGB]:
    if dark_ok and rng.random() < 0.2:
        bg = tuple(rng.randint(15, 60) for _ in range(3))
        fg = tuple(rng.randint(190, 250) for _ in range(3))
    else:
        bg = tuple(rng.randint(225, 255) for _ in range(3))
        fg = tuple(rng.randint(0, 70) for _ in range(3))
    return bg, fg  # type: ignore[return-value]


def render(rng: random.Random, fonts: FontSet, texts: dict[str, list[str]]) -> Image.Image:
    """One upright synthetic document image, long side about 448 px."""
    kind = rng.choices(["page", "receipt", "screen", "slide"], [5, 2, 2, 1])[0]
    cjk = rng.random() < 0.35
    paras = texts["cjk" if cjk else "latin"]
    body_spec = rng.choice(fonts.cjk if cjk else fonts.latin)
    bold_spec = rng.choice(fonts.cjk if cjk else fonts.latin_bold)
    if kind == "receipt":
        w, h = rng.randint(180, 260), rng.randint(380, 460)
        body_spec = rng.choice(fonts.cjk if cjk else fonts.mono)
    elif kind == "page":
        w, h = rng.randint(300, 340), rng.randint(420, 460)
    else:
        w, h = rng.randint(400, 460), rng.randint(250, 320)
    bg, fg = _colours(rng, dark_ok=kind in ("screen", "slide"))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    size = rng.randint(9, 16) if kind != "slide" else rng.randint(14, 22)
    body = _font(body_spec, size)
    margin = rng.randint(8, 30)
    y = margin
    if kind == "screen":  # title bar + a few buttons make a window
        bar = tuple(max(0, c - rng.randint(20, 60)) for c in bg)
        d.rectangle([0, 0, w, 22], fill=bar)  # type: ignore[arg-type]
        for i in range(3):
            d.ellipse([w - 20 - 18 * i, 6, w - 10 - 18 * i, 16], fill=(200, 80 + 40 * i, 80))
        d.text((8, 4), rng.choice(paras)[:40], font=_font(body_spec, 11), fill=fg)
        y = 30
    if kind in ("page", "slide") or rng.random() < 0.5:  # heading
        head = _font(bold_spec, int(size * rng.uniform(1.3, 2.0)))
        title = rng.choice(paras)[: rng.randint(8, 30)]
        centred = (w - int(d.textlength(title, font=head))) // 2
        x = margin if rng.random() < 0.6 else max(margin, centred)
        d.text((x, y), title, font=head, fill=fg)
        y += int(head.size * 1.6)
    line_h = int(size * rng.uniform(1.2, 1.6))
    bullets = kind == "slide"
    while y < h - margin - line_h:
        para = rng.choice(paras)
        indent = rng.choice([0, 0, size * 2]) if not bullets else size
        lines = _wrap(d, para, body, w - 2 * margin - indent, cjk)[: rng.randint(2, 9)]
        for j, line in enumerate(lines):
            if y >= h - margin - line_h:
                break
            x = margin + (indent if j == 0 or bullets else 0)
            if bullets and j == 0:
                d.ellipse([margin, y + size // 3, margin + size // 3, y + 2 * size // 3], fill=fg)
            if kind == "receipt" and rng.random() < 0.5:
                price = f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}"
                line = line[: max(4, len(line) // 2)]
                d.text((w - margin - d.textlength(price, font=body), y), price, font=body, fill=fg)
            d.text((x, y), line, font=body, fill=fg)
            y += line_h
        y += int(line_h * rng.uniform(0.3, 1.0))
    if kind == "page" and rng.random() < 0.5:  # page number at the bottom
        num = str(rng.randint(1, 300))
        d.text(((w - d.textlength(num, font=body)) / 2, h - margin), num, font=body, fill=fg)
    return im


def render_set(split: str, count: int, seed: int) -> list[Image.Image]:
    rng = random.Random(seed)
    fonts = font_sets()[split]
    texts = corpora()[split]
    return [render(rng, fonts, texts) for _ in range(count)]


__all__ = ["EXTRACT", "render_set", "Path"]
