"""The documentation site as a person sees it: readable pages, rendered math, no build noise.

Every check here looks at the smoke build (``tests/_docs.py``) the way a reader
would, most of them in Chromium at 1400 x 1000: no code or output block wider
than its column unless it scrolls, the navbar on one row, math rendered by the
MathJax inside the site, no absolute path of the checkout, a banner that says
the build is a smoke build. ``PPL_VAE_ARTIFACTS=DIR`` keeps a screenshot of
each page looked at.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

import pytest
from _browser import RequestLog, keep_screenshot
from _docs import ROOT

sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import figures  # noqa: E402

TUTORIALS = sorted(p.stem for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.py"))

#: Pages a teacher would project: landing pages, the tutorials with wide tables, an API page.
CONTENT_PAGES = ["index.html", "getting_started.html", "speed.html", "three_answers.html",
                 "cli_reference.html", "tutorials/03_variational_inference.html",
                 "tutorials/04_mcmc_vs_vi.html", "tutorials/11_your_own_model.html",
                 "api/ppl_vae.inference.importance.html"]

DESKTOP = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def site(docs_smoke_build):
    assert docs_smoke_build.returncode == 0, docs_smoke_build.log[-5000:]
    return docs_smoke_build.html


def open_page(chromium, site: Path, page_path: str, viewport=DESKTOP):
    tab = chromium.new_page(viewport=viewport)
    tab.requests = RequestLog(tab, allowed=lambda url: url.startswith("file://"))  # type: ignore[attr-defined]
    tab.goto((site / page_path).resolve().as_uri())
    tab.wait_for_load_state("load")
    return tab


# ----- the built files -------------------------------------------------------------------------

def test_no_page_shows_the_checkout_path(site):
    root = str(ROOT)
    found = [str(page.relative_to(site)) for page in site.rglob("*.html") if root in page.read_text()]
    assert found == [], f"pages with the absolute path {root}: {found}"


def test_every_page_says_it_is_a_smoke_build(site):
    pages = [page for page in site.rglob("*.html")  # the site's pages, not the theme's or the explorer
             if "_static" not in page.parts and page.name != "latent_explorer.html"]
    missing = [str(page.relative_to(site)) for page in pages if "Smoke build" not in page.read_text()]
    assert len(pages) > 20 and missing == []


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_pages_are_clean(site, name):
    """No stderr cell (tqdm's warnings, stray warnings), the setup cell folded away, downloads."""
    text = (site / "tutorials" / f"{name}.html").read_text()
    assert 'class="output stderr"' not in text, f"{name} shows a stderr cell"
    assert "tag_hide-input" in text, f"{name}'s setup cell is not hidden"
    for suffix in ("py", "ipynb"):
        assert f'href="../downloads/{name}.{suffix}"' in text
        assert (site / "downloads" / f"{name}.{suffix}").is_file()


def test_the_gallery_has_a_thumbnail_per_tutorial(site):
    text = (site / "tutorials.html").read_text()
    for name in TUTORIALS:
        assert f'href="tutorials/{name}.html"' in text
        assert (site / "_static" / "thumbs" / f"{name}.png").is_file(), name


def _page_text(path: Path) -> str:
    """A page's text as a reader sees it: tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", path.read_text())).split())


def test_the_text_quotes_the_numbers_its_own_run_printed(site):
    """Tutorial 8's prose (glued by ppl_vae.evaluation.quoting) and its printed table agree, in the
    smoke build as in the full one: the active units per latent size, and the largest size."""
    text = _page_text(site / "tutorials" / "08_latent_dimension.html")
    quoted = re.search(r"Active units \(of all units\): ((?:\d+ of \d+(?:, )?)+)\.", text)
    assert quoted, "tutorial 8's text does not quote the active units"
    printed = re.findall(r"(\d+)/(\d+) +\(\d+ / \d+\)", text)  # the table's "active/L (at 0.1 / 0.001)"
    assert quoted.group(1) == ", ".join(f"{active} of {size}" for active, size in printed)
    assert re.search(rf"In this run the largest model, L = {printed[-1][1]} ?,", text)


def test_the_cli_reference_lists_every_option(site):
    from ppl_vae.cli import build_parser

    text = (site / "cli_reference.html").read_text()
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help") and action.help != argparse.SUPPRESS:
                    assert option in text, f"ppl-vae {name} {option}"


def test_the_readme_and_the_site_quote_the_same_figures():
    """One source: every figures block of the README and of docs/*.md is what the JSON gives."""
    assert figures.stale() == [], "run python docs/_ext/figures.py"
    readme = figures.blocks(ROOT / "README.md")
    site_blocks: dict[str, str] = {}
    for page in sorted((ROOT / "docs").glob("*.md")):
        site_blocks |= figures.blocks(page)
    assert "demo" in readme and "demo" in site_blocks
    for name in readme.keys() & site_blocks.keys():
        assert readme[name] == site_blocks[name], name


def test_a_changed_measurement_makes_the_pages_stale(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    for path in figures.RESULTS.glob("*.json"):
        (results / path.name).write_text(path.read_text().replace('"value": -104.7', '"value": -101.2'))
    monkeypatch.setattr(figures, "RESULTS", results)
    assert "−101.2" in figures.render((ROOT / "README.md").read_text())
    assert ROOT / "README.md" in figures.stale()


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    assert "make test" in "\n".join(lines)  # .ci/run runs exactly the README's test command


# ----- in Chromium -----------------------------------------------------------------------------

@pytest.mark.parametrize("page_path", CONTENT_PAGES)
def test_nothing_is_cut_off(chromium, site, page_path):
    """Every code block, output, table and formula fits its column or scrolls inside it, and the
    column holds 88 columns of code."""
    tab = open_page(chromium, site, page_path)
    tab.wait_for_timeout(300)
    report = tab.evaluate("""() => {
        const article = document.querySelector('article.bd-article');
        const right = article.getBoundingClientRect().right;
        const bad = [];
        for (const el of article.querySelectorAll('pre, div.cell_output, table, mjx-container, img')) {
            if (el.closest('.hide-input') && !el.offsetParent) continue;
            const style = getComputedStyle(el);
            const scrolls = ['auto', 'scroll'].includes(style.overflowX)
                || ['auto', 'scroll'].includes(getComputedStyle(el.parentElement).overflowX);
            const box = el.getBoundingClientRect();
            if ((el.scrollWidth > el.clientWidth + 1 && !scrolls) || box.right > right + 1)
                bad.push(`${el.tagName}.${el.className} ${el.scrollWidth}/${el.clientWidth}`);
        }
        const probe = document.createElement('pre');
        probe.style.cssText = 'position:absolute;visibility:hidden;padding:0;border:0';
        probe.textContent = 'x'.repeat(88);
        article.appendChild(probe);
        const codeWidth = probe.getBoundingClientRect().width;
        probe.remove();
        return {bad, codeWidth, column: article.clientWidth}; }""")
    assert report["bad"] == [], report
    assert report["column"] >= report["codeWidth"] + 40, report
    keep_screenshot(tab, f"site_{page_path.replace('/', '_').replace('.html', '')}.png")
    assert tab.requests.foreign == []
    tab.close()


@pytest.mark.parametrize("page_path", ["index.html", "speed.html", "tutorials/03_variational_inference.html"])
def test_the_navbar_is_one_row_and_shows_the_version(chromium, site, page_path):
    import ppl_vae

    tab = open_page(chromium, site, page_path)
    tops = tab.evaluate("""() => Array.from(document.querySelectorAll(
        '.bd-header .navbar-header-items > *, .bd-header .navbar-nav > li')).filter(e => e.offsetParent)
        .map(e => Math.round(e.getBoundingClientRect().top + e.getBoundingClientRect().height / 2))""")
    assert max(tops) - min(tops) <= 12, tops
    assert f"v{ppl_vae.__version__}" in tab.inner_text(".bd-header")
    tab.close()


@pytest.mark.parametrize("page_path", ["index.html", "getting_started.html", "speed.html",
                                       "three_answers.html", "troubleshooting.html"])
def test_top_level_pages_have_no_empty_sidebar(chromium, site, page_path):
    tab = open_page(chromium, site, page_path)
    sidebar = tab.evaluate("""() => { const s = document.querySelector('.bd-sidebar-primary');
        if (!s || !s.offsetParent) return null;
        return {width: s.getBoundingClientRect().width, text: s.innerText.trim()}; }""")
    assert sidebar is None or sidebar["text"], sidebar
    tab.close()


@pytest.mark.parametrize("page_path", ["three_answers.html", "tutorials/03_variational_inference.html",
                                       "tutorials/04_mcmc_vs_vi.html"])
def test_math_is_rendered_offline(chromium, site, page_path):
    tab = open_page(chromium, site, page_path)
    tab.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20000)
    tab.evaluate("() => MathJax.startup.promise")
    rendered = tab.evaluate("() => document.querySelectorAll('mjx-container svg').length")
    raw = tab.evaluate(r"""() => {
        const walker = document.createTreeWalker(document.querySelector('article'), NodeFilter.SHOW_TEXT);
        const left = [];
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
            if (n.parentElement.closest('pre, code, script, mjx-container, .highlight')) continue;
            if (/\$\$|\\\(|\\\[|\\frac|\\mathrm|\\log|\\mid/.test(n.textContent)) left.push(n.textContent.slice(0, 80));
        }
        return left; }""")
    assert rendered >= 2 and raw == [], raw
    assert tab.requests.foreign == []
    keep_screenshot(tab, f"math_{page_path.replace('/', '_').replace('.html', '')}.png")
    tab.close()


def test_the_smoke_banner_is_visible(chromium, site):
    tab = open_page(chromium, site, "tutorials/08_latent_dimension.html")
    banner = tab.locator(".bd-header-announcement")
    assert banner.is_visible() and "Smoke build" in banner.inner_text()
    tab.close()


def test_the_explorer_is_embedded_at_full_width(chromium, site):
    tab = open_page(chromium, site, "explorer.html")
    tab.wait_for_timeout(800)
    sizes = tab.evaluate("""() => { const f = document.getElementById('latent-explorer');
        const doc = f.contentDocument || null;
        return {frame: f.getBoundingClientRect().width, height: f.getBoundingClientRect().height,
                article: document.querySelector('article').clientWidth}; }""")
    assert sizes["frame"] >= 0.95 * sizes["article"] and sizes["frame"] >= 1000, sizes
    frame = tab.frame_locator("#latent-explorer")
    samples = frame.locator("#samples").bounding_box()
    frame_box = tab.locator("#latent-explorer").bounding_box()
    assert samples["y"] + samples["height"] <= frame_box["y"] + frame_box["height"], "samples cut off"
    keep_screenshot(tab, "site_explorer.png")
    tab.close()
