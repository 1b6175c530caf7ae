"""A real-browser test: `nbs/run_cifar_lt.ipynb`, as a user meets it, run in JupyterLab in headless Chromium.

papermill prepares (without running) a copy with tiny synthetic parameters; a real JupyterLab serves it on loopback; Playwright
drives Debian's Chromium (/usr/bin/chromium, never a downloaded browser) to open it, Run > Run All Cells, and wait for the
kernel. Then the rendered page must show: no error output, the result table, the per-class figure, and tqdm's progress bars
as widgets (ipywidgets installed), never the text fallback 'IProgress not found'. A full-page screenshot is saved to
tests/artifacts/jupyterlab_run_cifar_lt.png, pass or fail.

Without Chromium or playwright the test skips with the reason, unless VISPRIOR_REQUIRE_BROWSER=1 (set by .ci/run): then it
fails. Run it alone with `pytest -q tests/test_jupyterlab.py`.
"""
import json, os, secrets, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = Path(os.environ.get('VISPRIOR_LAB_NOTEBOOK', ROOT/'nbs'/'run_cifar_lt.ipynb'))  # another copy: to debug
NB_NAME = 'run_cifar_lt.ipynb'
SHOT = ROOT/'tests'/'artifacts'/'jupyterlab_run_cifar_lt.png'
CHROMIUM = os.environ.get('VISPRIOR_CHROMIUM', '/usr/bin/chromium')
# The flags that work on this closed network: without the background-networking ones Chromium keeps dialling out.
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
RUN_TIMEOUT_S = 600      # all cells; a tiny run takes well under a minute on 2 cores once the kernel is up
KERNEL_TIMEOUT_S = 180   # page load + kernel start (imports torch)


def _missing_browser_or_skip():
    "Skip (locally) or fail (VISPRIOR_REQUIRE_BROWSER=1, as in CI) when Chromium or playwright is missing."
    why = []
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        why.append(f'no Chromium at {CHROMIUM} (apt-get install chromium)')
    try: import playwright.sync_api  # noqa: F401
    except ImportError: why.append('the Python package playwright is not installed (pip install -e ".[dev]")')
    if why:
        msg = 'browser test: ' + '; '.join(why)
        if os.environ.get('VISPRIOR_REQUIRE_BROWSER') == '1': pytest.fail(msg + ' (VISPRIOR_REQUIRE_BROWSER=1)')
        pytest.skip(msg)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture
def lab_dir(tmp_path):
    "A folder holding the run notebook, prepared (not run) by papermill with tiny synthetic parameters."
    import papermill as pm
    pm.execute_notebook(str(NOTEBOOK), str(tmp_path/NB_NAME), prepare_only=True, progress_bar=False, parameters=dict(
        dataset='synthetic', imb=5, epochs=2, batch_size=32, lr=0.05, warmup_epochs=1, schedule='cosine',
        la_epochs=2, la_k=64, la_clusters=8, la_kmeans=2, la_root=str(tmp_path/'la'), out_dir=str(tmp_path/'runs')))
    return tmp_path


def _lab_settings(d: Path):
    "User settings of the throwaway lab: every cell in the DOM (no windowing), and no news or update pop-ups."
    for ext, s in {'notebook-extension/tracker': {'windowingMode': 'none'},
                   'apputils-extension/notification': {'fetchNews': 'false', 'checkForUpdates': False}}.items():
        f = d/'@jupyterlab'/f'{ext}.jupyterlab-settings'
        f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(s))


@pytest.fixture
def lab_server(lab_dir):
    "A real JupyterLab on a free loopback port, with a token, serving `lab_dir`; shut down (with its kernels) afterwards."
    port, token = _free_port(), secrets.token_hex(16)
    jdir = lab_dir/'.jupyter'
    _lab_settings(jdir/'settings')
    env = {k: v for k, v in os.environ.items() if k not in ('IN_TEST', 'JPY_SESSION_NAME')}  # not the nbdev_test run
    env.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get('PATH', '')]),  # the kernel's `python`
               JUPYTER_CONFIG_DIR=str(jdir/'config'), JUPYTER_RUNTIME_DIR=str(jdir/'runtime'),
               JUPYTERLAB_SETTINGS_DIR=str(jdir/'settings'), JUPYTERLAB_WORKSPACES_DIR=str(jdir/'workspaces'),
               JUPYTER_PLATFORM_DIRS='1')
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={lab_dir}',
           '--LabApp.expose_app_in_browser=True',  # window.jupyterapp: read the kernel and cell state
           '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate', '--LabApp.news_url=']
    if os.geteuid() == 0: cmd.append('--allow-root')
    log = lab_dir/'jupyterlab.log'
    with open(log, 'wb') as out:
        proc = subprocess.Popen(cmd, cwd=lab_dir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f'http://127.0.0.1:{port}'
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None: pytest.fail(f'jupyter lab exited ({proc.returncode}):\n{log.read_text()[-3000:]}')
            try:
                with urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=5) as r:
                    if r.status == 200: break
            except OSError: pass
            if time.monotonic() > deadline: pytest.fail(f'jupyter lab did not answer in 90 s:\n{log.read_text()[-3000:]}')
            time.sleep(0.5)
        yield dict(url=url, token=token, dir=lab_dir, log=log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
            try: proc.wait(30)
            except subprocess.TimeoutExpired: pass
        try: os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its process group (a stuck kernel)
        except ProcessLookupError: pass
        proc.wait()


@pytest.fixture
def browser_page(tmp_path_factory):
    "A page in headless Debian Chromium with a fresh profile; closed afterwards."
    _missing_browser_or_skip()
    from playwright.sync_api import sync_playwright
    pw = sync_playwright().start()
    ctx = None
    try:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path_factory.mktemp('chromium-profile')), executable_path=CHROMIUM,
                                                    headless=True, args=CHROMIUM_ARGS,
                                                    viewport=dict(width=1280, height=900))
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.console_errors = []
        page.on('console', lambda m: m.type == 'error' and page.console_errors.append(m.text))
        yield page
    finally:
        if ctx is not None: ctx.close()
        pw.stop()


# The open notebook's panel, found through the app JupyterLab exposes with expose_app_in_browser.
JS_PANEL = f"""() => {{ const app = window.jupyterapp; if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) if (w.context && w.context.path === {json.dumps(NB_NAME)}) return w;
  return null; }}"""
JS_KERNEL_READY = f"""() => {{ const w = ({JS_PANEL})();
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(k && w.sessionContext.isReady && k.status === 'idle' && w.content.widgets.length); }}"""
# Done: every code cell has an execution count and the kernel is idle; or stop early on an error output (run-all stops
# there, so the remaining cells would never get a count).
JS_RUN_STATE = f"""() => {{ const w = ({JS_PANEL})(); if (!w) return null;
  const code = w.content.widgets.filter(c => c.model.type === 'code');
  const error = code.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'))
    || !!document.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]');
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  const done = code.length > 0 && code.every(c => c.model.executionCount !== null) && !!k && k.status === 'idle';
  return (error || done) ? {{error, done, counts: code.map(c => c.model.executionCount)}} : null; }}"""


def _screenshot(page):
    "Full-page screenshot of the lab, tall enough for the whole notebook (the lab itself never scrolls the page)."
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    try:
        # the notebook scrolls inside its own element: make the window as tall as that content, and scroll it to the top
        top = f"""() => {{ const w = ({JS_PANEL})(); if (!w) return 0;
          const s = w.content.node.querySelector('.jp-WindowedPanel-outer') || w.content.node;
          s.scrollTop = 0; return s.scrollHeight; }}"""
        h = page.evaluate(top)
        page.set_viewport_size(dict(width=1280, height=int(min(max(900, h + 250), 16000))))
        page.wait_for_timeout(500)
        page.evaluate(top)
        page.wait_for_timeout(500)
    except Exception: pass  # a failed page still gets its screenshot at the size it has
    page.screenshot(path=str(SHOT), full_page=True)


def test_run_cifar_lt_in_jupyterlab(browser_page, lab_server):  # browser first: skip before starting the lab
    page, srv = browser_page, lab_server
    try:
        page.goto(f"{srv['url']}/lab/tree/{NB_NAME}?token={srv['token']}", wait_until='domcontentloaded', timeout=120_000)
        page.wait_for_function(JS_KERNEL_READY, timeout=KERNEL_TIMEOUT_S * 1000, polling=500)
        page.locator('.jp-Notebook').first.click(position=dict(x=5, y=5))  # focus the notebook, as a user would
        # Run > Run All Cells, through the menu bar
        page.locator('.lm-MenuBar-item', has_text='Run').first.click()
        page.locator('.lm-Menu-item:visible', has_text='Run All Cells').first.click()
        t0 = time.monotonic()
        state = page.wait_for_function(JS_RUN_STATE, timeout=RUN_TIMEOUT_S * 1000, polling=1000).json_value()
        page.wait_for_timeout(1000)  # let the last outputs and widget views render
        print(f'cells ran in {time.monotonic() - t0:.0f} s; execution counts {state["counts"]}')

        outputs = page.locator('.jp-Notebook .jp-OutputArea')
        text = '\n'.join(outputs.all_inner_texts())
        body = page.locator('body').inner_text()
        assert not state['error'] and 'Traceback' not in text, f'a cell raised:\n{text[-4000:]}'
        assert page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]').count() == 0
        assert state['done'] and all(isinstance(n, int) for n in state['counts']), state
        prompts = page.locator('.jp-CodeCell .jp-InputArea-prompt').all_inner_texts()
        assert prompts and all(p.strip().startswith('[') and p.strip()[1:-2].isdigit() for p in prompts), prompts
        # the result table and the per-class figure, rendered
        assert page.locator('.jp-OutputArea-output.jp-RenderedHTMLCommon table').count() >= 1, 'no HTML table'
        imgs = page.locator('.jp-OutputArea-output.jp-RenderedImage img')
        assert imgs.count() >= 1, 'no image output'
        assert imgs.first.evaluate('i => i.complete && i.naturalWidth > 0'), 'the figure did not load'
        # tqdm's bars as ipywidgets, not the text fallback
        assert 'IProgress not found' not in body, 'tqdm fell back to text: ipywidgets missing in the kernel'
        assert 'Error displaying widget' not in body and 'Loading widget' not in text, text[-2000:]
        bars = page.locator('.jp-OutputArea-output .jupyter-widgets:is(.widget-hprogress, .widget-vprogress, .widget-progress)'
                            ' .progress-bar')
        assert bars.count() >= 1, 'no progress-bar widget rendered'
    finally:
        _screenshot(page)
