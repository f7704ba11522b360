"""``ppl-vae explore``: the page's data, the command, and the page itself in a real Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _browser import RequestLog, keep_screenshot

from ppl_vae.cli import EXIT_ERROR, main
from ppl_vae.errors import ConfigError
from ppl_vae.explorer import explorer_payload, load_compare_results, render_explorer
from ppl_vae.models import VAE
from ppl_vae.models.networks import ACTIVATIONS

#: The page computes in float64 from float32 weights, torch in float32: they agree to ~1e-6;
#: the issue asks for 1e-4 on pixel means in [0, 1].
DECODER_TOLERANCE = 1e-4

#: A canvas counts as drawn when more than this many of its pixels are not white.
MIN_INK_PIXELS = 20

TINY = ["--data", "digits", "--latent-dim", "2", "--hidden-dims", "32", "--epochs", "3",
        "--batch-size", "128", "--quiet"]
COMPARE = ["--num-points", "3", "--num-samples", "60", "--warmup-steps", "40", "--num-chains", "2",
           "--elbo-samples", "50", "--iwae-samples", "50", "--fit-max-steps", "200"]


@pytest.fixture(scope="module")
def explored(tmp_path_factory):
    """A tiny latent-2 run, its ``compare`` folder and the explorer page written from both."""
    root = tmp_path_factory.mktemp("explore")
    run, compared, page = root / "run", root / "compare", root / "explorer.html"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    assert main(["compare", "--checkpoint", str(run), "--out", str(compared), *COMPARE]) == 0
    assert main(["explore", "--checkpoint", str(run), "--out", str(page),
                 "--compare", str(compared)]) == 0
    return run, compared, page


def page_payload(path: Path) -> dict:
    match = re.search(r'<script id="payload" type="application/json">(.*?)</script>', path.read_text(),
                      re.S)
    assert match, "no payload in the page"
    return json.loads(match.group(1))


def load_model(run: Path) -> VAE:
    from ppl_vae.cli import _load_model

    return _load_model(str(run), torch.device("cpu"))[0]


def numpy_decoder(payload: dict, z: np.ndarray) -> np.ndarray:
    """The payload's layers evaluated in numpy: what the page must compute."""
    h = z.astype(np.float64)
    for k, layer in enumerate(payload["layers"]):
        weight = np.frombuffer(base64.b64decode(layer["weight"]), "<f4").reshape(layer["out"], layer["in"])
        bias = np.frombuffer(base64.b64decode(layer["bias"]), "<f4")
        h = h @ weight.T + bias
        if k < len(payload["layers"]) - 1:
            h = ACTIVATIONS[payload["activation"]]()(torch.from_numpy(h)).numpy()
    return 1 / (1 + np.exp(-h))


# ----- the page's data, without a browser --------------------------------------------------------

def test_payload_of_a_latent_2_model(digits_vae):
    vae, x = digits_vae
    payload = explorer_payload(vae, x, image_shape=(8, 8), max_points=50)
    assert payload["dims"] == [0, 1] and payload["base"] == [0.0, 0.0]
    assert [(layer["in"], layer["out"]) for layer in payload["layers"]] == [(2, 64), (64, 64)]
    with torch.no_grad():
        loc, scale = vae.encode(x[:50])
        z = torch.tensor([[0.0, 0.0], [1.5, -2.0], [-3.0, 0.7]])
        expected = vae.decode(z).mean.numpy()
    np.testing.assert_allclose(payload["points"]["loc"], loc.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(payload["points"]["scale"], scale.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(numpy_decoder(payload, z.numpy()), expected, atol=1e-6)
    images = np.frombuffer(base64.b64decode(payload["points"]["images"]), np.uint8).reshape(50, 64)
    np.testing.assert_array_equal(images, (x[:50].numpy() * 255).round())
    assert payload["points"]["label"] is None and payload["compare"] is None


def test_larger_latents_show_the_two_most_active_coordinates():
    torch.manual_seed(0)
    vae = VAE(16, 4, hidden_dims=(8,))
    final = vae.encoder.net[-1]
    with torch.no_grad():  # q(z|x) means fixed at (0, 3, 0.5, 2): KL is largest for z[1], then z[3]
        final.weight[:4].zero_()
        final.bias[:4] = torch.tensor([0.0, 3.0, 0.5, 2.0])
    payload = explorer_payload(vae, torch.rand(30, 16), max_points=30)
    assert payload["dims"] == [1, 3]
    np.testing.assert_allclose(payload["base"], [0.0, 3.0, 0.5, 2.0], atol=1e-6)
    assert "z[1] and z[3]" in payload["note"] and "held at the mean" in payload["note"]


def test_the_payload_cannot_close_its_script_tag(digits_vae):
    vae, x = digits_vae
    html = render_explorer(explorer_payload(vae, x, image_shape=(8, 8), max_points=5,
                                            title="</script><script>alert(1)</script>"))
    assert html.count("</script>") == 2  # the payload's and the script's; none from the title
    assert "__PPL_VAE_EXPLORER_PAYLOAD__" not in html


def test_a_model_without_an_mlp_decoder_is_refused():
    from ppl_vae.models import LinearGaussian

    with pytest.raises(ConfigError, match="MLP decoder"):
        explorer_payload(LinearGaussian(16, 2), torch.rand(5, 16))


def test_a_model_with_one_latent_is_refused():
    with pytest.raises(ConfigError, match="latent_dim 1"):
        explorer_payload(VAE(16, 1, hidden_dims=(8,)), torch.rand(5, 16))


# ----- the command ----------------------------------------------------------------------------

def test_compare_writes_the_draws_the_explorer_reads(explored):
    _, compared, page = explored
    results = load_compare_results(compared)
    report = json.loads((compared / "comparison.json").read_text())
    assert results.point_index.tolist() == report["point_index"] == [0, 1, 2]
    assert results.nuts.shape == (3, 120, 2)  # 2 chains x 60 draws, all kept (fewer than 300)
    assert results.qstar_loc.shape == results.qstar_scale.shape == (3, 2)
    assert (results.qstar_scale > 0).all()
    rows = page_payload(page)["compare"]["rows"]
    per_point = report["per_point"]
    for k, row in enumerate(rows):
        assert row["point"] == k
        assert row["amortization_gap"] == pytest.approx(
            per_point["local_gaussian_elbo"][k] - per_point["encoder_elbo"][k])
        assert row["approximation_gap"] == pytest.approx(
            per_point["log_px"][k] - per_point["local_gaussian_elbo"][k])
        np.testing.assert_allclose(row["nuts"], results.nuts[k], atol=1e-4)


def test_the_page_is_one_file_with_everything_inline(explored):
    page = explored[2].read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert "http://" not in page and "https://" not in page
    from ppl_vae.data import load_dataset

    assert page_payload(explored[2])["points"]["count"] == len(load_dataset("digits").test_x)


def error_line(capsys, argv) -> str:
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_explore_does_not_overwrite_without_being_asked(explored, tmp_path, capsys):
    run = explored[0]
    existing = tmp_path / "mine.html"
    existing.write_text("my notes")
    assert "--overwrite" in error_line(capsys, ["explore", "--checkpoint", str(run), "--out",
                                                str(existing)])
    assert existing.read_text() == "my notes"
    assert main(["explore", "--checkpoint", str(run), "--out", str(existing), "--overwrite",
                 "--num-points", "10"]) == 0
    assert page_payload(existing)["points"]["count"] == 10


@pytest.mark.parametrize("problem, expected", [
    ("suffix", "must end in .html"),
    ("folder", "does not exist"),
    ("compare", "run `ppl-vae compare"),
])
def test_explore_errors_are_one_line(explored, tmp_path, capsys, problem, expected):
    run = explored[0]
    argv = ["explore", "--checkpoint", str(run), "--out", str(tmp_path / "page.html")]
    if problem == "suffix":
        argv[-1] = str(tmp_path / "page.png")
    elif problem == "folder":
        argv[-1] = str(tmp_path / "missing" / "page.html")
    else:
        argv += ["--compare", str(tmp_path)]
    assert expected in error_line(capsys, argv)


# ----- the page in Chromium --------------------------------------------------------------------

@pytest.fixture
def page(chromium, explored):
    """The explorer opened from disk, every request logged and all but the file itself refused."""
    url = explored[2].resolve().as_uri()
    tab = chromium.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.requests = RequestLog(tab, allowed={url})  # type: ignore[attr-defined]
    tab.goto(url)
    yield tab
    assert errors == [], errors
    tab.close()


def ink(page, selector: str) -> int:
    """Drawn, non-white pixels of a canvas (an untouched canvas is transparent)."""
    return count_pixels(page, selector, "a > 0 && (r < 250 || g < 250 || b < 250)")


def count_pixels(page, selector: str, condition: str) -> int:
    """Pixels of a canvas for which the JavaScript ``condition`` on r, g, b, a holds (counted
    in the page: sending a 560x560 canvas to Python takes seconds)."""
    return page.evaluate(f"""selector => {{
        const c = document.querySelector(selector);
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {{
            const r = d[i], g = d[i + 1], b = d[i + 2], a = d[i + 3];
            if ({condition}) n++;
        }}
        return n; }}""", selector)


def pixels(page, selector: str) -> list[int]:
    return page.evaluate("""selector => { const c = document.querySelector(selector);
        return Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data); }""", selector)


def ellipse_pixels(page) -> int:
    """Pixels of the q(z|x) ellipses' magenta (#b000b5, no label's colour) on the plane."""
    return count_pixels(page, "#plane",
                        "Math.abs(r - 176) < 20 && g < 20 && Math.abs(b - 181) < 20")


def isolated_compared_point(page) -> int:
    """The compared point whose dot is farthest from any other dot, so a click hits it alone."""
    return page.evaluate("""() => {
        const e = window.explorer, px = e.payload.points.loc.map(p => e.toPx(p[0], p[1]));
        const room = e.payload.compare.rows.map(r => Math.min(...px.map((q, j) => j === r.point ? Infinity
            : Math.hypot(q[0] - px[r.point][0], q[1] - px[r.point][1]))));
        return e.payload.compare.rows[room.indexOf(Math.max(...room))].point; }""")


def plane_point(page, z) -> tuple[float, float]:
    """Viewport coordinates of latent point ``z`` on the plane."""
    page.locator("#plane").scroll_into_view_if_needed()
    box = page.locator("#plane").bounding_box()
    x, y = page.evaluate("z => window.explorer.toPx(z[0], z[1])", list(z))
    return box["x"] + x, box["y"] + y


def test_the_page_decoder_equals_the_torch_decoder(page, explored):
    model = load_model(explored[0])
    z = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-2.5, 0.3], [3.0, 3.0], [0.01, -4.0], [7.0, -6.0]])
    in_page = torch.tensor(page.evaluate("zs => zs.map(z => window.explorer.decode(z))", z.tolist()))
    with torch.no_grad():
        expected = model.decode(z).mean.double()
    assert in_page.shape == expected.shape == (6, 64)
    assert (in_page - expected).abs().max() < DECODER_TOLERANCE


def test_hovering_decodes_the_point_under_the_pointer(page):
    page.mouse.move(*plane_point(page, (-2.0, -2.0)))
    first_text, first = page.inner_text("#zread"), pixels(page, "#decoded")
    page.mouse.move(*plane_point(page, (2.0, 1.5)))
    second_text, second = page.inner_text("#zread"), pixels(page, "#decoded")
    pointer = page.evaluate("window.explorer.state.pointer")  # the pointer lands on whole pixels
    np.testing.assert_allclose(pointer, [2.0, 1.5], atol=0.05)
    assert f"{pointer[0]:.2f}" in second_text and f"{pointer[1]:.2f}" in second_text
    assert first_text != second_text and first != second and ink(page, "#decoded") > MIN_INK_PIXELS
    expected = page.evaluate("z => window.explorer.decode(z)", pointer)
    # the big digit is the decoded image, ink = 255 * pixel mean, read at each cell's centre
    centres = [int((k + 0.5) * 196 / 8) for k in range(8)]
    grey = np.array(second).reshape(196, 196, 4)[np.ix_(centres, centres)][..., 0]
    np.testing.assert_allclose(255 - grey.ravel(), 255 * np.array(expected), atol=1.0)


def test_clicking_a_digit_shows_it_its_ellipses_and_its_compare_results(page, tmp_path):
    assert ellipse_pixels(page) == 0 and ink(page, "#selected") == 0
    target = isolated_compared_point(page)
    page.mouse.click(*plane_point(page, page.evaluate(f"window.explorer.payload.points.loc[{target}]")))
    assert page.evaluate("window.explorer.state.selected") == target
    stats = page.inner_text("#stats")
    assert f"#{target} " in stats and "amortization gap" in stats and "NUTS draws shown\t120" in stats
    assert ellipse_pixels(page) > 100 and ink(page, "#selected") > MIN_INK_PIXELS
    shot = tmp_path / "explorer_after_click.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    copy_artifact(shot, "explorer_after_click.png")


def test_the_largest_gaps_are_listed_and_jump_to_their_digit(page, explored):
    rows = page_payload(explored[2])["compare"]["rows"]
    largest = max(rows, key=lambda row: row["amortization_gap"])["point"]
    items = page.locator("#gaplist li button")
    assert items.count() == 3 and items.first.inner_text().startswith(f"#{largest} ")
    items.first.click()
    assert page.evaluate("window.explorer.state.selected") == largest


def test_dragging_interpolates_in_ten_decoded_steps(page):
    assert ink(page, "#interp") == 0
    page.mouse.move(*plane_point(page, (-2.0, 0.0)))
    page.mouse.down()
    page.mouse.move(*plane_point(page, (2.0, 1.0)), steps=6)
    page.mouse.up()
    line = page.evaluate("window.explorer.state.line")
    np.testing.assert_allclose(line, [[-2.0, 0.0], [2.0, 1.0]], atol=0.05)
    assert ink(page, "#interp") > 10 * MIN_INK_PIXELS
    assert "10 evenly spaced steps" in page.inner_text("#interpnote")
    assert page.evaluate("window.explorer.state.selected") is None  # a drag is not a click


def test_the_sample_button_draws_a_grid_of_100(page):
    assert ink(page, "#samples") == 0
    page.click("#sample")
    assert len(page.evaluate("window.explorer.state.samples")) == 100
    assert ink(page, "#samples") > 100 * MIN_INK_PIXELS


def test_the_page_makes_no_network_request(chromium, explored, tmp_path):
    """Its own code asks for nothing: checked on a copy without the page's request ban (CSP),
    which would otherwise stop a request before the log could see it."""
    html = explored[2].read_text()
    ban = re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', html).group(0)
    unguarded = tmp_path / "unguarded.html"
    unguarded.write_text(html.replace(ban, ""))
    tab = chromium.new_page(viewport={"width": 1280, "height": 1000})
    log = RequestLog(tab, allowed={unguarded.as_uri()})
    tab.goto(unguarded.as_uri())
    target = isolated_compared_point(tab)
    tab.mouse.click(*plane_point(tab, tab.evaluate(f"window.explorer.payload.points.loc[{target}]")))
    tab.mouse.move(*plane_point(tab, (1.0, 1.0)))
    tab.click("#sample")
    tab.locator("#gaplist li button").first.click()
    tab.wait_for_timeout(200)
    assert log.foreign == [] and ink(tab, "#samples") > 0
    tab.close()


def test_the_request_log_would_see_a_request(chromium, tmp_path):
    """The control for the test above: a page that does ask for a file elsewhere is caught."""
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<html><body><img src="http://127.0.0.1:9/never.png"></body></html>')
    tab = chromium.new_page()
    log = RequestLog(tab, allowed={leaky.as_uri()})
    tab.goto(leaky.as_uri())
    tab.wait_for_timeout(200)
    assert log.foreign == ["http://127.0.0.1:9/never.png"]
    tab.close()


def test_the_page_forbids_requests_itself(page):
    assert "default-src 'none'" in page.content()
    assert page.requests.foreign == []


def copy_artifact(source: Path, name: str) -> None:
    """Keep a screenshot where PPL_VAE_ARTIFACTS says (CI or a person looking at the page)."""
    import os

    folder = os.environ.get("PPL_VAE_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, Path(folder) / name)


# ----- the page as a person sees it: any screen, any pointer, the keyboard ----------------------

def open_page(chromium, path: Path, **context):
    """The page opened in a fresh context (``device_scale_factor``, ``viewport``, ``has_touch``)."""
    browser_context = chromium.new_context(**context)
    tab = browser_context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(path.resolve().as_uri())
    tab.errors = errors  # type: ignore[attr-defined]
    return browser_context, tab


def test_canvases_are_sharp_at_device_pixel_ratio_2(chromium, explored):
    context, tab = open_page(chromium, explored[2], viewport={"width": 1400, "height": 1000},
                             device_scale_factor=2)
    sizes = tab.evaluate("""() => Array.from(document.querySelectorAll('canvas')).map(c => {
        const box = c.getBoundingClientRect();
        return [c.id, c.width, c.height, box.width, box.height]; })""")
    for name, width, height, css_width, css_height in sizes:
        assert abs(width - 2 * css_width) <= 4 and abs(height - 2 * css_height) <= 4, name
    tab.mouse.move(*plane_point(tab, (1.0, -1.0)))
    np.testing.assert_allclose(tab.evaluate("window.explorer.state.pointer"), [1.0, -1.0], atol=0.05)
    target = isolated_compared_point(tab)
    tab.mouse.click(*plane_point(tab, tab.evaluate(f"window.explorer.payload.points.loc[{target}]")))
    assert tab.evaluate("window.explorer.state.selected") == target and ellipse_pixels(tab) > 400
    keep_screenshot(tab, "explorer_dpr2.png", full_page=True)
    assert tab.errors == []
    context.close()


def test_the_page_fits_a_phone_and_follows_a_finger(chromium, explored):
    context, tab = open_page(chromium, explored[2], viewport={"width": 390, "height": 844},
                             device_scale_factor=3, is_mobile=True, has_touch=True)
    assert tab.evaluate("document.documentElement.scrollWidth") <= 390
    box = tab.locator("#plane").bounding_box()
    assert box["width"] >= 300 and box["x"] >= 0 and box["x"] + box["width"] <= 390
    start, end = plane_point(tab, (-2.0, 0.0)), plane_point(tab, (2.0, 1.0))
    touch(tab, start, end)
    np.testing.assert_allclose(tab.evaluate("window.explorer.state.line"), [[-2.0, 0.0], [2.0, 1.0]],
                               atol=0.1)
    assert ink(tab, "#interp") > 10 * MIN_INK_PIXELS
    assert tab.evaluate("window.explorer.state.selected") is None  # a drag is not a tap
    keep_screenshot(tab, "explorer_phone.png", full_page=True)
    assert tab.errors == []
    context.close()


def touch(tab, start, end, steps: int = 8) -> None:
    """A one-finger drag from ``start`` to ``end`` (viewport coordinates), as a touch screen sends it."""
    session = tab.context.new_cdp_session(tab)
    point = lambda x, y: [{"x": x, "y": y, "id": 1}]  # noqa: E731
    session.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": point(*start)})
    for k in range(1, steps + 1):
        t = k / steps
        session.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": point(
            start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]))})
    session.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    tab.wait_for_timeout(100)


def test_the_keyboard_moves_the_probe_and_selects(page):
    page.focus("#plane")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowUp")
    probe = page.evaluate("window.explorer.state.probe")
    assert probe is not None and probe[0] > 0 and probe[1] > 0
    assert f"{probe[0]:.2f}" in page.inner_text("#zread")
    page.keyboard.press("Enter")
    selected = page.evaluate("window.explorer.state.selected")
    nearest = page.evaluate("""probe => { const e = window.explorer, [x, y] = e.toPx(...probe);
        const d = e.payload.points.loc.map(p => { const q = e.toPx(p[0], p[1]); return Math.hypot(q[0] - x, q[1] - y); });
        return d.indexOf(Math.min(...d)); }""", probe)
    assert selected is not None and ink(page, "#selected") > MIN_INK_PIXELS
    assert selected == nearest or f"#{selected} " in page.inner_text("#stats")


def test_compared_digits_are_listed_and_zoomed(page, explored):
    rows = page_payload(explored[2])["compare"]["rows"]
    chips = page.locator("#comparedlist button")
    assert chips.count() == len(rows)
    chips.nth(1).click()
    assert page.evaluate("window.explorer.state.selected") == rows[1]["point"]
    assert ink(page, "#zoom") > 100 and "× the plane's scale" in page.inner_text("#zoomnote")
    key = page.inner_text("#key")
    assert "q*" in key and "NUTS" in key and "compared" in key


def test_labels_are_readable(page):
    small = page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
        .filter(e => e.offsetParent !== null && e.childNodes.length && Array.from(e.childNodes)
                 .some(n => n.nodeType === 3 && n.textContent.trim()))
        .map(e => [e.tagName, e.textContent.trim().slice(0, 30), parseFloat(getComputedStyle(e).fontSize)])
        .filter(x => x[2] < 14)""")
    assert small == []


@pytest.fixture(scope="module")
def wide_page(tmp_path_factory):
    """A latent-4 model's page, without compare results."""
    root = tmp_path_factory.mktemp("explore4")
    run, page = root / "run", root / "explorer.html"
    options = [*TINY]
    options[options.index("--latent-dim") + 1] = "4"
    assert main(["train", *options, "--out", str(run)]) == 0
    assert main(["explore", "--checkpoint", str(run), "--out", str(page)]) == 0
    return run, page


def test_a_larger_latent_shows_the_reconstruction_and_a_choice_of_coordinates(chromium, wide_page):
    run, path = wide_page
    context, tab = open_page(chromium, path, viewport={"width": 1400, "height": 1000})
    payload = page_payload(path)
    assert len(payload["coordinates"]["kl"]) == 4 and tab.is_visible("#dimx")
    tab.evaluate("window.explorer.select(3)")
    codes = np.frombuffer(base64.b64decode(payload["coordinates"]["loc"]), "<f4").reshape(-1, 4)
    model = load_model(run)
    with torch.no_grad():  # the digit's own code, every coordinate at its q(z|x) mean
        expected = model.decode(torch.from_numpy(codes[3:4].copy())).mean.double().numpy()[0]
        sliced = codes[3].astype(np.float64).copy()  # what the plane's point decodes to
        keep = [j for j in range(4) if j not in payload["dims"]]
        sliced[keep] = np.array(payload["base"])[keep]
        on_plane = model.decode(torch.from_numpy(sliced[None]).float()).mean.double().numpy()[0]
    shown = np.array(tab.evaluate("window.explorer.reconstruction(3)"))
    np.testing.assert_allclose(shown, expected, atol=DECODER_TOLERANCE)
    assert np.abs(expected - on_plane).max() > 10 * DECODER_TOLERANCE  # a different image
    assert ink(tab, "#recon") > MIN_INK_PIXELS
    others = [j for j in range(4) if j not in payload["dims"]]
    tab.select_option("#dimx", str(others[0]))
    assert tab.evaluate("window.explorer.state.dims")[0] == others[0]
    assert f"z[{others[0]}]" in tab.inner_text("#note")
    assert "No compare results" in tab.inner_text("#gapnote") and tab.locator("#gapnote code").count() == 2
    key = tab.inner_text("#key")
    assert "q*" not in key and "NUTS" not in key
    keep_screenshot(tab, "explorer_latent4.png", full_page=True)
    assert tab.errors == []
    context.close()
