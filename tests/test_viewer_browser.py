"""ns-viewer on a trained checkpoint, in a real browser: headless Chromium driven by selenium.

Trains 3 real ns-train steps of ghnerf on the tiny synthetic data, starts ``ns-viewer`` on the checkpoint, opens the
viser page, waits for the websocket (the GUI arrives only through it), then switches the output to rgb,
joint_heatmap, skeleton and densepose_color and changes the plugin's Subject and Frame controls, with a screenshot of
the page and of the 3D canvas at each step. The canvas must show a rendered, non-blank image that depends on the
output, the subject and the frame.

Screenshots and the viewer's log go to ``tests/artifacts/viewer/`` (ignored by git, kept after a failing run; set
$HUMANFEAT_VIEWER_ARTIFACTS to move them). Needs Debian's ``chromium`` and ``chromium-driver``
(``scripts/install_browser.sh``); without them the test is skipped with the reason, unless
$HUMANFEAT_REQUIRE_BROWSER=1 (``make viewer-test``, ``.ci/run``), which turns the skip into a failure.
$HUMANFEAT_VIEWER_CHECKPOINT=<config.yml> inspects that run instead (screenshots of a model that has learned, e.g.
``make demo``'s); its dataset must be reachable from the current folder.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation, binary_erosion

from nerfstudio_humanfeat.configs.cli import with_dataparser
from nerfstudio_humanfeat.configs.cpu import cpu_overrides

BIN = Path(sys.executable).parent
TRAINED = os.environ.get("HUMANFEAT_VIEWER_CHECKPOINT", "")
CHROMIUM = Path(os.environ.get("HUMANFEAT_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("HUMANFEAT_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = Path(os.environ.get("HUMANFEAT_VIEWER_ARTIFACTS", Path(__file__).parent / "artifacts" / "viewer"))
REQUIRED = os.environ.get("HUMANFEAT_REQUIRE_BROWSER", "") not in ("", "0")
CHROMIUM_FLAGS = [
    # No network here: without these Chromium waits on connections it cannot make.
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1200,800",
]  # fmt: skip
OUTPUTS = ["rgb", "joint_heatmap", "skeleton", "densepose_color"]
VISIBLE_CANVAS_JS = """
const canvas = document.querySelector("canvas").getBoundingClientRect();
let right = canvas.right;
for (let el = document.querySelector("label"); el; el = el.parentElement) {
  const box = el.getBoundingClientRect();  // the control panel: the widest ancestor of a label over the canvas
  if (box.width < 0.6 * canvas.width && box.height > 0.5 * canvas.height) right = Math.min(right, box.left);
}
return [canvas.left, canvas.top, right, canvas.bottom, window.innerWidth];
"""
RENDER_TIMEOUT_S = 120.0
MAX_RES = 256
"""The viewer's "Max res" (512 by default): a quarter of the rays per render on these 2 CPU cores."""
PREDICTED_COLOR = np.array([255, 140, 0])
GROUND_TRUTH_COLOR = np.array([0, 200, 255])


def browser_missing() -> Optional[str]:
    """Why the browser test cannot run here, or None."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return f"Chromium not installed ({', '.join(missing)} missing): run scripts/install_browser.sh"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed: pip install -e '.[dev]'"
    return None


MISSING = browser_missing()
pytestmark = pytest.mark.skipif(MISSING is not None and not REQUIRED, reason=MISSING or "")


@pytest.fixture(scope="module", autouse=True)
def require_browser() -> None:
    """With $HUMANFEAT_REQUIRE_BROWSER a missing browser fails the test (before any training) instead of a skip."""
    if MISSING:
        pytest.fail(f"$HUMANFEAT_REQUIRE_BROWSER is set but {MISSING}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.5):
    """The first truthy value of ``condition()`` within ``timeout`` seconds; fails with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, np.ndarray) or value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; screenshots in {ARTIFACTS}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def checkpoint(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config.yml of ghnerf after 3 real ns-train steps on the tiny synthetic data ($HUMANFEAT_VIEWER_CHECKPOINT)."""
    if TRAINED:
        return Path(TRAINED).resolve()
    work = tmp_path_factory.mktemp("viewer")
    tiny = [
        "--pipeline.datamanager.train-num-rays-per-batch", "128",
        "--pipeline.datamanager.eval-num-rays-per-batch", "128",
        "--pipeline.datamanager.dataparser.eval-max-views", "2",
        # The split-screen check compares the rgb half before and after the split. With the CPU variant's batch
        # statistics it changed on 1.1 % of pixels (by at most 30/255) in CI: each render is normalised by its own
        # batch, which a different render of the view need not repeat exactly. The viewer's controls are tested here;
        # the normalisation is tested in test_normalization.py and test_models.py.
        "--pipeline.model.eval-batchnorm", "running",
    ]  # fmt: skip
    run = ["--output-dir", str(work / "outputs"), "--experiment-name", "view", "--timestamp", "run"]
    args = ["ghnerf", "--data", str(tiny_dataset), *run, "--max-num-iterations", "3",
            *with_dataparser([*cpu_overrides("ghnerf"), *tiny])]  # fmt: skip
    result = subprocess.run([str(BIN / "ns-train"), *args], cwd=work, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"ns-train failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    config = work / "outputs" / "view" / "ghnerf" / "run" / "config.yml"
    assert any(config.parent.joinpath("nerfstudio_models").glob("step-*.ckpt"))
    return config


@pytest.fixture(scope="module")
def viewer_url(checkpoint: Path, artifacts: Path):
    """http://127.0.0.1:<port> of ns-viewer serving the checkpoint (its log: artifacts/ns-viewer.log)."""
    port = free_port()
    log = open(artifacts / "ns-viewer.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [str(BIN / "ns-viewer"), "--load-config", str(checkpoint), "--viewer.websocket-port", str(port)],
        cwd=Path.cwd() if TRAINED else checkpoint.parent,  # a trained run's paths are relative to where it ran
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HUMANFEAT_FRAME": ""},
    )

    def listening() -> bool:
        if process.poll() is not None:
            pytest.fail(f"ns-viewer exited with {process.returncode}:\n{(artifacts / 'ns-viewer.log').read_text()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, 300, f"ns-viewer to listen on port {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def driver(viewer_url: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="humanfeat-chromium-")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        browser.get(viewer_url)
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The viser page: its GUI controls by label (Mantine components) and its 3D canvas."""

    def __init__(self, driver, artifacts: Path) -> None:
        self.driver = driver
        self.artifacts = artifacts

    def find(self, xpath: str):
        from selenium.webdriver.common.by import By

        found = self.driver.find_elements(By.XPATH, xpath)
        return found[0] if found else None

    def control(self, label: str):
        """The input element of the GUI control with this label (viser: <label for=id> beside the input)."""
        element = wait_for(lambda: self.find(f"//label[normalize-space(.)='{label}']"), 60, f"the {label!r} control")
        return self.driver.find_element("id", element.get_attribute("for"))

    def text(self, label: str) -> str:
        """The value of a (read-only) text control: the first input after its label."""
        xpath = f"//label[normalize-space(.)='{label}']/following::input[1]"
        return wait_for(lambda: self.find(xpath), 60, f"the {label!r} text").get_attribute("value")

    def choose(self, label: str, value: str) -> None:
        """Pick a dropdown option (a Mantine Select: click it, then the option in its open list)."""
        from selenium.webdriver.common.by import By

        field = self.control(label)
        field.click()
        xpath = f"//*[@role='option' and normalize-space(.)='{value}']"

        def shown_option():  # other selects keep their (hidden) option lists in the page
            return next((o for o in self.driver.find_elements(By.XPATH, xpath) if o.is_displayed()), None)

        option = wait_for(shown_option, 30, f"option {value!r}")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'nearest'});", option)
        option.click()
        wait_for(lambda: field.get_attribute("value") == value, 30, f"{label!r} to show {value!r}")

    def type_number(self, label: str, value: int) -> None:
        """Set a slider through the number input beside it."""
        from selenium.webdriver.common.keys import Keys

        slider = self.control(label)
        number = slider.find_element("xpath", "./ancestor::div[.//input[not(@type='hidden')]][1]//input[@type='text']")
        number.click()
        number.send_keys(Keys.CONTROL, "a")
        number.send_keys(str(value))
        wait_for(lambda: number.get_attribute("value") == str(value), 30, f"{label!r} to show {value}")

    def click_button(self, text: str) -> None:
        button = wait_for(lambda: self.find(f"//button[normalize-space(.)='{text}']"), 60, f"the {text!r} button")
        button.click()

    def canvas(self) -> np.ndarray:
        """The part of the 3D canvas that the control panel leaves visible, as on screen (RGB, uint8)."""
        left, top, right, bottom, width = self.driver.execute_script(VISIBLE_CANVAS_JS)
        page = Image.open(io.BytesIO(self.driver.get_screenshot_as_png())).convert("RGB")
        scale = page.width / width  # device pixels per CSS pixel
        box = tuple(round(v * scale) for v in (left, top, right, bottom))
        return np.asarray(page.crop(box))

    def dataset_mask_on_canvas(self, mask: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
        """A dataset camera's mask (H, W) where it falls on the visible canvas (as ``canvas()`` crops it), for the
        viewer camera at that camera's pose and vertical field of view. viser centres the view in the part of the
        canvas that the control panel leaves visible."""
        shown = self.canvas()
        rows, cols = np.mgrid[0 : shown.shape[0], 0 : shown.shape[1]]
        x = cols + 0.5 - shown.shape[1] / 2  # screen pixels from the centre of the view
        y = rows + 0.5 - shown.shape[0] / 2
        height = mask.shape[0]
        fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
        u = np.floor(x * height / shown.shape[0] * fx / fy + cx).astype(int)
        v = np.floor(y * height / shown.shape[0] + cy).astype(int)
        inside = (u >= 0) & (u < mask.shape[1]) & (v >= 0) & (v < height)
        out = np.zeros(shown.shape[:2], dtype=bool)
        out[inside] = mask[v[inside], u[inside]]
        return out

    def set_checkbox(self, label: str, checked: bool, within: str = "") -> None:
        """Tick or untick a checkbox by its label (the first after the folder title `within`, when given)."""
        if within:
            xpath = f"(//*[normalize-space(text())='{within}']/following::label[normalize-space(.)='{label}'])[1]"
            element = wait_for(lambda: self.find(xpath), 60, f"the {label!r} control of {within!r}")
            box = self.driver.find_element("id", element.get_attribute("for"))
        else:
            box = self.control(label)
        if box.is_selected() != checked:
            self.driver.execute_script("arguments[0].click();", box)
        wait_for(lambda: box.is_selected() == checked, 30, f"{label!r} to be {'checked' if checked else 'unchecked'}")

    def save(self, name: str, canvas: np.ndarray) -> None:
        Image.fromarray(canvas).save(self.artifacts / f"{name}-canvas.png")
        self.driver.save_screenshot(str(self.artifacts / f"{name}-page.png"))

    def resolution(self) -> Tuple[int, int]:
        """The (width, height) of the last image the viewer sent, from its "Resolution: WxHpx" line."""
        found = self.driver.execute_script(r"return document.body.innerText.match(/Resolution: (\d+)x(\d+)px/)")
        return (int(found[1]), int(found[2])) if found else (0, 0)

    def settled_canvas(self, before: np.ndarray, what: str) -> np.ndarray:
        """The canvas once the viewer's full-resolution render (``MAX_RES`` on its longer side; it sends quick, coarse
        ones first) is on it: it differs from ``before`` and has stayed the same for two looks."""
        state: Dict[str, np.ndarray] = {}

        def settled() -> Optional[np.ndarray]:
            if max(self.resolution()) != MAX_RES:
                return None
            now = self.canvas()
            previous, state["last"] = state.get("last"), now
            if previous is None or changed(now, before) < 0.005:
                return None
            return now if changed(now, previous) == 0 else None

        return wait_for(settled, RENDER_TIMEOUT_S, f"the canvas to change and settle after {what}", interval=1.5)


def changed(a: np.ndarray, b: np.ndarray, tolerance: int = 12) -> float:
    """The fraction of pixels whose colour differs by more than ``tolerance`` (sum over channels)."""
    if a.shape != b.shape:
        return 1.0
    return float((np.abs(a.astype(int) - b.astype(int)).sum(-1) > tolerance).mean())


def colour_pixels(image: np.ndarray, colour: np.ndarray, tolerance: int = 60) -> int:
    """How many pixels are within `tolerance` (sum over channels) of a colour."""
    return int((np.abs(image.astype(int) - colour).sum(-1) < tolerance).sum())


def opening_view_mask(data: Path) -> Tuple[np.ndarray, np.ndarray]:
    """The foreground mask and intrinsics of the dataset camera the viewer opens on."""
    from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig
    from nerfstudio_humanfeat.models.human_model import default_render_frame
    from nerfstudio_humanfeat.viewer.inspector import opening_view

    catalog = ZJUMocapDataParserConfig(data=data).setup().get_dataparser_outputs("train").metadata["catalog"]
    subject, frame, _ = default_render_frame(catalog, "")
    names = [s.name for s in catalog.subjects]
    frame_key, camera = opening_view(catalog, catalog.frame_key(names.index(subject), frame))
    view = catalog.load_view(frame_key, camera)
    return view.mask.numpy(), catalog.subject(frame_key).rig.intrinsics[camera].double().numpy()


def non_blank(image: np.ndarray) -> float:
    """The fraction of pixels away from the image's most common colour (a blank canvas: 0)."""
    flat = image.reshape(-1, 3)
    colours, counts = np.unique(flat // 8, axis=0, return_counts=True)
    dominant = colours[counts.argmax()] * 8 + 4
    return float((np.abs(flat.astype(int) - dominant).sum(-1) > 40).mean())


@pytest.fixture(scope="module")
def viewer_data(checkpoint: Path, tiny_dataset: Path) -> Path:
    """The dataset of the run the viewer shows."""
    if not TRAINED:
        return tiny_dataset
    import yaml

    config = yaml.load(checkpoint.read_text(), Loader=yaml.Loader)
    manager = config.pipeline.datamanager
    return Path(manager.data if manager.data is not None else manager.dataparser.data)  # --data sets the first


def test_viewer_renders_each_output_subject_and_frame_in_chromium(driver, artifacts: Path, viewer_data: Path):
    page = Page(driver, artifacts)
    started = time.monotonic()
    # The GUI comes from the server through the websocket: its controls on the page mean the viewer is connected.
    page.control("Output type")
    wait_for(lambda: page.find("//*[normalize-space(.)='Connected']"), 60, "the 'Connected' status")
    empty = page.canvas()
    page.save("00-connected", empty)
    page.click_button("Hide Train Cams")  # the canvas then shows the render alone, not the cameras' thumbnails
    time.sleep(1.0)
    # Unchecked, the viewer's time slider walks through all subjects and frames; checked, Subject/Frame choose.
    pick = page.control("Pick subject/frame here")
    if not pick.is_selected():
        pick.click()
    wait_for(lambda: pick.is_selected(), 30, "'Pick subject/frame here' to be checked")
    # The output list is filled after the first render, with rgb chosen.
    output = page.control("Output type")
    wait_for(lambda: output.get_attribute("value") == "rgb", RENDER_TIMEOUT_S, "the first render (output rgb)")
    page.type_number("Max res", MAX_RES)
    current = page.settled_canvas(empty, "the first full-resolution render")
    page.save("01-open", current)
    paths = f"screenshots in {artifacts}"

    # It opens on the person: from the first evaluation subject's first target camera, its mask region is brighter.
    mask, intrinsics = opening_view_mask(viewer_data)
    person = page.dataset_mask_on_canvas(mask, intrinsics)
    luminance = current.astype(float).mean(-1)
    inner = binary_erosion(person, iterations=3)
    background = ~binary_dilation(person, iterations=15)
    print(f"\nopening view: person {luminance[inner].mean():.1f}, background {luminance[background].mean():.1f}")
    assert inner.sum() > 500, f"the person's mask covers {inner.sum()} canvas pixels; {paths}"
    assert luminance[inner].mean() > luminance[background].mean() + 10, f"the person is not in view; {paths}"

    # The 3D skeleton checkbox draws the dataset's joints (cyan) and the heatmap's (orange) as coloured segments.
    assert colour_pixels(current, GROUND_TRUTH_COLOR) < 100
    page.set_checkbox("3D skeleton", True)
    wait_for(lambda: colour_pixels(page.canvas(), GROUND_TRUTH_COLOR) > 300, RENDER_TIMEOUT_S, "the skeleton segments")
    time.sleep(3.0)  # both skeletons are drawn at once; this lets the render without composite depth arrive
    with_skeleton = page.canvas()
    page.save("02-skeleton-3d", with_skeleton)
    print(
        f"skeleton pixels: ground truth {colour_pixels(with_skeleton, GROUND_TRUTH_COLOR)}, "
        f"predicted {colour_pixels(with_skeleton, PREDICTED_COLOR)}"
    )
    page.set_checkbox("3D skeleton", False)
    page.set_checkbox("Composite depth", True)
    wait_for(lambda: colour_pixels(page.canvas(), GROUND_TRUTH_COLOR) < 100, 60, "the skeleton to go")

    # The source views of the render are listed (and drawn as red frustums); their number is a control.
    listed = page.text("Source cameras").split(", ")
    assert all(name.startswith("Camera_B") for name in listed) and len(listed) >= 2, listed
    page.type_number("Source views", 1)
    wait_for(lambda: len(page.text("Source cameras").split(", ")) == 1, 120, "one source")
    current = page.settled_canvas(current, "rendering from one source view")
    page.save("03-one-source-view", current)
    page.type_number("Source views", len(listed))
    current = page.settled_canvas(current, f"rendering from {len(listed)} source views again")

    shots: Dict[str, np.ndarray] = {}
    for index, name in enumerate(OUTPUTS):
        if name != "rgb":
            page.choose("Output type", name)
            current = page.settled_canvas(current, f"choosing output {name}")
        shots[name] = current
        page.save(f"{index + 4:02d}-{name}", current)
    for name, image in shots.items():
        assert non_blank(image) > 0.01, f"{name}: the canvas is blank ({non_blank(image):.4f} non-blank); {paths}"
        assert changed(image, empty) > 0.01, f"{name}: the canvas shows no render; {paths}"
    for i, first in enumerate(OUTPUTS):
        for second in OUTPUTS[i + 1 :]:
            difference = changed(shots[first], shots[second])
            assert difference > 0.005, f"{first} and {second} look the same ({difference:.4f} changed); {paths}"

    # Subject and Frame re-render the chosen output for another person and another frame.
    page.choose("Output type", "rgb")
    before = page.settled_canvas(current, "choosing output rgb again")
    subjects: List[str] = sorted(p.name for p in viewer_data.iterdir() if p.name.startswith("synth_"))
    shown = page.control("Subject").get_attribute("value")
    other = next(s for s in subjects if s != shown)
    page.choose("Subject", other)
    subject_shot = page.settled_canvas(before, f"choosing subject {other}")
    page.save(f"08-subject-{other}", subject_shot)
    page.type_number("Frame", 1)
    frame_shot = page.settled_canvas(subject_shot, "frame 1")
    page.save(f"09-subject-{other}-frame-1", frame_shot)
    for label, image in (("subject", subject_shot), ("frame", frame_shot)):
        assert non_blank(image) > 0.01, f"after changing the {label}: blank canvas; {paths}"
    assert changed(subject_shot, before) > 0.005, f"subject {other} renders as {shown} did; {paths}"
    assert changed(frame_shot, subject_shot) > 0.001, f"frame 1 of {other} renders as frame 0; {paths}"

    # Split screen (nerfstudio's): rgb on the left, the plugin's joint_heatmap on the right of the split line.
    page.set_checkbox("Enable", True, within="Split Screen")
    page.choose("Output render split", "joint_heatmap")
    split_shot = page.settled_canvas(frame_shot, "split screen with joint_heatmap")
    page.save("10-split-rgb-joint_heatmap", split_shot)
    column = split_shot.shape[1] // 2  # the middle of the view (see dataset_mask_on_canvas)
    left, right = (
        changed(split_shot[:, : column - 4], frame_shot[:, : column - 4]),
        changed(split_shot[:, column + 4 :], frame_shot[:, column + 4 :]),
    )
    assert left < 0.01 and right > 0.01, f"split: left {left:.4f} / right {right:.4f} changed; {paths}"
    print(f"viewer browser test: {time.monotonic() - started:.0f} s in the browser; {paths}")
