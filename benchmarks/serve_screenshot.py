"""Screenshot of the person-search page with results (``docs/images/serve.png``, README).

Not a benchmark: serves an index in this process (127.0.0.1, a free port), opens the page in
the system's headless Chromium through Playwright, runs a photo search (or, with ``--attrs``, a
description search) and saves the whole page as a PNG.

    make demo   # runs/demo: a trained CPU model and its gallery index
    python benchmarks/serve_screenshot.py --index runs/demo/gallery_index.npz \\
        --query data/synthetic/query/0001_c2s1_000000_01.jpg --out docs/images/serve.png

A gallery that grows (a folder, e.g. ingested footage) works the same with ``--gallery``;
``--per-track`` ticks "one result per track" and ``--timeline`` then opens "Where else?" of the
first result.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cerberus.search import Gallery
from cerberus.web.app import background_server, create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", "--gallery", dest="gallery", type=str,
                        default="runs/demo/gallery_index.npz",
                        help="an .npz index or a gallery folder")  # fmt: skip
    parser.add_argument("--per-track", action="store_true", help="one result per track")
    parser.add_argument("--timeline", action="store_true", help="open the first result's timeline")
    parser.add_argument("--checkpoint", type=Path, help="default: the index's checkpoint")
    parser.add_argument("--query", type=Path, help="query photo (default: --attrs)")
    parser.add_argument("--attrs", default="gender=female", help='e.g. "gender=female, hat=yes"')
    parser.add_argument("--out", type=Path, default=Path("docs/images/serve.png"))
    parser.add_argument("-k", type=int, default=12)
    parser.add_argument("--width", type=int, default=1366)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    gallery = Gallery.open(args.gallery, args.checkpoint, device="cpu")
    with background_server(create_app(gallery)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        page.get_by_label("Results to show").fill(str(args.k))
        if args.per_track:
            page.locator("#per-track").check()
        if args.query is not None:
            page.set_input_files("#photo-input", str(args.query))
        else:
            for pair in args.attrs.split(","):
                name, value = (x.strip() for x in pair.split("="))
                page.get_by_label(name.replace(".", " "), exact=True).select_option(value)
            page.get_by_role("button", name="Search by description").click()
        page.wait_for_function(
            "() => document.getElementById('status').textContent.includes('results for')"
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('#result-list img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        if args.timeline:
            page.locator("#result-list a.where").first.click()
            page.wait_for_selector("#timeline:not([hidden])")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#timeline img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
        page.evaluate("document.activeElement.blur()")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        print(f"{page.locator('#status').inner_text()} -> {args.out}")
        browser.close()


if __name__ == "__main__":
    main()
