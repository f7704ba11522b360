"""The documentation site: a smoke build is clean, complete, and works in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from _browser import RequestLog
from _docs import ROOT, missing_docs_tools, smoke_environment, sphinx_command

import ppl_vae
import ppl_vae.evaluation
import ppl_vae.inference
import ppl_vae.models

TUTORIALS = sorted(p.stem for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.py"))

#: A tutorial's row in tutorials/README.md; its last cell lists the figures.
README_ROW = re.compile(r"^\| `(\d\d_\w+)\.py` \|.*\|([^|]*)\|$", re.M)


def test_the_smoke_build_is_clean(docs_smoke_build):
    assert docs_smoke_build.returncode == 0, docs_smoke_build.log[-5000:]


def test_every_tutorial_is_a_page_with_its_figures(docs_smoke_build):
    listed = {name: figures.count(".png`") for name, figures in
              README_ROW.findall((ROOT / "tutorials" / "README.md").read_text())}
    assert sorted(listed) == TUTORIALS, "tutorials/README.md's table and tutorials/ disagree"
    for name in TUTORIALS:
        page = docs_smoke_build.html / "tutorials" / f"{name}.html"
        assert page.is_file(), name
        images = re.findall(r'<img [^>]*src="([^"]+\.png)"', page.read_text())
        assert len(images) >= listed[name], (name, images)


def test_the_api_reference_documents_every_public_name(docs_smoke_build):
    ids = set()
    for page in (docs_smoke_build.html / "api").glob("*.html"):
        ids |= set(re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', page.read_text()))
    for package in (ppl_vae, ppl_vae.models, ppl_vae.inference, ppl_vae.evaluation):
        for name in package.__all__:
            assert any(found.startswith("ppl_vae.") and found.endswith(f".{name}") for found in ids), \
                f"{package.__name__}.{name} is not documented"


def test_the_site_holds_the_explorer(docs_smoke_build):
    assert 'id="payload"' in (docs_smoke_build.html / "latent_explorer.html").read_text()
    assert 'src="latent_explorer.html"' in (docs_smoke_build.html / "explorer.html").read_text()


def test_a_broken_reference_to_the_package_fails_the_build(tmp_path):
    """nitpicky + -W: a docstring or page naming a ppl_vae object that does not exist is an error,
    while a name exported by a package (ppl_vae.inference.elbo) resolves."""
    reason = missing_docs_tools()
    if reason:
        pytest.skip(reason)
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "docs" / "conf.py", source / "conf.py")
    for folder in ("_ext", "_templates", "_static"):
        shutil.copytree(ROOT / "docs" / folder, source / folder)
    (source / "index.md").write_text(
        "# Check\n\n{func}`ppl_vae.inference.elbo` and {func}`ppl_vae.inference.no_such_estimator`\n\n"
        "```{eval-rst}\n.. autofunction:: ppl_vae.inference.importance.elbo\n```\n")
    # Only this page: the generated API pages would take half a minute and prove nothing more.
    command = sphinx_command(source, tmp_path / "out") + [
        "-D", "exclude_patterns=api,_ext,_templates,_static,conf.py,cli_reference.md"]
    completed = subprocess.run(command, cwd=ROOT, env=smoke_environment(), capture_output=True,
                               text=True, timeout=600)
    log = completed.stdout + completed.stderr
    assert completed.returncode != 0
    broken = [line for line in log.splitlines() if "reference target not found" in line]
    assert len(broken) == 1 and "ppl_vae.inference.no_such_estimator" in broken[0], log[-3000:]


# ----- in Chromium ------------------------------------------------------------------------------

def local_file(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


@pytest.mark.parametrize("page_path", ["index.html", "tutorials/03_variational_inference.html",
                                       "api/ppl_vae.inference.importance.html", "explorer.html"])
def test_pages_load_with_every_image_and_internal_link(chromium, docs_smoke_build, page_path):
    url = (docs_smoke_build.html / page_path).resolve().as_uri()
    tab = chromium.new_page()
    log = RequestLog(tab, allowed=lambda address: address.startswith("file://"))
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(url)
    tab.wait_for_load_state("load")
    images = tab.evaluate("""() => Array.from(document.images).map(
        img => ({src: img.src, ok: img.complete && img.naturalWidth > 0}))""")
    links = tab.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    internal = [link for link in links if link.startswith("file://")]
    assert log.foreign == [], f"{page_path} asked the network for {log.foreign}"
    assert errors == [], errors
    assert [image["src"] for image in images if not image["ok"]] == []
    assert [link for link in internal if not local_file(link).exists()] == []
    assert len(internal) > 10  # the navigation at least
    if page_path.startswith("tutorials/"):
        assert len(images) >= 5  # tutorial 3's five figures
    if page_path == "explorer.html":
        frame = tab.frame_locator("iframe")
        assert frame.locator("#plane").count() == 1
    tab.close()
