"""The documentation site: it builds with ``mkdocs build --strict``, every internal link of
every page resolves to a file (and anchor) of the site, it loads nothing from other hosts,
and the home page, the quickstart and the API reference render in headless Chromium."""

from __future__ import annotations

import ast
import functools
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from html import unescape
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Page -> (its <h1>, <h2> headings it must show) for the pages opened in the browser.
RENDERED = {
    "index.html": ("wjsentiment", ["What the predictions look like", "Where to go next"]),
    "quickstart.html": ("Quickstart", ["What happened", "The same from the command line"]),
    "api.html": ("API reference", ["Classifier", "Datasets", "Evaluation"]),
    "api/estimator.html": ("Classifier", []),
}

#: Modules and packages whose public names (``__all__``) must each have an entry in the API
#: reference (the pages under docs/api/).
API_MODULES = ("wjsentiment", "wjsentiment.calibration", "wjsentiment.datasets",
               "wjsentiment.ensemble",
               "wjsentiment.evaluation", "wjsentiment.plotting", "wjsentiment.explain",
               "wjsentiment.export", "wjsentiment.training", "wjsentiment.models",
               "wjsentiment.images", "wjsentiment.config", "wjsentiment.labels",
               "wjsentiment.exceptions", "wjsentiment.inference", "wjsentiment.quantize",
               "wjsentiment.serve")

#: The API pages, one per module or group of modules.
API_PAGES = ("estimator", "inference", "ensemble", "features", "calibration", "training",
             "datasets", "evaluation", "plotting", "explain", "export", "serve", "configuration",
             "models", "scale", "exceptions", "cli")

#: The quickstart code that the README, the quickstart page and the home page all show.
SNIPPET = ROOT / "docs" / "snippets" / "quickstart.py"


class Page(HTMLParser):
    """Headings, anchors, links and external resources of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []          # href/src of a, link, script, img, source
        self.resources: list[str] = []      # what the page loads: stylesheets, scripts, images
        self.headings: dict[str, list[str]] = {"h1": [], "h2": [], "h3": []}
        self._open: list[str] = []          # heading being read
        self._skip = 0                      # inside a permalink of a heading

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        for key in ("id", "name"):
            if key in a and (key == "id" or tag == "a"):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if key in a and tag in ("a", "link", "script", "img", "source", "iframe"):
                self.links.append(a[key])
        if tag in ("script", "img", "iframe") and "src" in a:
            self.resources.append(a["src"])
        if tag == "link" and "href" in a and set(a.get("rel", "").split()) & {
                "stylesheet", "preload", "icon", "modulepreload", "preconnect"}:
            self.resources.append(a["href"])
        if tag in self.headings:
            self._open.append(tag)
            self.headings[tag].append("")
        elif self._open and tag == "a" and "headerlink" in a.get("class", ""):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag == self._open[-1]:
            self._open.pop()
        elif self._skip and tag == "a":
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._open and not self._skip:
            tag = self._open[-1]
            self.headings[tag][-1] += data

    def heading_texts(self, tag: str) -> list[str]:
        return [" ".join(text.replace("¶", "").split()) for text in self.headings[tag]]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def resolve(site: Path, page_url: str, ref: str, host: str | None = None):
    """The site file and fragment a link points to; None for a link to another host.

    ``page_url`` is the page's path inside the site ("guide/data.html") or, for a
    rendered page, its full URL on ``host``.
    """
    parts = urlsplit(ref)
    if parts.scheme in ("mailto", "tel", "javascript", "data"):
        return None
    if parts.scheme or parts.netloc:
        if host is None or parts.netloc != host:
            return None
    base = page_url if "://" in page_url else "http://site.invalid/" + page_url
    path = unquote(urlsplit(urljoin(base, parts.path or "")).path) if parts.path \
        else unquote(urlsplit(base).path)
    rel = posixpath.normpath(path.lstrip("/")) if path.strip("/") else ""
    if rel.startswith(".."):
        return site / "__outside_the_site__", parts.fragment
    target = site / rel if rel else site
    if path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target, parts.fragment


@functools.cache
def _parsed(path: Path) -> Page:
    return parse(path.read_text(encoding="utf-8"))


def broken_links(site: Path, page_url: str, page: Page, host: str | None = None) -> list[str]:
    """Links of ``page`` whose file, or anchor within an HTML file, does not exist."""
    broken = []
    for ref in page.links:
        found = resolve(site, page_url, ref, host)
        if found is None:
            continue
        target, fragment = found
        if not target.is_file():
            broken.append(f"{ref} (no file {os.path.relpath(target, site)})")
        elif fragment and target.suffix == ".html" \
                and unquote(fragment) not in _parsed(target).ids:
            broken.append(f"{ref} (no id {fragment!r} in {target.relative_to(site)})")
    return broken


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f",
         str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-6000:]}"
    return out


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[str, Page]:
    return {p.relative_to(site).as_posix(): _parsed(p) for p in sorted(site.rglob("*.html"))}


def test_site_has_every_page_of_the_nav(site: Path) -> None:
    for rel in ("index.html", "installation.html", "quickstart.html", "guide/data.html",
                "guide/classifier.html", "guide/ensembles.html", "guide/model-selection.html",
                "guide/evaluation.html", "guide/explain-export.html", "guide/cli.html",
                "guide/saving.html",
                "guide/performance.html", "guide/reference-study.html", "api.html",
                "changelog.html", *(f"api/{page}.html" for page in API_PAGES)):
        assert (site / rel).is_file(), f"{rel} missing from the built site"
    picture = site / "assets" / "predictions.png"
    assert picture.is_file() and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.stat().st_size < 200_000
    assert not (ROOT / "docs" / "assets" / "predictions.png").exists()  # made, not committed


def test_heat_map_figure_is_made_by_the_build(site: Path) -> None:
    figure = site / "assets" / "gradcam.png"
    assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (ROOT / "docs" / "assets" / "gradcam.png").exists()  # made, not committed
    page = (site / "guide" / "explain-export.html").read_text(encoding="utf-8")
    assert 'src="../assets/gradcam.png"' in page


def test_every_internal_link_resolves(site: Path, pages: dict[str, Page]) -> None:
    assert len(pages) >= 14
    broken = {url: bad for url, page in pages.items() if (bad := broken_links(site, url, page))}
    assert not broken, f"broken internal links: {broken}"


def test_link_checker_catches_a_broken_link(site: Path) -> None:
    page = parse('<a href="../quickstart.html">ok</a><a href="../no-such-page.html">bad</a>'
                 '<a href="../api.html#no-such-anchor">bad anchor</a>'
                 '<a href="../api/estimator.html#wjsentiment.SentimentClassifier">ok</a>'
                 '<a href="https://x.org/">ext</a>')
    bad = broken_links(site, "guide/data.html", page)
    assert len(bad) == 2 and "no-such-page" in bad[0] and "no-such-anchor" in bad[1]


def test_pages_load_nothing_from_other_hosts(pages: dict[str, Page]) -> None:
    external = {url: [r for r in page.resources if urlsplit(r).netloc]
                for url, page in pages.items()}
    external = {url: refs for url, refs in external.items() if refs}
    assert not external, f"pages load resources from other hosts (site must work offline): " \
                         f"{external}"


def public_names(module: str) -> list[str]:
    """The ``__all__`` of a module of the checkout, read from its source (nothing imported)."""
    base = ROOT.joinpath(*module.split("."))
    source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return list(ast.literal_eval(node.value))
    return []


def test_evaluation_figures_are_made_by_the_build(site: Path) -> None:
    page = (site / "guide" / "evaluation.html").read_text(encoding="utf-8")
    for name in ("training_curves", "confusion_matrix", "reliability", "class_distribution"):
        figure = site / "assets" / "evaluation" / f"{name}.png"
        assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f'src="../assets/evaluation/{name}.png"' in page, name
    assert not (ROOT / "docs" / "assets" / "evaluation").exists()  # made, not committed


def test_captions_state_the_scores_of_the_model_their_figures_show(site: Path) -> None:
    pattern = (r"On the 184 held-out emoji it scores accuracy 0\.\d\d, macro-F1 0\.\d\d, "
               r"log-loss \d\.\d\d and expected calibration error 0\.\d{3}\.")
    for rel in ("index.html", "guide/evaluation.html"):
        text = " ".join(_text((site / rel).read_text(encoding="utf-8")).split())
        assert "{{" not in text, f"{rel}: a placeholder of docs/hooks.py was left unfilled"
        assert re.search(pattern, text), f"{rel}: no scores of the build's model"
    text = " ".join(_text((site / "guide" / "evaluation.html").read_text("utf-8")).split())
    assert re.search(r"its top probability averages 0\.\d\d, and its most probable class is "
                     r"right 0\.\d\d of the time: it is (over-confident|under-confident|"
                     r"about as sure as it is right)\.", text)


def test_no_page_speaks_of_the_machine_it_was_written_on(pages, site: Path) -> None:
    words = re.compile(r"this (2-core |dev |development )?machine|busy (2-core )?machine|"
                       r"2-core machine", re.I)
    found = {}
    for rel in pages:
        text = " ".join(_text((site / rel).read_text(encoding="utf-8")).split())
        if hits := [m.group(0) for m in words.finditer(text)]:
            found[rel] = hits
    assert not found, f"pages that speak of the writer's machine: {found}"


def test_api_reference_covers_every_public_name(pages: dict[str, Page]) -> None:
    ids = set().union(*(pages[f"api/{page}.html"].ids for page in API_PAGES))
    suffixes = {i.rsplit(".", 1)[-1] for i in ids if i.startswith("wjsentiment")}
    missing = []
    for module in API_MODULES:
        missing += [f"{module}.{n}" for n in public_names(module)
                    if not n.startswith("_") and n not in suffixes]
    assert len(public_names("wjsentiment.datasets")) >= 8
    assert not missing, f"public names without an entry in docs/api.md: {missing}"


def test_docstrings_render_without_sphinx_roles(pages: dict[str, Page], site: Path) -> None:
    for page in API_PAGES:
        html = (site / "api" / f"{page}.html").read_text(encoding="utf-8")
        for role in (":func:`", ":class:`", ":meth:`", ":data:`", ":attr:`"):
            assert role not in html, f"{role} printed literally in api/{page}.html"


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def test_numpydoc_types_render_as_written(site: Path) -> None:
    text = _text((site / "api" / "estimator.html").read_text(encoding="utf-8"))
    assert "path - like" not in text and "('linear', 'mlp')" not in text
    assert '{"linear", "mlp"}' in text
    calibration = _text((site / "api" / "calibration.html").read_text(encoding="utf-8"))
    assert '{"argmax", "balanced"}' in calibration


def test_home_and_quickstart_pages_show_the_quickstart_code(site: Path) -> None:
    code = SNIPPET.read_text(encoding="utf-8")
    for rel in ("index.html", "quickstart.html"):
        text = _text((site / rel).read_text(encoding="utf-8"))
        for line in code.splitlines():
            assert line.strip() in text, f"{rel} lacks the quickstart line {line!r}"


# ------------------------------------------------------------------- the quickstart code
def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, re.S)


def test_readme_quickstart_and_home_page_show_the_same_code() -> None:
    code = SNIPPET.read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert code in _python_blocks(readme)
    include = '--8<-- "docs/snippets/quickstart.py"\n'
    for page in ("quickstart.md", "index.md"):
        assert include in _python_blocks((ROOT / "docs" / page).read_text(encoding="utf-8")), page


@pytest.fixture
def smoke_classifier(monkeypatch, tmp_path):
    """SentimentClassifier made tiny (random 32-pixel network, two epochs, a tenth of a large
    set of images), so that documentation code runs in seconds; and a clean working folder."""
    import wjsentiment

    class Smoke(wjsentiment.SentimentClassifier):
        def fit(self, X, y, groups=None):
            self.set_params(weights=None, image_size=32, epochs=2, batch_size=16, verbose=0)
            step = 10 if len(X) > 200 else 1
            return super().fit(X[::step], y[::step])

    monkeypatch.setattr(wjsentiment, "SentimentClassifier", Smoke)
    monkeypatch.chdir(tmp_path)
    return Smoke


def test_the_quickstart_code_runs(smoke_classifier, tmp_path, capsys) -> None:
    exec(compile(SNIPPET.read_text(encoding="utf-8"), str(SNIPPET), "exec"), {})
    assert "macro-F1" in capsys.readouterr().out
    assert (tmp_path / "emoji-model" / "config.json").is_file()


def test_the_callbacks_example_of_the_guide_runs(smoke_classifier, tmp_path) -> None:
    guide = (ROOT / "docs" / "guide" / "classifier.md").read_text(encoding="utf-8")
    code = _python_blocks(guide.split("<!-- callbacks-example -->", 1)[1])[0]
    from conftest import make_bright_dark

    paths, labels = make_bright_dark(20)
    namespace = {"paths": paths, "labels": labels}
    exec(compile(code, "classifier.md", "exec"), namespace)
    rows = (tmp_path / "epochs.csv").read_text().splitlines()
    clf = namespace["clf"]
    assert rows[0].startswith("epoch,") and len(rows) == 1 + clf.n_epochs_


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A tiny classifier's ONNX file (bytes), its classes, and an image."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from conftest import make_bright_dark

    from wjsentiment import SentimentClassifier

    X, y = make_bright_dark(8, size=32)
    clf = SentimentClassifier(weights=None, image_size=32, epochs=1, batch_size=8,
                              calibration=None, verbose=0, random_state=0).fit(X, y)
    path = clf.export_onnx(tmp_path_factory.mktemp("onnx") / "model.onnx")
    return Path(path).read_bytes(), clf.classes_, X[0]


@pytest.mark.parametrize("rule", ["balanced", "argmax"])
def test_the_onnx_snippet_without_wjsentiment_agrees_with_predict(rule, exported, tmp_path,
                                                                   monkeypatch, capsys) -> None:
    import onnx
    from PIL import Image

    from wjsentiment.export import load_onnx

    guide = (ROOT / "docs" / "guide" / "explain-export.md").read_text(encoding="utf-8")
    code = _python_blocks(guide.split("<!-- onnx-without-wjsentiment -->", 1)[1])[0]
    data, classes, image = exported
    monkeypatch.chdir(tmp_path)
    Path("model.onnx").write_bytes(data)
    Image.fromarray(image).save("a.jpg")
    proba = load_onnx("model.onnx").predict_proba(["a.jpg"])[0]
    # Save a rule and a class prior under which the balanced rule picks the least probable
    # class, so that a snippet taking the argmax under "balanced" prints another label.
    prior = np.ones(len(proba))
    prior[proba.argmin()] = 1e-6
    model = onnx.load("model.onnx")
    for prop in model.metadata_props:
        if prop.key in ("decision", "class_prior"):
            prop.value = rule if prop.key == "decision" else json.dumps(prior.tolist())
    onnx.save(model, "model.onnx")
    expected = load_onnx("model.onnx").predict(["a.jpg"])[0]
    assert (expected == classes[proba.argmin()]) == (rule == "balanced")

    exec(compile(code, "explain-export.md", "exec"), {})
    assert capsys.readouterr().out.strip() == str(expected)


# --------------------------------------------------------------------------- in a browser
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class _Handler(SimpleHTTPRequestHandler):
    requests: list[tuple[str, int]]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet server
        pass

    def log_request(self, code="-", size="-") -> None:
        self.requests.append((self.path, int(code) if str(code).isdigit() else 0))


@pytest.fixture(scope="module")
def served(site: Path):
    requests: list[tuple[str, int]] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def dump_dom(browser: str, url: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True, text=True, timeout=60,
        )
    assert proc.returncode == 0 and "<html" in proc.stdout, \
        f"chromium could not render {url}: {proc.stderr[-2000:]}"
    return proc.stdout


@pytest.mark.parametrize("rel", list(RENDERED))
def test_page_renders_in_chromium(rel: str, site: Path, served) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the links were "
                    "still checked without a browser")
    host, requests = served
    url = f"http://{host}/{rel}"
    del requests[:]
    page = parse(dump_dom(browser, url))

    h1, h2s = RENDERED[rel]
    assert page.heading_texts("h1") == [h1]
    for h2 in h2s:
        assert h2 in page.heading_texts("h2"), \
            f"{rel}: no <h2> {h2!r} in {page.heading_texts('h2')}"
    broken = broken_links(site, url, page, host)
    assert not broken, f"{rel}: broken links in the rendered page: {broken}"
    failed = [(path, code) for path, code in requests if code >= 400]
    assert not failed, f"{rel}: the browser asked for missing files: {failed}"

    if rel == "index.html":
        assert any(path.endswith("assets/predictions.png") for path, _ in requests)
    if rel == "api/estimator.html":
        assert any("SentimentClassifier" in h for h in page.heading_texts("h2"))
        assert "wjsentiment.SentimentClassifier" in page.ids


#: A page that loads one page of the site in a frame of a given width and writes, once it
#: has loaded, what the browser measured there: each code block's white-space, overflow,
#: widths and lines (of text, and as laid out), and each figure's natural and shown width.
PROBE = """<!doctype html><html><body><pre id="out">not measured</pre>
<iframe id="page" src="{page}" style="width:{width}px;height:1600px;border:0"></iframe>
<script>
var frame = document.getElementById("page");
function measure() {{
  var doc = frame.contentDocument, view = frame.contentWindow, blocks = [], figures = [];
  doc.querySelectorAll(".md-content pre > code").forEach(function (code) {{
    var style = view.getComputedStyle(code);
    var inner = code.clientHeight - parseFloat(style.paddingTop)
                - parseFloat(style.paddingBottom);
    blocks.push({{white_space: style.whiteSpace, overflow_x: style.overflowX,
                 scroll_width: code.scrollWidth, client_width: code.clientWidth,
                 lines: code.textContent.replace(/\\n$/, "").split("\\n").length,
                 laid_out: Math.round(inner / parseFloat(style.lineHeight))}});
  }});
  doc.querySelectorAll(".md-content img").forEach(function (img) {{
    figures.push({{src: img.getAttribute("src"), natural: img.naturalWidth,
                  shown: img.clientWidth}});
  }});
  document.getElementById("out").textContent = JSON.stringify({{blocks: blocks,
                                                                figures: figures}});
}}
frame.addEventListener("load", measure);
</script></body></html>"""


def measure_in_chromium(site: Path, host: str, page: str, width: int = 1280) -> dict:
    """What Chromium measures on ``page`` of the site shown ``width`` pixels wide."""
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    probe = site / "_probe.html"
    probe.write_text(PROBE.format(page=page, width=width), encoding="utf-8")
    try:
        dom = dump_dom(browser, f"http://{host}/_probe.html")
    finally:
        probe.unlink()
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert found and found.group(1).startswith("{"), \
        f"the probe measured nothing on {page}: {found and found.group(1)[:200]}"
    return json.loads(unescape(found.group(1)))


@pytest.mark.parametrize("page", ["quickstart.html", "guide/explain-export.html"])
def test_code_blocks_scroll_and_never_wrap(page: str, site: Path, served) -> None:
    # On a phone-sized screen, several lines of these pages are wider than their block.
    blocks = measure_in_chromium(site, served[0], page, width=480)["blocks"]
    assert blocks, f"{page}: no code block measured"
    for block in blocks:
        assert block["white_space"] == "pre", block
        assert block["laid_out"] == block["lines"], f"{page}: a code line wrapped: {block}"
    wide = [b for b in blocks if b["scroll_width"] > b["client_width"]]
    assert wide, f"{page}: no code line is wider than its block; pick a page that has one"
    assert all(b["overflow_x"] in ("auto", "scroll") for b in wide), wide


def _png_dpi(path: Path) -> float:
    """The resolution a PNG's pHYs chunk records, in dots per inch."""
    data = path.read_bytes()
    at = data.index(b"pHYs")
    per_metre = int.from_bytes(data[at + 4:at + 8], "big")
    assert data[at + 12] == 1, f"{path.name}: pHYs is not in metres"
    return per_metre * 0.0254


@pytest.mark.parametrize("page", ["index.html", "guide/evaluation.html",
                                  "guide/explain-export.html"])
def test_figures_are_shown_at_a_readable_size(page: str, site: Path, served) -> None:
    figures = measure_in_chromium(site, served[0], page)["figures"]
    assert figures, f"{page}: no figure measured"
    for figure in figures:
        png = site / posixpath.normpath(posixpath.join(posixpath.dirname(page), figure["src"]))
        # 10-point text is dpi / 72 * 10 pixels in the PNG, then scaled by the page.
        text_px = _png_dpi(png) / 72 * 10 * figure["shown"] / figure["natural"]
        assert text_px >= 12, f"{page}: 10-point text of {figure['src']} shows " \
                              f"{text_px:.1f} pixels high ({figure})"
