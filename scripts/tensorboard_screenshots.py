"""Screenshots of a run's TensorBoard, for the docs: serve it on localhost, capture tabs with headless Chromium.

    python scripts/tensorboard_screenshots.py --run runs/point_mass --out docs/images

Needs the `chromium` binary (Debian: `apt-get install chromium`). Writes one PNG per tab
(`tensorboard_<tab>.png`). The projector needs WebGL, which headless Chromium provides in software
(SwiftShader).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

TABS = ("timeseries", "scalars", "images", "text", "projector")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: TensorBoard did not answer at {url} within {timeout:.0f} s")


def capture(chromium: str, url: str, path: Path, width: int, height: int, budget_ms: int) -> None:
    """One screenshot of ``url`` after ``budget_ms`` of (virtual) page time."""
    cmd = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
           "--use-angle=swiftshader", "--hide-scrollbars", f"--window-size={width},{height}",
           f"--virtual-time-budget={budget_ms}", f"--screenshot={path}", url]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
    if not path.exists():
        raise SystemExit(f"error: Chromium wrote no screenshot for {url}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run directory (TensorBoard logdir)")
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs")
    parser.add_argument("--tabs", nargs="+", default=["scalars", "images:rollouts", "images:goal_reaching", "projector"],
                        help=f"TAB or TAB:TAG_REGEX, TAB one of {', '.join(TABS)}")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise SystemExit("error: no chromium binary on PATH (Debian: apt-get install chromium)")
    if not Path(args.run).is_dir():
        raise SystemExit(f"error: no such run directory {args.run!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", args.run, "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(base + "/data/plugins_listing")
        for spec in args.tabs:
            tab, _, tag_filter = spec.partition(":")
            if tab not in TABS:
                raise SystemExit(f"error: unknown tab {tab!r}; tabs: {', '.join(TABS)}")
            path = out / f"tensorboard_{tab}{'_' + tag_filter if tag_filter else ''}.png"
            url = f"{base}/?darkMode=false#{tab}" + (f"&tagFilter={tag_filter}" if tag_filter else "")
            capture(chromium, url, path, args.width, args.height, budget_ms=20000)
            print(f"{path}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
